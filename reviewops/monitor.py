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

A check counts as drift only when its effect is past the threshold *and* a test says the difference is
unlikely to be chance (`p_value` below `Thresholds.significance`; KS for distributions, chi-square for
shares, Welch's t for the mean confidence, a one-sided binomial test for agreement), and only from
`min_reviews` recent reviews on: PSI over ten bins has a noise floor of about 9/n, so 30 reviews of the
very same distribution cross a 0.2 threshold by chance alone. Each check carries its `verdict`
(`crossed`, `within`, `not_significant`, `too_few`, `unavailable`) and its numbers; `finding_ko` renders
them in Korean for the app, while `detail` stays English for logs and Slack.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from reviewops.errors import InputError

log = logging.getLogger(__name__)

REPORTS = "reports/monitor"  # artifact-store folder of the daily reports, one `YYYY-MM-DD.json` each
PSI_EPSILON = 1e-4  # floor of a bin's share, so an empty bin on one side does not make PSI infinite
SCORE_EDGES = np.linspace(0.0, 1.0, 11)
DECILES = np.linspace(0.1, 0.9, 9)


@dataclass(frozen=True)
class Thresholds:
    min_reviews: int = 100
    significance: float = 0.01
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
            significance=float(settings.drift.significance),
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
           detail: str, p_value: float | None = None, n: int = 0, **extra: Any) -> dict:
    """A check's record; `crossed` here means "past the threshold", `_judge` adds the significance."""
    return {"name": name, "value": _f(value), "reference": _f(reference), "threshold": float(threshold),
            "crossed": bool(crossed), "detail": detail, "p_value": _f(p_value), "n": int(n), **extra}


def _judge(check: dict, t: Thresholds) -> None:
    """Set the check's `verdict` and make `crossed` mean drift: past the threshold, significant, enough reviews."""
    past = check["crossed"]
    p = check["p_value"]
    if check["n"] < t.min_reviews:
        verdict = "too_few"
    elif check["value"] is None:
        verdict = "unavailable"
    elif not past:
        verdict = "within"
    elif p is not None and p >= t.significance:
        verdict = "not_significant"
    else:
        verdict = "crossed"
    check["verdict"], check["crossed"] = verdict, verdict == "crossed"
    check["min_n"], check["significance"] = t.min_reviews, t.significance


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
    p = stats.ks_2samp(ref_len, cur_len).pvalue
    detail = (f"Text length PSI {value:.3f} (median {cur_median:.0f} vs {ref_median:.0f} characters) "
              f"{'exceeds' if crossed else 'is within'} the threshold {t.psi:.2f} (KS p={p:.2g}).")
    return _check("length_psi", value, 0.0, t.psi, crossed, detail, p, cur_len.size,
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
                      f"No tokens in the {missing}; the unknown-token rate cannot be compared.", None,
                      len(cur_texts), vocabulary_size=len(vocabulary), n_tokens=len(cur_tokens))
    delta = cur_rate - ref_rate
    crossed = delta > t.unknown_rate_delta
    ref_tokens = len(_tokens(ref_texts[1::2]))
    p = _share_p(cur_rate, len(cur_tokens), ref_rate, ref_tokens)
    detail = (f"{cur_rate:.1%} of recent tokens are outside the reference vocabulary vs {ref_rate:.1%} held out "
              f"({delta:+.1%}, threshold +{t.unknown_rate_delta:.1%}, chi-square p={p:.2g}).")
    return _check("unknown_token_rate", cur_rate, ref_rate, t.unknown_rate_delta, crossed, detail, p,
                  len(cur_texts), vocabulary_size=len(vocabulary), n_tokens=len(cur_tokens))


