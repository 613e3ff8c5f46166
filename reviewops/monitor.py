"""Drift and agreement checks of the daily `model_monitor` job: pure computation, no I/O.

`drift_report` compares recent reviews (and the champion's scores on them) with a sample of the
champion's training snapshot (scored by the same champion):

* input drift: the character length of the texts (PSI over the reference's deciles) and the share
  of whitespace tokens never seen in the reference;
* prediction drift: the score distribution (PSI over ten equal-width bins), the positive share and
  the mean confidence;
* agreement: accuracy of the predictions against the reviewers' own labels (from their ratings)
  where they have one.

The report is a plain, JSON-serialisable dict; each check says whether it crossed its threshold.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from reviewops.errors import InputError

log = logging.getLogger(__name__)

REPORTS = "reports/monitor"  # artifact-store folder of the daily reports, one `YYYY-MM-DD.json` each
PSI_EPSILON = 1e-4  # floor of a bin's share, so an empty bin on one side does not make PSI infinite
SCORE_EDGES = np.linspace(0.0, 1.0, 11)
DECILES = np.linspace(0.1, 0.9, 9)


@dataclass(frozen=True)
class Thresholds:
    min_reviews: int = 30
    psi: float = 0.2
    unknown_rate_delta: float = 0.10
    positive_share_delta: float = 0.15
    confidence_drop: float = 0.05
    agreement_min: float = 0.75

    @classmethod
    def from_settings(cls, settings) -> Thresholds:
        """Thresholds from `reviewops.config.Settings` (`monitor_min_reviews`, `drift_*`, `agreement_min`)."""
        return cls(
            min_reviews=int(settings.monitor.min_reviews),
            psi=float(settings.drift.psi_threshold),
            unknown_rate_delta=float(settings.drift.unknown_rate_delta),
            positive_share_delta=float(settings.drift.positive_share_delta),
            confidence_drop=float(settings.drift.confidence_drop),
            agreement_min=float(settings.agreement_min),
        )


def psi(reference: np.ndarray, current: np.ndarray, edges: np.ndarray) -> float:
    """Population stability index of `current` against `reference` over the bins given by `edges`.

    `edges` are ascending bin boundaries (at least two); bins are `[edges[i], edges[i+1])`, the last
    one closed, and values outside `[edges[0], edges[-1]]` fall into the outer bins, so the outer
    edges may also be `-inf`/`inf`. NaNs are ignored. Each bin's share is floored at `PSI_EPSILON`:
    PSI = sum((cur - ref) * ln(cur / ref)). Raises ValueError for an empty side or bad edges.
    """
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("psi: edges must be a strictly ascending array of at least two boundaries")
    shares = []
    for name, values in (("reference", reference), ("current", current)):
        v = np.asarray(values, dtype=float).ravel()
        v = v[~np.isnan(v)]
        if v.size == 0:
            raise ValueError(f"psi: the {name} sample is empty")
        counts = np.bincount(np.searchsorted(edges[1:-1], v, side="right"), minlength=len(edges) - 1)
        shares.append(np.clip(counts / v.size, PSI_EPSILON, None))
    ref, cur = shares
    return float(np.sum((cur - ref) * np.log(cur / ref)))


# --- helpers -----------------------------------------------------------------------------------------


def _texts(frame: pd.DataFrame) -> list[str]:
    """The `text` column as strings; None/NaN (and anything else that is not a string) become ''."""
    return [t if isinstance(t, str) else "" for t in frame["text"].tolist()]


def _numeric(frame: pd.DataFrame, column: str, which: str) -> np.ndarray:
    """A column as floats with NaN for missing values; values that are present but not numbers are refused."""
    col = frame[column]
    values = pd.to_numeric(col, errors="coerce")
    values = np.asarray(values.to_numpy(dtype=float, na_value=np.nan), dtype=float)
    unreadable = np.isnan(values) & col.notna().to_numpy()
    if unreadable.any():
        example = col[unreadable].iloc[0]
        raise InputError(f"{which} {column}s must be numbers; {int(unreadable.sum())} are not (e.g. {example!r})")
    return values


def _scores(frame: pd.DataFrame, which: str) -> np.ndarray:
    """The `score` column as floats (NaN where missing); scores outside [0, 1] are refused."""
    s = _numeric(frame, "score", which)
    bad = ~np.isnan(s) & ((s < 0.0) | (s > 1.0))
    if bad.any():
        raise InputError(f"{which} scores must be probabilities in [0, 1]; {int(bad.sum())} are not "
                         f"(e.g. {float(s[bad][0])!r})")
    return s


def _labels(frame: pd.DataFrame) -> np.ndarray:
    """The `label` column as floats: 1.0, 0.0 or NaN (unlabelled). Other values are refused."""
    lab = _numeric(frame, "label", "current")
    bad = ~np.isnan(lab) & (lab != 0.0) & (lab != 1.0)
    if bad.any():
        raise InputError(f"current labels must be 1, 0 or missing; {int(bad.sum())} are not "
                         f"(e.g. {float(lab[bad][0])!r})")
    return lab


def _require(frame: pd.DataFrame, which: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{which} reviews lack the column(s) {', '.join(missing)} "
                         f"(have: {', '.join(map(str, frame.columns)) or 'none'})")


def _f(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _check(name: str, value: float | None, reference: float | None, threshold: float, crossed: bool,
           detail: str, **extra: Any) -> dict:
    return {"name": name, "value": _f(value), "reference": _f(reference), "threshold": float(threshold),
            "crossed": bool(crossed), "detail": detail, **extra}


def _tokens(texts: list[str]) -> list[str]:
    return [tok for t in texts for tok in t.split()]


def _unknown_rate(tokens: list[str], vocabulary: set[str]) -> float | None:
    if not tokens:
        return None
    return sum(tok not in vocabulary for tok in tokens) / len(tokens)


def _positive_share(s: np.ndarray) -> float | None:
    return float(np.mean(s >= 0.5)) if s.size else None


def _confidence(s: np.ndarray) -> float | None:
    return float(np.mean(np.maximum(s, 1.0 - s))) if s.size else None


# --- checks --------------------------------------------------------------------------------------------


def _length_check(ref_texts: list[str], cur_texts: list[str], t: Thresholds) -> dict:
    ref_len = np.array([len(x) for x in ref_texts], dtype=float)
    cur_len = np.array([len(x) for x in cur_texts], dtype=float)
    cuts = np.unique(np.quantile(ref_len, DECILES))
    edges = np.concatenate([[-np.inf], cuts, [np.inf]])
    ref_median = float(np.median(ref_len))
    if cur_len.size == 0:
        return _check("length_psi", None, 0.0, t.psi, False, "No recent reviews to compare text lengths.",
                      median_chars=None, reference_median_chars=ref_median)
    value = psi(ref_len, cur_len, edges)
    cur_median = float(np.median(cur_len))
    crossed = value > t.psi
    detail = (f"Text length PSI {value:.3f} (median {cur_median:.0f} vs {ref_median:.0f} characters) "
              f"{'exceeds' if crossed else 'is within'} the threshold {t.psi:.2f}.")
    return _check("length_psi", value, 0.0, t.psi, crossed, detail,
                  median_chars=cur_median, reference_median_chars=ref_median)


def _unknown_token_check(ref_texts: list[str], cur_texts: list[str], t: Thresholds) -> dict:
    # Both rates are measured against a vocabulary neither was drawn from: the even rows of the
    # reference give the vocabulary, the odd rows the reference rate.
    vocabulary = set(_tokens(ref_texts[0::2]))
    ref_rate = _unknown_rate(_tokens(ref_texts[1::2]), vocabulary)
    cur_tokens = _tokens(cur_texts)
    cur_rate = _unknown_rate(cur_tokens, vocabulary)
    if cur_rate is None or ref_rate is None:
        missing = "recent reviews" if cur_rate is None else "held-out reference reviews"
        return _check("unknown_token_rate", cur_rate, ref_rate, t.unknown_rate_delta, False,
                      f"No tokens in the {missing}; the unknown-token rate cannot be compared.",
                      vocabulary_size=len(vocabulary), n_tokens=len(cur_tokens))
    delta = cur_rate - ref_rate
    crossed = delta > t.unknown_rate_delta
    detail = (f"{cur_rate:.1%} of recent tokens are outside the reference vocabulary vs {ref_rate:.1%} held out "
              f"({delta:+.1%}, threshold +{t.unknown_rate_delta:.1%}).")
    return _check("unknown_token_rate", cur_rate, ref_rate, t.unknown_rate_delta, crossed, detail,
                  vocabulary_size=len(vocabulary), n_tokens=len(cur_tokens))


def _score_checks(ref: np.ndarray, cur: np.ndarray, t: Thresholds) -> list[dict]:
    ref_pos, cur_pos = _positive_share(ref), _positive_share(cur)
    ref_conf, cur_conf = _confidence(ref), _confidence(cur)
    if cur.size == 0 or ref.size == 0:
        why = "No scored recent reviews." if cur.size == 0 else "No scored reference reviews."
        return [_check("score_psi", None, 0.0, t.psi, False, why),
                _check("positive_share", cur_pos, ref_pos, t.positive_share_delta, False, why),
                _check("mean_confidence", cur_conf, ref_conf, t.confidence_drop, False, why)]
    value = psi(ref, cur, SCORE_EDGES)
    crossed = value > t.psi
    out = [_check("score_psi", value, 0.0, t.psi, crossed,
                  f"Score distribution PSI {value:.3f} {'exceeds' if crossed else 'is within'} "
                  f"the threshold {t.psi:.2f}.")]
    delta = cur_pos - ref_pos
    crossed = abs(delta) > t.positive_share_delta
    out.append(_check("positive_share", cur_pos, ref_pos, t.positive_share_delta, crossed,
                      f"{cur_pos:.1%} of recent reviews are predicted positive vs {ref_pos:.1%} in the reference "
                      f"({delta:+.1%}, threshold ±{t.positive_share_delta:.1%})."))
    drop = ref_conf - cur_conf
    crossed = drop > t.confidence_drop
    out.append(_check("mean_confidence", cur_conf, ref_conf, t.confidence_drop, crossed,
                      f"Mean confidence {cur_conf:.3f} vs {ref_conf:.3f} in the reference "
                      f"({-drop:+.3f}, largest allowed drop {t.confidence_drop:.3f})."))
    return out


def _agreement_check(scores: np.ndarray, labels: np.ndarray, t: Thresholds) -> dict:
    mask = ~np.isnan(labels) & ~np.isnan(scores)
    pred = scores[mask] >= 0.5
    truth = labels[mask] == 1.0
    n = int(mask.sum())
    confusion = {"tp": int(np.sum(pred & truth)), "tn": int(np.sum(~pred & ~truth)),
                 "fp": int(np.sum(pred & ~truth)), "fn": int(np.sum(~pred & truth))}
    if n < t.min_reviews:
        return _check("agreement", None, None, t.agreement_min, False,
                      f"Only {n} recent reviews carry the reviewer's own label; at least {t.min_reviews} "
                      "are needed to judge agreement.", n_labelled=n, confusion=confusion)
    accuracy = (confusion["tp"] + confusion["tn"]) / n
    crossed = accuracy < t.agreement_min
    detail = (f"Predictions agree with {accuracy:.1%} of {n} reviewers' own labels "
              f"({'below' if crossed else 'at or above'} the minimum {t.agreement_min:.1%}).")
    return _check("agreement", accuracy, None, t.agreement_min, crossed, detail, n_labelled=n, confusion=confusion)


# --- report ---------------------------------------------------------------------------------------------


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, thresholds: Thresholds) -> dict:
    """Compare recent reviews with the champion's reference sample; a JSON-serialisable report.

    `reference` has columns `text` and `score` (the champion's P(positive)); `current` has `text`,
    `score` and `label` (1, 0 or missing). Missing texts count as empty strings, missing scores are
    left out of the score checks. With fewer than `thresholds.min_reviews` recent reviews the status
    is "insufficient_data": the checks are computed where possible but none counts as crossed.
    Returns `{"status", "n_reference", "n_current", "checks", "alerts"}`.
    """
    _require(reference, "reference", ("text", "score"))
    _require(current, "current", ("text", "score", "label"))
    if len(reference) == 0:
        raise InputError("the reference sample is empty: drift cannot be measured without the champion's "
                         "training-snapshot reviews")
    t = thresholds
    ref_texts, cur_texts = _texts(reference), _texts(current)
    ref_scores, cur_scores = _scores(reference, "reference"), _scores(current, "current")
    checks = [
        _length_check(ref_texts, cur_texts, t),
        _unknown_token_check(ref_texts, cur_texts, t),
        *_score_checks(ref_scores[~np.isnan(ref_scores)], cur_scores[~np.isnan(cur_scores)], t),
        _agreement_check(cur_scores, _labels(current), t),
    ]
    enough = len(current) >= t.min_reviews
    if not enough:
        for c in checks:
            c["crossed"] = False
    alerts = [c["name"] for c in checks if c["crossed"]]
    status = "insufficient_data" if not enough else "drift" if alerts else "ok"
    report = {"status": status, "n_reference": len(reference), "n_current": len(current),
              "checks": checks, "alerts": alerts}
    if status == "insufficient_data":
        log.info("model monitor: only %d recent reviews (minimum %d); no drift verdict", len(current), t.min_reviews)
    else:
        log.info("model monitor: %s (%d recent vs %d reference reviews)%s", status, len(current), len(reference),
                 f"; crossed: {', '.join(alerts)}" if alerts else "")
    return report


def store_report(store, report: dict, day: date) -> str:
    """Write a day's report to the artifact store (replacing that day's earlier one); returns its URI."""
    key = f"{REPORTS}/{day:%Y-%m-%d}.json"
    store.put(key, json.dumps(report, ensure_ascii=False, indent=2).encode(), overwrite=True)
    return store.uri(key)


def latest_report(store) -> dict | None:
    """The newest stored report, or None when there is none."""
    keys = sorted(k for k in store.list(REPORTS) if k.endswith(".json"))
    return json.loads(store.get(keys[-1])) if keys else None
