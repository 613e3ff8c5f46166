"""Why a model gave its score, and which inputs it does not know.

Explanations are spans of the ORIGINAL text (its words: runs of non-space characters) with a weight in
logit units: > 0 pushed the score toward 긍정, < 0 toward 부정.

- The hashed TF-IDF linear model (`BaselineModel`) is explained exactly: its margin is the sum over
  features of (TF-IDF value × coefficient) plus the intercept. Each feature's contribution is shared
  equally among the n-gram occurrences that hash to it, each occurrence's share equally among the
  characters it covers, and each character's weight goes to the word of the original text it came
  from. The words' weights therefore sum to calibration slope × (margin − intercept): nothing is lost
  or invented, only placed.
- Any other model (the stacked model, transformers, ONNX) is explained by occlusion: a word's weight is
  logit(P(text)) − logit(P(text without the word)). Its faithfulness is measured in tests/test_explain.py.

`unseen_share` answers, for the linear models, which share of a text's words the model never saw in
training (the `mostly_unseen` flag of `reviewops.predict`).
"""

from __future__ import annotations

import re
import weakref
from bisect import bisect_right
from difflib import SequenceMatcher

import numpy as np
from sklearn.feature_extraction import FeatureHasher

from reviewops.models.baseline import BaselineModel

WORD = re.compile(r"\S+")
_EPS = 1e-7


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each word (a run of non-space characters) of `text`."""
    return [m.span() for m in WORD.finditer(text)]


def explain(model, texts: list[str]) -> list[list[dict]]:
    """For each text, its words as `{"start", "end", "text", "weight"}`, ordered by start."""
    if type(model) is BaselineModel:  # a subclass (the morpheme model) has other features: occlusion
        return [_exact(model, t) for t in texts]
    return occlusion(model, texts)


# --- the linear model: exact contributions -----------------------------------------------------------


def contributions(model: BaselineModel, text: str) -> np.ndarray:
    """Per word of `text` (see `word_spans`), its share of margin − intercept (the model's raw units)."""
    spans = word_spans(text)
    norm = model.cleaner.normalise(text)[0]
    row = model.features([text])
    cols, values = row.indices, row.data.astype(np.float64) * model.clf.coef_[0][row.indices].astype(np.float64)
    per_char = np.zeros(len(norm), dtype=np.float64)
    occurrences = _occurrences(model, norm)
    leftover = 0.0
    for col, value in zip(cols.tolist(), values.tolist(), strict=True):
        found = occurrences.get(col)
        if not found:  # cannot happen with sklearn's analysers; kept so that the sum always holds
            leftover += value
            continue
        share = value / len(found)
        for positions in found:
            np.add.at(per_char, positions, share / len(positions))
    words = np.zeros(len(spans), dtype=np.float64)
    if not spans:
        return words
    to_original = _alignment(norm, text)
    starts = [s for s, _ in spans]
    for i in np.flatnonzero(per_char):
        words[max(0, bisect_right(starts, to_original[i]) - 1)] += per_char[i]
    if not len(norm) or leftover:
        words += leftover / len(spans)
    return words


def _exact(model: BaselineModel, text: str) -> list[dict]:
    slope = model.calibration[0]  # P = sigmoid(slope × margin + b): logit units
    weights = contributions(model, text) * slope
    return [{"start": s, "end": e, "text": text[s:e], "weight": round(float(w), 6)}
            for (s, e), w in zip(word_spans(text), weights, strict=True)]


def _occurrences(model: BaselineModel, norm: str) -> dict[int, list[np.ndarray]]:
    """Column of the model's feature matrix → the positions (in `norm`) of each n-gram hashing to it,
    generated as scikit-learn's analysers generate them (lowercased; spacing-free for `nospace`)."""
    lowered = norm.lower()
    if len(lowered) != len(norm):  # a letter whose lowercase is longer: positions by the original
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in norm)
    out: dict[int, list[np.ndarray]] = {}
    offset = 0
    for kind, vec in model.vectorizers:
        grams, positions = _grams(kind, vec, lowered)
        if grams:
            hashed = FeatureHasher(n_features=vec.n_features, input_type="string",
                                   alternate_sign=False).transform([[g] for g in grams])
            for col, pos in zip(hashed.indices.tolist(), positions, strict=True):
                out.setdefault(offset + col, []).append(pos)
        offset += vec.n_features
    return out


def _grams(kind: str, vec, text: str) -> tuple[list[str], list[np.ndarray]]:
    lo, hi = vec.ngram_range
    grams, positions = [], []
    if vec.analyzer == "word":
        tokens = [m.span() for m in re.finditer(vec.token_pattern, text)]
        for n in range(lo, hi + 1):
            for i in range(len(tokens) - n + 1):
                part = tokens[i : i + n]
                grams.append(" ".join(text[s:e] for s, e in part))
                positions.append(np.concatenate([np.arange(s, e) for s, e in part]))
        return grams, positions
    index = np.arange(len(text))
    if kind == "nospace":
        index = np.array([i for i, c in enumerate(text) if c != " "], dtype=int)
    chars = "".join(text[i] for i in index)
    for n in range(lo, hi + 1):
        for i in range(len(chars) - n + 1):
            grams.append(chars[i : i + n])
            covered = index[i : i + n]
            letters = covered[[text[j] != " " for j in covered]]
            positions.append(letters if len(letters) else covered)
    return grams, positions


