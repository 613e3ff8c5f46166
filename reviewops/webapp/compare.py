"""The 모델 page's comparison of the champion and the challenger, from `GET /v1/models` versions.

Pure functions over the API's version dicts: which two versions to compare, the side-by-side table
(overall metrics, per slice, on the behavioural set when the run has it, serving cost) and the rows of
the per-slice chart. Metric names come from the caller (`ui.metric_name`), which owns the Korean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from reviewops.evaluate.metrics import LENGTH_SLICES

OVERALL = ("accuracy", "f1", "roc_auc", "log_loss")
# serving cost: (field of the API's `cost`, Korean name, format)
COST_ROWS = (("batch_reviews_per_second", "배치 처리량 (리뷰/초)", ",.0f"),
             ("single_p50_ms", "단건 지연 p50 (ms)", ".1f"), ("single_p99_ms", "단건 지연 p99 (ms)", ".1f"))


def champion_and_challenger(versions: Sequence[Mapping], champion: str | None) -> tuple[dict, dict | None] | None:
    """(the champion, the challenger or None): the version with the challenger alias, else the newest other
    version (after a promotion by hand or a rollback there is no challenger alias); the newest version stands
    in for a champion when the registry has none. None without versions."""
    if not versions:
        return None
    best = next((v for v in versions if str(v["version"]) == str(champion)), versions[-1])
    others = [v for v in versions if v is not best]
    rival = next((v for v in reversed(others) if "challenger" in v.get("aliases", ())), others[-1] if others else None)
    return _measures(best), _measures(rival) if rival is not None else None


def _measures(v: Mapping) -> dict:
    """A version with its per-slice metrics among its metrics (the API gives them apart)."""
    return dict(v) | {"metrics": (v.get("metrics") or {}) | (v.get("slices") or {})}


def _metric_keys(*versions: Mapping | None) -> list[str]:
    """Overall metrics first, then accuracy per slice (short to long texts, then sources) and the
    behavioural set's (the whole set, then each category, then its size)."""
    found = {k for v in versions if v for k in (v.get("metrics") or {})}
    lengths = {f"slice.{name}.accuracy": i for i, (_, _, name) in enumerate(LENGTH_SLICES)}
    sliced = sorted((k for k in found if k.startswith("slice.") and k.endswith(".accuracy")),
                    key=lambda k: (lengths.get(k, len(lengths)), k))
    behaviour = sorted((k for k in found if k.startswith("behaviour.")),
                       key=lambda k: (k != "behaviour.accuracy", k == "behaviour.n", k))
    return [k for k in OVERALL if k in found] + sliced + behaviour


def column(v: Mapping, role: str) -> str:
    if role == "도전자" and "challenger" not in v.get("aliases", ()):
        role = "비교 버전"
    return f"{role} v{v['version']}"


def comparison_table(best: Mapping, rival: Mapping | None, name: Callable[[str], str]) -> pd.DataFrame:
    """Rows of measures, a column per version and (with a challenger) the difference, as display text."""
    columns = [column(best, "챔피언")] + ([column(rival, "도전자")] if rival else [])
    rows = []

    def add(label: str, values: list[float | None], fmt: str) -> None:
        row = {"항목": label} | {c: "-" if x is None else f"{x:{fmt}}" for c, x in zip(columns, values, strict=True)}
        if rival is not None:
            a, b = values
            row["차이"] = "-" if a is None or b is None else f"{b - a:+{fmt}}"
        rows.append(row)

    pair = [v for v in (best, rival) if v is not None]
    for key in _metric_keys(best, rival):
        add(name(key), [(v.get("metrics") or {}).get(key) for v in pair], ",.0f" if key.endswith(".n") else ".4f")
    for key, label, fmt in COST_ROWS:
        add(label, [(v.get("cost") or {}).get(key) for v in pair], fmt)
    return pd.DataFrame(rows)


def slice_rows(best: Mapping, rival: Mapping | None, name: Callable[[str], str]) -> list[dict]:
    """Accuracy per slice of each version, for `charts.comparison_chart`."""
    out = []
    for v, role in ((best, "챔피언"), (rival, "도전자")):
        if v is None:
            continue
        metrics = v.get("metrics") or {}
        for key in _metric_keys(v):
            if key.startswith("slice."):
                out.append({"지표": name(key).rsplit(" · ", 1)[0], "버전": column(v, role), "값": metrics[key]})
    return out


def gate_floor(versions: Sequence[Mapping]) -> float | None:
    """The gate's floor as the newest decision that recorded it saw it."""
    for v in reversed(versions):
        floor = (v.get("reason_args") or {}).get("floor")
        if isinstance(floor, int | float):
            return float(floor)
    return None
