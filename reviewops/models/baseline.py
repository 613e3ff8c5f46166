"""The fast CPU model: hashed TF-IDF over characters and words, logistic regression, Platt calibration.

With ratings to learn from (the snapshot's labelled reviews and its neutral part: NSMC's 5–8, which no
label covers), a rating head joins it: a ridge regression of the 1–10 rating on the same features. Both
are linear in the same features, so the weights that validation gives each (a class-balanced logistic
regression on their two outputs) fold them into one linear model: the saved model, its speed, its
explanations and its file format stay the classifier's. The regression sees the neutral reviews and
the distance between a 1 and a 4; on the full corpus it adds 0.36 points of held-out accuracy
(bench/README.md, "Rating head").

Texts go through the same normalisation as at ingest (`Cleaner.normalise`) before featurising,
so what the model sees in service matches what it was trained on. Hashing keeps the model free
of a vocabulary (small, fast to save and load) and lets both cores featurise at once; the hashing
itself is scikit-learn's, computed in NumPy (`models/hashing.py`: the same matrix, about 2-3× as fast).

The model is saved as a folder: `model.skops` (skops, never a bare pickle) and `meta.json`
holding its parameters, calibration and the SHA-256 of `model.skops`. Loading checks the
checksum and that the file holds only scikit-learn/NumPy/SciPy types, so a tampered or broken
artifact is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier

from reviewops.errors import ModelArtifactError
from reviewops.fsutil import atomic_folder
from reviewops.models import hashing
from reviewops.text.clean import Cleaner

FORMAT = "reviewops-tfidf-linear/2"  # 2: feature blocks are (kind, vectorizer) pairs
MODEL_FILE, META_FILE = "model.skops", "meta.json"
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineParams:
    # Defaults chosen on the full corpus (bench/README): spacing-free character 1–5-grams (Korean
    # spacing is unreliable) and word 1–3-grams matched three-block variants within 0.1 point of
    # accuracy at 1.4–1.6× their prediction speed. Character n-grams with spaces are optional.
    char_ngrams: tuple[int, int] | None = None
    word_ngrams: tuple[int, int] | None = (1, 3)
    nospace_ngrams: tuple[int, int] | None = (1, 5)
    char_features: int = 2**21
    word_features: int = 2**20
    nospace_features: int = 2**22
    alpha: float = 5e-7  # L2 strength of the averaged-SGD logistic regression
    epochs: int = 10
    class_weight: str | None = "balanced"
    rating_alpha: float | None = 1.0  # L2 strength of the rating head; None: no rating head
    # Fewer rated reviews: no head. On the bundled sample it gained nothing from 15,000 (its weights come from
    # validation, then under 1,400 reviews) and 0.6 points from 40,000; on 2,000 it was weighed against the
    # classifier (bench/README.md, "Rating head").
    rating_min_rows: int = 20_000
    n_jobs: int = 2

    @classmethod
    def from_dict(cls, d: dict) -> BaselineParams:
        d = dict(d)
        for k in ("char_ngrams", "word_ngrams", "nospace_ngrams"):  # JSON gives lists
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _vectorizers(p: BaselineParams) -> list[tuple[str, HashingVectorizer]]:
    """Feature blocks, each (kind, vectorizer): characters, words, spacing-free characters."""
    common = {"alternate_sign": False, "norm": None, "lowercase": True, "dtype": np.float32}
    blocks = []
    if p.char_ngrams:
        blocks.append(("char", HashingVectorizer(analyzer="char", ngram_range=p.char_ngrams,
                                                 n_features=p.char_features, **common)))
    if p.word_ngrams:
        blocks.append(("word", HashingVectorizer(analyzer="word", ngram_range=p.word_ngrams,
                                                 n_features=p.word_features, token_pattern=r"(?u)\b\w+\b",
                                                 **common)))
    if p.nospace_ngrams:
        blocks.append(("nospace", HashingVectorizer(analyzer="char", ngram_range=p.nospace_ngrams,
                                                    n_features=p.nospace_features, **common)))
    if not blocks:
        raise ValueError("the model needs at least one feature block")
    return blocks


def _hash_chunk(blocks: list[tuple[str, HashingVectorizer]], texts: list[str]) -> sparse.csr_matrix:
    squeezed = [t.replace(" ", "") for t in texts] if any(k == "nospace" for k, _ in blocks) else texts
    return sparse.hstack([hashing.transform(v, squeezed if k == "nospace" else texts) for k, v in blocks],
                         format="csr")


class BaselineModel:
    """Normalise → hash → TF-IDF → linear model → Platt-calibrated P(positive)."""

    format = FORMAT  # what meta.json says; a subclass with other features (stack.MorphemeModel) has its own

    def __init__(self, params: BaselineParams | None = None, cleaner: Cleaner | None = None) -> None:
        self.params = params or BaselineParams()
        self.cleaner = cleaner or Cleaner()
        self.vectorizers = _vectorizers(self.params)
        self.tfidf: TfidfTransformer | None = None
        self.clf: SGDClassifier | None = None
        self.calibration = (1.0, 0.0)  # P = sigmoid(a * margin + b)
        self.head_weights: tuple[float, float] | None = None  # the rating head's fold, when it has one
        self.rating_rows = 0
        self.train_seconds = 0.0

    # --- features -----------------------------------------------------------------------
    def _normalise(self, texts) -> list[str]:
        norm = self.cleaner.normalise
        return [norm(t if isinstance(t, str) else "")[0] for t in texts]

    def _hashed(self, texts: list[str]) -> sparse.csr_matrix:
        n_jobs = max(1, min(self.params.n_jobs, os.cpu_count() or 1))
        if n_jobs == 1 or len(texts) < 20_000:
            return _hash_chunk(self.vectorizers, texts)
        step = -(-len(texts) // n_jobs)
        parts = Parallel(n_jobs=n_jobs)(
            delayed(_hash_chunk)(self.vectorizers, texts[i : i + step]) for i in range(0, len(texts), step)
        )
        return sparse.vstack(parts, format="csr")

    def features(self, texts) -> sparse.csr_matrix:
        if self.tfidf is None:
            raise ModelArtifactError("the model is not trained")
        return self.tfidf.transform(self._hashed(self._normalise(texts)))

    # --- training -------------------------------------------------------------------------
    def fit(self, texts, labels, valid_texts=None, valid_labels=None, ratings=None,
            neutral: tuple[list[str], np.ndarray] | None = None) -> BaselineModel:
        """Train on `texts` and `labels`, calibrated on the validation split when it has both labels.
        `ratings` (one per text, NaN where unknown) and `neutral` (texts and ratings of unlabelled reviews)
        train the rating head, which needs the validation split to be weighed."""
        start = time.perf_counter()
        y = np.asarray(labels).astype(int)
        counts = self._hashed(self._normalise(texts))
        self.tfidf = TfidfTransformer(sublinear_tf=True).fit(counts)
        X = self.tfidf.transform(counts)
        self.clf = SGDClassifier(
            loss="log_loss", alpha=self.params.alpha, max_iter=self.params.epochs, tol=None, average=True,
            class_weight=self.params.class_weight, random_state=0,
        ).fit(X, y)
        self.clf.coef_ = self.clf.coef_.astype(np.float32)  # half the size, same decisions to 1e-7
        for attr in ("_average_coef", "_average_intercept", "_standard_coef", "_standard_intercept"):
            if hasattr(self.clf, attr):  # only partial_fit needs these; they would triple the file
                delattr(self.clf, attr)
        if valid_texts is not None and len(valid_texts) and len(np.unique(valid_labels)) == 2:
            yv = np.asarray(valid_labels).astype(int)
            Xv = self.features(valid_texts)
            head, rated_rows = self._rating_head(X, ratings, neutral)
            columns = [self.clf.decision_function(Xv)] + ([head.predict(Xv)] if head is not None else [])
            weights, bias = balanced_logistic(np.column_stack(columns), yv)
            if head is not None and min(weights) <= 0:  # validation weighs one against the other: noise
                log.warning("rating head left out: validation weighs it %.3f against the classifier's %.3f",
                            weights[1], weights[0])
                head = None
                weights, bias = balanced_logistic(columns[0].reshape(-1, 1), yv)
            if head is None:  # Platt scaling: probabilities for a 50/50 prior
                self.calibration = (float(weights[0]), bias)
            else:
                self._fold(head, weights, rated_rows)
                self.calibration = (1.0, bias)
        self.train_seconds = time.perf_counter() - start
        return self

    def _rating_head(self, X: sparse.csr_matrix, ratings, neutral) -> tuple[Ridge | None, int]:
        """The ridge regression of the rating on the features of every rated review (None without enough),
        and how many rated reviews it learnt from."""
        if self.params.rating_alpha is None:
            return None, 0
        blocks, targets = [], []
        if ratings is not None:
            r = np.asarray(ratings, dtype=np.float64)
            known = ~np.isnan(r)
            blocks.append(X[known])
            targets.append(r[known])
        if neutral is not None and len(neutral[0]):
            blocks.append(self.features(neutral[0]))
            targets.append(np.asarray(neutral[1], dtype=np.float64))
        target = np.concatenate(targets) if targets else np.empty(0)
        if len(target) < self.params.rating_min_rows or len(np.unique(target)) < 2:
            log.info("no rating head: %d rated reviews (at least %d with two ratings needed)", len(target),
                     self.params.rating_min_rows)
            return None, 0
        # tol 1e-3: a third faster than the default 1e-4 on the full corpus, the same validation accuracy
        head = Ridge(alpha=self.params.rating_alpha, solver="sparse_cg", tol=1e-3)
        return head.fit(sparse.vstack(blocks, format="csr"), target), len(target)

    def _fold(self, head: Ridge, weights: np.ndarray, rated_rows: int) -> None:
        """One linear model: w_label · classifier + w_rating · head, in the classifier's coefficients."""
        w_label, w_rating = (float(w) for w in weights)
        self.clf.coef_ = (w_label * self.clf.coef_ + w_rating * head.coef_.reshape(1, -1)).astype(np.float32)
        self.clf.intercept_ = w_label * self.clf.intercept_ + w_rating * head.intercept_
        self.head_weights, self.rating_rows = (w_label, w_rating), rated_rows

    # --- prediction -----------------------------------------------------------------------
    def margin(self, texts) -> np.ndarray:
        if self.clf is None:
            raise ModelArtifactError("the model is not trained")
        return self.clf.decision_function(self.features(texts))

    def predict_proba(self, texts) -> np.ndarray:
        """P(positive) for each text."""
        a, b = self.calibration
        return 1.0 / (1.0 + np.exp(-(a * self.margin(texts) + b)))

    # --- persistence --------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the model folder atomically (a temporary folder renamed into place)."""
        sio = _skops()
        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            blob = sio.dumps({"vectorizers": self.vectorizers, "tfidf": self.tfidf, "clf": self.clf},
                             compression=zipfile.ZIP_DEFLATED, compresslevel=1)
            (tmp / MODEL_FILE).write_bytes(blob)
            meta = {
                "format": self.format,
                "sha256": hashlib.sha256(blob).hexdigest(),
                "params": asdict(self.params),
                "cleaner": {
                    "min_chars": self.cleaner.min_chars,
                    "max_chars": self.cleaner.max_chars,
                    "min_hangul_ratio": self.cleaner.min_hangul_ratio,
                    "max_repeat": self.cleaner.max_repeat,
                    "version": self.cleaner.version,
                },
                "calibration": list(self.calibration),
                "rating_head": None if self.head_weights is None else {"weights": list(self.head_weights),
                                                                       "rows": self.rating_rows},
                "train_seconds": self.train_seconds,
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> BaselineModel:
        sio = _skops()
        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text())
            blob = (folder / MODEL_FILE).read_bytes()
        except FileNotFoundError as exc:
            raise ModelArtifactError(f"model artifact {folder} is incomplete: "
                                     f"{Path(exc.filename).name} is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelArtifactError(f"model artifact {folder}: {META_FILE} is not valid JSON") from None
        if meta.get("format") != cls.format:
            raise ModelArtifactError(f"model artifact {folder}: unknown format {meta.get('format')!r} "
                                     f"(expected {cls.format})")
        if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
            raise ModelArtifactError(f"model artifact {folder}: {MODEL_FILE} does not match its checksum "
                                     "(broken or tampered)")
        try:
            untrusted = sio.get_untrusted_types(data=blob)
            bad = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
            if bad:
                raise ModelArtifactError(f"model artifact {folder}: refuses to load unexpected types {bad}")
            parts = sio.loads(blob, trusted=untrusted)
        except ModelArtifactError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a broken artifact
            raise ModelArtifactError(f"model artifact {folder}: cannot be read "
                                     f"({type(exc).__name__}: {exc})") from None
        try:
            c = meta["cleaner"]
            model = cls(
                BaselineParams.from_dict(meta["params"]),
                Cleaner(c["min_chars"], c["max_chars"], c["min_hangul_ratio"], c["max_repeat"]),
            )
            model.vectorizers, model.tfidf, model.clf = parts["vectorizers"], parts["tfidf"], parts["clf"]
            model.calibration = tuple(float(x) for x in meta["calibration"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelArtifactError(f"model artifact {folder}: incomplete metadata "
                                     f"({type(exc).__name__}: {exc})") from None
        model.train_seconds = meta.get("train_seconds", 0.0)
        if head := meta.get("rating_head"):  # what it was trained with, for the record: already folded in
            model.head_weights, model.rating_rows = tuple(head["weights"]), head["rows"]
        return model


def balanced_logistic(columns: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights and bias of a logistic regression on `columns`, fitted with both labels weighted to a 50/50
    prior (calibration and stacking on a validation split whose balance is not the evaluation's)."""
    w = np.where(y == 1, 0.5 / max((y == 1).mean(), 1e-9), 0.5 / max((y == 0).mean(), 1e-9))
    fitted = LogisticRegression(C=1e4).fit(columns, y, sample_weight=w)
    return fitted.coef_[0], float(fitted.intercept_[0])


def _skops():
    """skops.io, imported quietly: on import it looks types up across every loaded module, and inside
    Airflow that touches hundreds of deprecated aliases, each logging a warning about nothing here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import skops.io as sio
    return sio