def _alignment(norm: str, text: str) -> np.ndarray:
    """For each character of the normalised text, the position in the original text it came from.
    Normalisation only drops and collapses (spaces, repeats, tags, URLs) or recomposes (NFC), so a
    character-level match finds nearly all; the rest take their nearest matched neighbour."""
    out = np.full(len(norm), -1, dtype=int)
    for a, b, size in SequenceMatcher(None, norm, text, autojunk=False).get_matching_blocks():
        out[a : a + size] = np.arange(b, b + size)
    last = 0
    for i in range(len(out)):
        if out[i] < 0:
            out[i] = last
        else:
            last = out[i]
    return out


# --- any model: occlusion ----------------------------------------------------------------------------


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def occlusion(model, texts: list[str]) -> list[list[dict]]:
    """Each word's weight: how far the logit falls when the word is removed (one model call in all)."""
    spans = [word_spans(t) for t in texts]
    variants = [t[:s] + t[e:] for t, sp in zip(texts, spans, strict=True) for s, e in sp]
    logits = _logit(model.predict_proba(list(texts) + variants))
    full, rest = logits[: len(texts)], logits[len(texts):]
    out, k = [], 0
    for i, (text, sp) in enumerate(zip(texts, spans, strict=True)):
        out.append([{"start": s, "end": e, "text": text[s:e], "weight": round(float(full[i] - rest[k + j]), 6)}
                    for j, (s, e) in enumerate(sp)])
        k += len(sp)
    return out


# --- what the model knows --------------------------------------------------------------------------


_known_words: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CACHE_WORDS = 200_000  # words remembered per model: a batch's lookups are then dictionary hits


def _linear_part(model) -> BaselineModel | None:
    """The character/word model inside `model` (itself, or the stacked model's baseline part)."""
    if type(model) is BaselineModel:
        return model
    part = getattr(model, "baseline", None)
    return part if type(part) is BaselineModel else None


class _Vocabulary:
    """Which words a linear model saw in training. Its word block is hashed (no vocabulary is stored),
    but an unseen column kept document frequency 0, hence TF-IDF's largest idf: a word is seen when its
    column's idf is below that (a hash collision can make an unseen word look seen, never the reverse)."""

    def __init__(self, model: BaselineModel, vec, offset: int) -> None:
        self.cleaner, self.pattern = model.cleaner, re.compile(vec.token_pattern)
        idf = model.tfidf.idf_
        self.seen = idf[offset : offset + vec.n_features] < idf.max() - 1e-9
        self.hasher = FeatureHasher(n_features=vec.n_features, input_type="string", alternate_sign=False)
        self.known: dict[str, bool] = {}

    def words(self, text: str) -> list[str]:
        return self.pattern.findall(text.lower())

    def learn(self, words: set[str]) -> None:
        """Decide the words not decided yet, in one hashing call per cut."""
        if len(self.known) + len(words) > _CACHE_WORDS:
            self.known.clear()
        todo = list(words)
        forms = [self.cleaner.normalise(w)[0].lower() for w in todo]  # as the model saw words: ㅋㅋㅋㅋ → ㅋㅋ
        known = np.zeros(len(todo), dtype=bool)
        lengths = np.fromiter((len(f) for f in forms), int, len(forms))
        for cut in (0, 1, 2):  # the word, then without one or two syllables (a stem of two at least)
            idx = np.flatnonzero(~known & (lengths > 0) & ((lengths - cut >= 2) | (cut == 0)))
            if not len(idx):
                break
            cols = self.hasher.transform([[forms[i][: len(forms[i]) - cut]] for i in idx]).indices
            known[idx] = self.seen[cols]
        self.known.update(zip(todo, known.tolist(), strict=True))


def _vocabulary(model: BaselineModel) -> _Vocabulary | None:
    if model not in _known_words:
        offset, vocab = 0, None
        for kind, vec in model.vectorizers:
            if kind == "word" and model.tfidf is not None:
                vocab = _Vocabulary(model, vec, offset)
                break
            offset += vec.n_features
        _known_words[model] = vocab
    return _known_words[model]


def unseen_share(model, texts: list[str]) -> np.ndarray | None:
    """Per text, the share of its words the model never saw in training (NaN for a text without words);
    None when the model cannot tell (transformers: their subword vocabulary covers any Hangul).

    A word counts as seen when the model saw it as a word, or saw it without its last one or two
    syllables: Korean attaches particles and endings to words (영화가, 영화는, 재밌었다), and a model that
    knows 영화 knows 영화가."""
    linear = _linear_part(model)
    vocab = _vocabulary(linear) if linear is not None else None
    if vocab is None:
        return None
    words = [vocab.words(t) for t in texts]
    new = {w for ws in words for w in ws if w not in vocab.known}
    if new:
        vocab.learn(new)
    known = vocab.known
    return np.array([sum(not known.get(w, False) for w in ws) / len(ws) if ws else np.nan for ws in words])
