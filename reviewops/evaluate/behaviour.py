"""The behavioural set: hand-written Korean reviews a model gets wrong for a reason (negation, double
negation, sarcasm, mixed reviews, intensifiers, typos and slang), scored at every training.

Accuracy on held-out reviews hides these: they are rare in the corpus but they are what a user tries
first (재미없지는 않았다, 안 볼 이유가 없다, 두 시간 동안 잠만 잤습니다 ^^). The cases live in `behaviour.tsv`
beside this module (text, label 긍정|부정, category); a training logs `behaviour.accuracy` and
`behaviour.<category>.accuracy` to MLflow and the Slack report shows them.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reviewops.data.labels import LABEL_IDS_KO, LABEL_NAMES_KO
from reviewops.errors import InputError

CASES_FILE = Path(__file__).with_name("behaviour.tsv")
CATEGORIES = ("negation", "double_negation", "sarcasm", "mixed", "intensifier", "typo_slang")
PREFIX = "behaviour."


@dataclass(frozen=True)
class Case:
    text: str
    label: int  # 1 positive, 0 negative
    category: str


@dataclass
class BehaviourResult:
    cases: list[Case]
    scores: list[float]  # P(positive) of each case

    @property
    def correct(self) -> list[bool]:
        return [(s >= 0.5) == bool(c.label) for c, s in zip(self.cases, self.scores, strict=True)]

    def accuracy(self, category: str | None = None) -> float:
        hits = [ok for ok, c in zip(self.correct, self.cases, strict=True) if category in (None, c.category)]
        return float(np.mean(hits)) if hits else float("nan")

    def metrics(self) -> dict[str, float]:
        """`behaviour.accuracy`, `behaviour.n` and `behaviour.<category>.accuracy` for each category."""
        out = {f"{PREFIX}accuracy": self.accuracy(), f"{PREFIX}n": float(len(self.cases))}
        for category in CATEGORIES:
            if any(c.category == category for c in self.cases):
                out[f"{PREFIX}{category}.accuracy"] = self.accuracy(category)
        return out

    def table(self) -> dict:
        """Every case with the model's answer (the run's `behaviour/cases.json`)."""
        return {"cases": [{"text": c.text, "label": LABEL_NAMES_KO[c.label], "category": c.category,
                           "score": round(s, 6), "correct": ok}
                          for c, s, ok in zip(self.cases, self.scores, self.correct, strict=True)]}


def load_cases(path: str | Path = CASES_FILE) -> list[Case]:
    """The cases of a TSV with columns text, label (긍정 or 부정), category (one of CATEGORIES)."""
    path = Path(path)
    cases = []
    with open(path, encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), start=2):
            text, label, category = (row.get(k) or "" for k in ("text", "label", "category"))
            if not text.strip() or label not in LABEL_IDS_KO or category not in CATEGORIES:
                raise InputError(f"{path}:{line}: expected text, label (긍정 or 부정) and a category among "
                                 f"{', '.join(CATEGORIES)}; got {text!r}, {label!r}, {category!r}")
            cases.append(Case(text, LABEL_IDS_KO[label], category))
    if not cases:
        raise InputError(f"{path}: no cases")
    return cases


def score(predict_proba: Callable[[list[str]], np.ndarray], cases: list[Case] | None = None) -> BehaviourResult:
    """A model's answers on the behavioural set (the bundled one unless `cases` is given)."""
    cases = cases if cases is not None else load_cases()
    scores = np.asarray(predict_proba([c.text for c in cases]), dtype=float)
    return BehaviourResult(cases, scores.tolist())


def summary_line(metrics: dict[str, float]) -> str | None:
    """`62% (negation 50%, ...)` from a run's metrics, weakest category first; None without them."""
    overall = metrics.get(f"{PREFIX}accuracy")
    if overall is None:
        return None
    parts = sorted((metrics[f"{PREFIX}{c}.accuracy"], c) for c in CATEGORIES if f"{PREFIX}{c}.accuracy" in metrics)
    n = metrics.get(f"{PREFIX}n")
    size = f" of {int(n)} cases" if n else ""
    return f"{overall:.0%}{size} ({', '.join(f'{c} {a:.0%}' for a, c in parts)})"
