"""The stacked CPU model: the baseline and a morpheme model, combined by a logistic regression fitted on
their validation margins.

- `MorphemeModel` is the baseline's design (hashed TF-IDF, averaged-SGD logistic regression, the same
  skops file with its checksum) over other features: morpheme 1–3-grams (`text/morphemes.py`: MeCab, or
  Kiwi for models trained before MeCab) instead of characters and words. Morphemes see what character
  n-grams cannot (endings and particles split from their stems), so the two models err on partly
  different reviews.
- `StackModel` fits both on the training split, then a two-weight logistic regression on their
  decision values for the validation split (class-balanced, like the baseline's Platt scaling): the
  combiner learns how far to trust each model and gives calibrated probabilities in one step.

Saved as a folder: `meta.json` (format, combiner, parameters) with the two models' own folders,
`baseline/` and `morphemes/`, each refusing a file that does not match its checksum.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer

from reviewops.errors import InputError, ModelArtifactError
from reviewops.fsutil import atomic_folder
from reviewops.models.baseline import BaselineModel, BaselineParams, balanced_logistic
from reviewops.text import morphemes
from reviewops.text.clean import Cleaner

log = logging.getLogger(__name__)

FORMAT = "reviewops-stack/1"
MORPHEME_FORMAT = "reviewops-morpheme-linear/1"
META_FILE = "meta.json"
PARTS = ("baseline", "morphemes")
DEFAULT_ANALYSER = morphemes.DEFAULT  # one name for both classes: in StackParams, `morphemes` is the field

# The morpheme model reads its n-gram range and hash width from BaselineParams' word fields: its only
# feature block is "words" that are morphemes.
MORPHEME_DEFAULTS = {"char_ngrams": None, "word_ngrams": (1, 3), "nospace_ngrams": None, "word_features": 2**21,
                     "rating_alpha": None}  # the rating head is the baseline part's


class MorphemeModel(BaselineModel):
    """Normalise → morphemes → hashed 1–3-grams → TF-IDF → logistic regression."""

    format = MORPHEME_FORMAT

    def __init__(self, params: BaselineParams | None = None, cleaner: Cleaner | None = None,
                 analyser: str = DEFAULT_ANALYSER) -> None:
        super().__init__(params or BaselineParams.from_dict(MORPHEME_DEFAULTS), cleaner)
        self.analyser = analyser
        p = self.params
        self.vectorizers = [("morpheme", HashingVectorizer(
            analyzer="word", token_pattern=r"\S+", ngram_range=p.word_ngrams, n_features=p.word_features,
            lowercase=False, alternate_sign=False, norm=None, dtype=np.float32))]

    def _normalise(self, texts) -> list[str]:
        n_jobs = max(1, min(self.params.n_jobs, os.cpu_count() or 1))
        return morphemes.tokenise(super()._normalise(texts), n_jobs=n_jobs, analyser=self.analyser)


@dataclass(frozen=True)
class StackParams:
    baseline: BaselineParams = field(default_factory=BaselineParams)
    morphemes: BaselineParams = field(default_factory=lambda: BaselineParams.from_dict(MORPHEME_DEFAULTS))
    analyser: str = DEFAULT_ANALYSER  # "mecab" or "kiwi" (text/morphemes.py)

    def __post_init__(self) -> None:
        morphemes.known(self.analyser)  # before any training, not when the first texts are analysed

    @classmethod
    def from_dict(cls, d: dict) -> StackParams:
        return cls(BaselineParams.from_dict(d.get("baseline", {})),
                   BaselineParams.from_dict({**MORPHEME_DEFAULTS, **d.get("morphemes", {})}),
                   d.get("analyser", DEFAULT_ANALYSER))


class StackModel:
    """P(positive) = sigmoid(w_b · baseline margin + w_m · morpheme margin + b), w and b fitted on validation."""

    format = FORMAT

    def __init__(self, params: StackParams | None = None, cleaner: Cleaner | None = None) -> None:
        self.params = params or StackParams()
        self.cleaner = cleaner or Cleaner()
        self.baseline = BaselineModel(self.params.baseline, self.cleaner)
        self.morphemes = MorphemeModel(self.params.morphemes, self.cleaner, self.params.analyser)
        self.weights, self.bias = (0.0, 0.0), 0.0
        self.train_seconds = 0.0

    def fit(self, texts, labels, valid_texts=None, valid_labels=None, ratings=None, neutral=None) -> StackModel:
        """`ratings` and `neutral` go to the baseline part's rating head (`BaselineModel.fit`)."""
        if valid_texts is None or not len(valid_texts) or len(np.unique(valid_labels)) < 2:
            raise InputError("the stacked model fits its combiner on the validation split, "
                             "which needs reviews of both labels")
        start = time.perf_counter()
        y, yv = np.asarray(labels).astype(int), np.asarray(valid_labels).astype(int)
        # Each part is calibrated on validation too, so it can be judged (and served) on its own; the
        # morphemes of the validation texts are cached, so the combiner below does not analyse them again.
        self.baseline.fit(texts, y, valid_texts, yv, ratings, neutral)
        self.morphemes.fit(texts, y, valid_texts, yv)
        weights, self.bias = balanced_logistic(self.margins(valid_texts), yv)
        self.weights = tuple(float(w) for w in weights)
        self.train_seconds = time.perf_counter() - start
        return self

    def margins(self, texts) -> np.ndarray:
        """(n, 2): the baseline's and the morpheme model's decision values."""
        texts = list(texts)
        return np.column_stack([self.baseline.margin(texts), self.morphemes.margin(texts)])

    def predict_proba(self, texts) -> np.ndarray:
        """P(positive) for each text."""
        z = self.margins(texts) @ np.asarray(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, folder: str | Path) -> Path:
        """Write the model folder atomically (a temporary folder renamed into place)."""
        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            self.baseline.save(tmp / "baseline")
            self.morphemes.save(tmp / "morphemes")
            meta = {"format": self.format, "weights": list(self.weights), "bias": self.bias,
                    "analyser": morphemes.describe(self.params.analyser),
                    "params": {"baseline": asdict(self.params.baseline), "morphemes": asdict(self.params.morphemes)},
                    "train_seconds": self.train_seconds}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> StackModel:
        from reviewops.models.loading import read_meta

        folder = Path(folder)
        meta = read_meta(folder)
        if meta.get("format") != cls.format:
            raise ModelArtifactError(f"model artifact {folder}: unknown format {meta.get('format')!r} "
                                     f"(expected {cls.format})")
        name = _check_analyser(folder, meta.get("analyser", {}))
        baseline = BaselineModel.load(folder / "baseline")
        morpheme_model = MorphemeModel.load(folder / "morphemes")
        morpheme_model.analyser = name
        model = cls(StackParams(baseline.params, morpheme_model.params, name), baseline.cleaner)
        model.baseline, model.morphemes = baseline, morpheme_model
        try:
            w_b, w_m = (float(w) for w in meta["weights"])
            model.weights, model.bias = (w_b, w_m), float(meta["bias"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelArtifactError(f"model artifact {folder}: incomplete metadata "
                                     f"({type(exc).__name__}: {exc})") from None
        model.train_seconds = meta.get("train_seconds", 0.0)
        return model


def _check_analyser(folder: Path, trained: dict) -> str:
    """The analyser a model was trained with (metadata written before MeCab names none: Kiwi). A model whose
    morphemes this install would analyse differently, other Kiwi options, is refused; another version of the
    analyser or its dictionary is logged, not refused (its morphemes rarely change)."""
    name = trained.get("name", "kiwi")
    if name not in morphemes.ANALYSERS:
        raise ModelArtifactError(f"model artifact {folder}: trained with an unknown morpheme analyser {name!r}")
    versions = set(morphemes.PACKAGES[name])
    try:
        here = morphemes.describe(name)
    except PackageNotFoundError:
        raise ModelArtifactError(f"model artifact {folder}: its morphemes need {' and '.join(sorted(versions))}, "
                                 "which this install lacks") from None
    options = {k for k in {*trained, *here} if k not in versions and k != "name"}
    if any(trained.get(k) != here.get(k) for k in options):
        raise ModelArtifactError(f"model artifact {folder}: trained with analyser options {trained}, "
                                 f"this install uses {here}")
    changed = {k: (trained.get(k), here[k]) for k in versions if trained.get(k) != here[k]}
    if changed:
        log.warning("model %s was trained with other analyser versions (trained, here): %s", folder, changed)
    return name