def _share_p(cur: float, n_cur: int, ref: float, n_ref: int) -> float:
    """Chi-square p-value of two shares (of n_cur and n_ref items) being the same."""
    table = np.array([[cur * n_cur, (1 - cur) * n_cur], [ref * n_ref, (1 - ref) * n_ref]])
    if (table.sum(axis=0) == 0).any():  # everything on one side in both samples: nothing differs
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def _score_checks(ref: np.ndarray, cur: np.ndarray, t: Thresholds) -> list[dict]:
    ref_pos, cur_pos = _positive_share(ref), _positive_share(cur)
    ref_conf, cur_conf = _confidence(ref), _confidence(cur)
    if cur.size == 0 or ref.size == 0:
        why = "No scored recent reviews." if cur.size == 0 else "No scored reference reviews."
        return [_check("score_psi", None, 0.0, t.psi, False, why, n=cur.size),
                _check("positive_share", cur_pos, ref_pos, t.positive_share_delta, False, why, n=cur.size),
                _check("mean_confidence", cur_conf, ref_conf, t.confidence_drop, False, why, n=cur.size)]
    value = psi(ref, cur, SCORE_EDGES)
    crossed = value > t.psi
    p = stats.ks_2samp(ref, cur).pvalue
    out = [_check("score_psi", value, 0.0, t.psi, crossed,
                  f"Score distribution PSI {value:.3f} {'exceeds' if crossed else 'is within'} "
                  f"the threshold {t.psi:.2f} (KS p={p:.2g}).", p, cur.size)]
    delta = cur_pos - ref_pos
    crossed = abs(delta) > t.positive_share_delta
    p = _share_p(cur_pos, cur.size, ref_pos, ref.size)
    out.append(_check("positive_share", cur_pos, ref_pos, t.positive_share_delta, crossed,
                      f"{cur_pos:.1%} of recent reviews are predicted positive vs {ref_pos:.1%} in the reference "
                      f"({delta:+.1%}, threshold ±{t.positive_share_delta:.1%}, chi-square p={p:.2g}).", p, cur.size))
    drop = ref_conf - cur_conf
    crossed = drop > t.confidence_drop
    confidences = np.maximum(cur, 1.0 - cur), np.maximum(ref, 1.0 - ref)
    with warnings.catch_warnings():  # equal confidences everywhere: scipy warns, the p-value is NaN (no evidence)
        warnings.simplefilter("ignore", RuntimeWarning)
        p = _nan_to_one(stats.ttest_ind(*confidences, equal_var=False, alternative="less").pvalue)
    out.append(_check("mean_confidence", cur_conf, ref_conf, t.confidence_drop, crossed,
                      f"Mean confidence {cur_conf:.3f} vs {ref_conf:.3f} in the reference "
                      f"({-drop:+.3f}, largest allowed drop {t.confidence_drop:.3f}, Welch p={p:.2g}).", p, cur.size))
    return out


def _nan_to_one(p: float) -> float:
    # a test on samples without variance (one review, or all scores equal) has no p-value: no evidence
    return 1.0 if not np.isfinite(p) else float(p)


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
                      "are needed to judge agreement.", None, n, n_labelled=n, confusion=confusion)
    agree = confusion["tp"] + confusion["tn"]
    accuracy = agree / n
    crossed = accuracy < t.agreement_min
    p = stats.binomtest(agree, n, t.agreement_min, alternative="less").pvalue  # truly below the minimum?
    detail = (f"Predictions agree with {accuracy:.1%} of {n} reviewers' own labels "
              f"({'below' if crossed else 'at or above'} the minimum {t.agreement_min:.1%}, binomial p={p:.2g}).")
    return _check("agreement", accuracy, None, t.agreement_min, crossed, detail, p, n, n_labelled=n,
                  confusion=confusion)


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
    for c in checks:  # each check's n is at most len(current): with too few reviews none is judged
        _judge(c, t)
    alerts = [c["name"] for c in checks if c["crossed"]]
    status = "insufficient_data" if not enough else "drift" if alerts else "ok"
    report = {"status": status, "n_reference": len(reference), "n_current": len(current),
              "min_reviews": t.min_reviews, "significance": t.significance, "checks": checks, "alerts": alerts}
    if status == "insufficient_data":
        log.info("model monitor: only %d recent reviews (minimum %d); no drift verdict", len(current), t.min_reviews)
    else:
        log.info("model monitor: %s (%d recent vs %d reference reviews)%s", status, len(current), len(reference),
                 f"; crossed: {', '.join(alerts)}" if alerts else "")
    return report


# --- the findings in Korean (the app's words; `detail` stays English for logs and Slack) ---------------------


CHECK_NAMES_KO = {
    "length_psi": "리뷰 길이 분포 변화 지수",
    "unknown_token_rate": "처음 보는 단어 비율",
    "score_psi": "예측 점수 분포 변화 지수",
    "positive_share": "긍정 예측 비율",
    "mean_confidence": "평균 신뢰도",
    "agreement": "리뷰어 평점과의 일치율",
}
VERDICTS_KO = {"crossed": "⚠️ 드리프트", "within": "정상", "not_significant": "정상 (유의하지 않음)",
               "too_few": "표본 부족", "unavailable": "데이터 없음"}


def _verdict(check: dict) -> str:
    """The check's verdict; reports stored before checks had one get it from `crossed` and `value`."""
    return check.get("verdict") or ("crossed" if check.get("crossed") else
                                    "unavailable" if check.get("value") is None else "within")


