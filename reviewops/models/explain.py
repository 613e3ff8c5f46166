"""Why a model gave its score, and which inputs it does not know.

Explanations are spans of the ORIGINAL text (its words: runs of non-space characters) with a weight in
logit units: > 0 pushed the score toward 긍정, < 0 toward 부정.

- The hashed TF-IDF linear model (`BaselineModel`) is explained exactly: its margin is the sum over
  features of (TF-IDF value × coefficient) plus the intercept. Each feature's contribution is shared
  equally among the n-gram occurrences that hash to it, each occurrence's share equally among the
  characters (or words) it covers, and each character's weight goes to the word of the original text it
  came from. The words' weights therefore sum to calibration slope × (margin − intercept): nothing is lost
  or invented, only placed.
- Any other model (the stacked model, transformers, ONNX) is explained by occlusion: a word's weight is
  logit(P(text)) − logit(P(text without the word)). Its faithfulness is measured in tests/test_explain.py.

`unseen_share` answers, for the linear models, which share of a text's words the model never saw in
training (the `mostly_unseen` flag of `reviewops.predict`).
"""

from __future__ import annotations

import re
import weakref
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
        slope = model.calibration[0]  # P = sigmoid(slope × margin + b): logit units
        return [_spans(text, weights * slope) for text, weights in zip(texts, contributions(model, texts),
                                                                      strict=True)]
    return occlusion(model, texts)


def _spans(text: str, weights) -> list[dict]:
    return [{"start": s, "end": e, "text": text[s:e], "weight": round(float(w), 6)}
            for (s, e), w in zip(word_spans(text), weights, strict=True)]


# --- the linear model: exact contributions -----------------------------------------------------------


def contributions(model: BaselineModel, texts: list[str]) -> list[np.ndarray]:
    """Per text, per word (see `word_spans`), its share of margin − intercept (the model's raw units)."""
    rows = model.features(texts).tocsr()
    coef = model.clf.coef_[0].astype(np.float64)
    out = []
    for r, text in enumerate(texts):
        row = rows[r]
        order = np.argsort(row.indices)
        cols, values = row.indices[order], row.data[order].astype(np.float64) * coef[row.indices[order]]
        out.append(_text_contributions(model, text, cols, values))
    return out


def _text_contributions(model: BaselineModel, text: str, cols: np.ndarray, values: np.ndarray) -> np.ndarray:
    spans = word_spans(text)
    words = np.zeros(len(spans), dtype=np.float64)
    if not spans:
        return words
    norm = model.cleaner.normalise(text)[0]
    groups = _occurrences(model, norm)  # (columns, positions) per block and n-gram length
    per_char = np.zeros(len(norm), dtype=np.float64)
    placed = 0.0
    if groups:
        occ_cols = np.concatenate([c for c, _ in groups])
        uniq, inverse, counts = np.unique(occ_cols, return_inverse=True, return_counts=True)
        at = np.clip(np.searchsorted(cols, uniq), 0, max(len(cols) - 1, 0))
        found = (cols[at] == uniq) if len(cols) else np.zeros(len(uniq), dtype=bool)
        value = np.where(found, values[at] if len(cols) else 0.0, 0.0)
        placed = float(value.sum())
        share = (value / counts)[inverse]  # a feature's contribution, shared among its occurrences
        k = 0
        for group_cols, positions in groups:  # ... and each occurrence's among the characters it covers
            w = share[k : k + len(group_cols)] / positions.shape[1]
            np.add.at(per_char, positions, np.broadcast_to(w[:, None], positions.shape))
            k += len(group_cols)
    to_original = _alignment(norm, text)
    starts = np.array([s for s, _ in spans])
    nonzero = np.flatnonzero(per_char)
    word_of = np.maximum(np.searchsorted(starts, to_original[nonzero], side="right") - 1, 0)
    np.add.at(words, word_of, per_char[nonzero])
    leftover = float(values.sum()) - placed  # never with sklearn's analysers; kept so that the sum holds
    if abs(leftover) > 1e-12:
        words += leftover / len(spans)
    return words


def _occurrences(model: BaselineModel, norm: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The n-grams of `norm` as scikit-learn's analysers generate them (lowercased; spacing-free for
    `nospace`), grouped by block and length n: (feature-matrix columns, positions in `norm` of shape
    (occurrences, n): each character of a character n-gram, the first character of each word of a word
    n-gram)."""
    lowered = norm.lower()
    if len(lowered) != len(norm):  # a letter whose lowercase is longer: positions by the original
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in norm)
    out = []
    offset = 0
    for kind, vec in model.vectorizers:
        if vec.analyzer == "word":
            spans = [m.span() for m in re.finditer(vec.token_pattern, lowered)]
            units, index = [lowered[s:e] for s, e in spans], np.array([s for s, _ in spans], dtype=int)
            joiner = " "
        else:
            index = np.arange(len(lowered)) if kind != "nospace" else \
                np.array([i for i, c in enumerate(lowered) if c != " "], dtype=int)
            units, joiner = [lowered[i] for i in index], ""
        hasher = FeatureHasher(n_features=vec.n_features, input_type="string", alternate_sign=False)
        lo, hi = vec.ngram_range
        for n in range(lo, min(hi, len(units)) + 1):
            grams = [joiner.join(units[i : i + n]) for i in range(len(units) - n + 1)]
            cols = hasher.transform([[g] for g in grams]).indices.astype(np.int64) + offset
            out.append((cols, index[np.arange(len(grams))[:, None] + np.arange(n)]))
        offset += vec.n_features
    return out


def _alignment(norm: str, text: str) -> np.ndarray:
    """For each character of the normalised text, the position in the original text it came from.
    Normalisation only drops and collapses (spaces, repeats, tags, URLs) or recomposes (NFC), so a
    character-level match finds nearly all; the rest take their nearest matched neighbour."""
    if norm == text:
        return np.arange(len(text))
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

    def decide(self, words: set[str]) -> dict[str, bool]:
        """Whether each word is known, in one hashing call per cut."""
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
        return dict(zip(todo, known.tolist(), strict=True))


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
    None when the model cannot tell.

    Linear models: a word counts as seen when the model saw it as a word, or saw it without its last one
    or two syllables: Korean attaches particles and endings to words (영화가, 영화는, 재밌었다), and a
    model that knows 영화 knows 영화가. Transformers: the share of the text's subword tokens that are the
    tokenizer's unknown token (a WordPiece vocabulary makes a word unknown when it has a character it
    never saw; byte-level vocabularies have no unknown token and never flag)."""
    linear = _linear_part(model)
    vocab = _vocabulary(linear) if linear is not None else None
    if vocab is None:
        return _unknown_subwords(model, texts)
    findall = vocab.pattern.findall
    words = [findall(t.lower()) for t in texts]
    known = vocab.known  # requests run in threads: this call keeps its dict even if another replaces it
    new = {w for ws in words for w in ws if w not in known}
    if len(known) + len(new) > _CACHE_WORDS:  # bounded memory: start again with this batch's words
        known = vocab.known = {}
        new = {w for ws in words for w in ws}
    if new:
        known.update(vocab.decide(new))
    get = known.__getitem__  # every word is decided now; this is the batch route's hot loop
    return np.fromiter(((1.0 - sum(map(get, ws)) / len(ws)) if ws else np.nan for ws in words), float, len(words))


def _unknown_subwords(model, texts: list[str]) -> np.ndarray | None:
    tokenizer = getattr(model, "tokenizer", None) or getattr(getattr(model, "model", None), "tokenizer", None)
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return None
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return np.array([float(np.mean(np.asarray(i) == unk)) if len(i) else np.nan for i in ids])