def verdict_ko(check: dict) -> str:
    """The check's verdict as the app names it."""
    return VERDICTS_KO.get(_verdict(check), _verdict(check))


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _measure_ko(c: dict) -> str:
    """What the check measured, in Korean, with its numbers (value is not None)."""
    v, r, name = c["value"], c.get("reference"), c["name"]
    if name == "length_psi":
        medians = ""
        if c.get("median_chars") is not None and c.get("reference_median_chars") is not None:
            medians = f", 길이 중앙값 {c['median_chars']:.0f}자 (기준 {c['reference_median_chars']:.0f}자)"
        return f"리뷰 길이 분포 변화 지수 {v:.3f}{medians}"
    if name == "score_psi":
        return f"예측 점수 분포 변화 지수 {v:.3f}"
    if name == "unknown_token_rate":
        return f"기준 어휘에 없는 단어 {_pct(v)} (기준 {_pct(r)}, {(v - r) * 100:+.1f}%p)"
    if name == "positive_share":
        return f"긍정 예측 비율 {_pct(v)} (기준 {_pct(r)}, {(v - r) * 100:+.1f}%p)"
    if name == "mean_confidence":
        return f"평균 신뢰도 {_pct(v)} (기준 {_pct(r)})"
    if name == "agreement":
        return f"리뷰어 평점과의 일치율 {_pct(v)} (리뷰 {c.get('n_labelled', c.get('n', 0)):,}건)"
    return f"값 {v:.4f}"


def _limit_ko(c: dict) -> str:
    """The check's threshold, in Korean."""
    t, name = c["threshold"], c["name"]
    if name in ("length_psi", "score_psi"):
        return f"임계값 {t:.2f}"
    if name == "unknown_token_rate":
        return f"허용 증가폭 {t * 100:.1f}%p"
    if name == "positive_share":
        return f"허용 변화폭 ±{t * 100:.1f}%p"
    if name == "mean_confidence":
        return f"허용 하락폭 {t * 100:.1f}%p"
    if name == "agreement":
        return f"최소 {_pct(t)}"
    return f"임계값 {t:.4f}"


def p_value_ko(p: float | None) -> str:
    """A p-value as the app writes it: no exponents (p<0.001), 검정 없음 when no test applies."""
    return "검정 없음" if p is None else "p<0.001" if p < 0.001 else f"p={p:.3f}"


def finding_ko(check: dict) -> str:
    """A check of a report as one Korean sentence, from its verdict and numbers (PSI is named 분포 변화 지수,
    and p-values are written without exponents, so the sentence holds no English)."""
    c = check
    verdict = _verdict(c)
    n, min_n = int(c.get("n") or 0), c.get("min_n")
    p_text = p_value_ko(c.get("p_value"))
    if verdict == "too_few":
        need = f" (최소 {min_n:,}건)" if min_n else ""
        what = "평점이 있는 최근 리뷰" if c["name"] == "agreement" else "최근 리뷰"
        return f"표본 부족: {what} {n:,}건으로는 판단하지 않습니다{need}."
    if verdict == "unavailable" or c.get("value") is None:
        return "비교할 데이터가 없습니다."
    measure, limit = _measure_ko(c), _limit_ko(c)
    if verdict == "crossed":
        sample = f"리뷰 {n:,}건에서 " if n else ""
        return f"{measure}: {limit} 기준을 벗어났고, {sample}우연으로 보기 어려운 차이입니다 ({p_text})."
    if verdict == "not_significant":
        alpha = c.get("significance")
        level = f", 유의수준 {alpha:g}" if alpha is not None else ""
        return (f"{measure}: {limit} 기준을 벗어났지만 리뷰 {n:,}건으로는 우연일 수 있어 드리프트로 보지 "
                f"않습니다 ({p_text}{level}).")
    return f"{measure}: {limit} 기준 이내입니다."


def store_report(store, report: dict, day: date) -> str:
    """Write a day's report to the artifact store (replacing that day's earlier one); returns its URI."""
    key = f"{REPORTS}/{day:%Y-%m-%d}.json"
    store.put(key, json.dumps(report, ensure_ascii=False, indent=2).encode(), overwrite=True)
    return store.uri(key)


def latest_report(store) -> dict | None:
    """The newest stored report, or None when there is none."""
    keys = sorted(k for k in store.list(REPORTS) if k.endswith(".json"))
    return json.loads(store.get(keys[-1])) if keys else None
