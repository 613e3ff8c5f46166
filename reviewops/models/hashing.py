"""scikit-learn's `HashingVectorizer.transform`, the same matrix computed in NumPy.

scikit-learn builds every n-gram as a Python string and hands each to its hasher through a Python
generator as a (feature, 1) pair, where it is encoded to UTF-8 and hashed one at a time: for the
baseline's features that was most of a prediction (bench/README.md, "Hashing"). Here the texts are
encoded once, every n-gram is a span of that one UTF-8 buffer (a character n-gram is a run of
characters; a word n-gram is a run of tokens once the tokens are joined by single spaces, as
scikit-learn joins them), and MurmurHash3 (x86, 32 bits, seed 0: what scikit-learn uses) runs over
all spans at once, block by block: about 3× as fast for the character block, 2× for a whole
prediction. The result is identical to `vectorizer.transform(texts)` (indices, values and order;
tests/test_hashing.py checks it on the corpus sample and generated text), so models trained either
way are the same model.

Vectorizers outside what this covers (another analyzer, a preprocessor or tokenizer, stop words,
binary counts, a norm), and batches too small to gain, are handed to scikit-learn's own transform.
"""

from __future__ import annotations

import re

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer

# Below this many characters in all (a few dozen reviews) scikit-learn's own transform is faster: each
# NumPy step has a fixed cost of microseconds, and a block takes a few dozen steps (bench/README.md).
SMALL_CHARS = 1_000
CHUNK_TEXTS = 10_000  # bounds the n-gram arrays (~60 n-grams a review, 8 bytes each, several arrays)
_WHITE_SPACES = re.compile(r"\s\s+")  # scikit-learn's character analyzer squeezes runs of white space
_U32 = np.uint32
_C1, _C2 = _U32(0xCC9E2D51), _U32(0x1B873593)


def transform(vectorizer: HashingVectorizer, texts: list[str]) -> sparse.csr_matrix:
    """`vectorizer.transform(texts)`, faster where the vectorizer is one this module covers."""
    if isinstance(texts, str) or not covered(vectorizer) or not all(isinstance(t, str) for t in texts):
        return vectorizer.transform(texts)
    if len(texts) == 0:
        return _empty(vectorizer, 0)  # where scikit-learn raises StopIteration
    if sum(map(len, texts)) < SMALL_CHARS:
        return vectorizer.transform(texts)  # same matrix; NumPy's fixed cost per call loses on a few reviews
    parts = [_transform_chunk(vectorizer, texts[i : i + CHUNK_TEXTS]) for i in range(0, len(texts), CHUNK_TEXTS)]
    return parts[0] if len(parts) == 1 else sparse.vstack(parts, format="csr")


def covered(v: HashingVectorizer) -> bool:
    """Whether `transform` computes this vectorizer's features itself (else scikit-learn does)."""
    plain = (v.input == "content" and v.decode_error == "strict" and v.strip_accents is None
             and v.preprocessor is None and v.tokenizer is None and v.stop_words is None
             and not v.binary and v.norm is None and v.ngram_range[0] >= 1)
    if not plain:
        return False
    if v.analyzer == "char":
        return True
    return v.analyzer == "word" and v.token_pattern is not None and re.compile(v.token_pattern).groups == 0


def _empty(v: HashingVectorizer, rows: int) -> sparse.csr_matrix:
    return sparse.csr_matrix((rows, v.n_features), dtype=v.dtype)


def _transform_chunk(v: HashingVectorizer, texts: list[str]) -> sparse.csr_matrix:
    if v.lowercase:
        texts = [t.lower() for t in texts]
    if v.analyzer == "char":  # the units are characters: the texts as they are, one after another
        texts = [_WHITE_SPACES.sub(" ", t) for t in texts]
        joined = "".join(texts)
        counts = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        unit_start = np.arange(len(joined), dtype=np.int64)
        unit_end = unit_start + 1
    else:  # the units are tokens, joined by single spaces (how scikit-learn joins a word n-gram)
        pattern = re.compile(v.token_pattern)
        tokens = [pattern.findall(t) for t in texts]
        counts = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        flat = [x for u in tokens for x in u]
        joined = " ".join(flat)
        chars = np.fromiter(map(len, flat), dtype=np.int64, count=len(flat))
        unit_start = np.zeros(len(flat), dtype=np.int64)
        np.cumsum(chars[:-1] + 1, out=unit_start[1:])
        unit_end = unit_start + chars
    if not len(unit_start):
        return _empty(v, len(texts))
    rows, starts, lengths, buffer = _spans(joined, unit_start, unit_end, counts, *v.ngram_range)
    h = _murmur3_32(buffer, starts, lengths)
    # scikit-learn: abs(h) % n_features, with abs(-2**31) taken as 2**31 (in int64 it is)
    cols = np.abs(h.astype(np.int64)) % v.n_features
    values = np.ones(len(cols), dtype=v.dtype)
    if v.alternate_sign:
        values[h < 0] = -1
    matrix = sparse.csr_matrix((values, (rows, cols)), shape=(len(texts), v.n_features), dtype=v.dtype)
    matrix.sum_duplicates()  # sorts each row's columns and adds repeats, as scikit-learn's hasher does
    return matrix


def _spans(joined: str, unit_start: np.ndarray, unit_end: np.ndarray, counts: np.ndarray, min_n: int,
           max_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
    """Every n-gram (min_n..max_n consecutive units of one text) as (row, byte start, byte length) in the
    UTF-8 encoding of `joined`, which holds the units (characters or tokens) at `unit_start:unit_end`
    (character offsets), text after text; `counts` is the number of units of each text."""
    code_points = np.frombuffer(joined.encode("utf-32-le"), dtype=_U32)
    utf8_len = 1 + (code_points >= 0x80) + (code_points >= 0x800) + (code_points >= 0x10000)
    byte_at = np.zeros(len(code_points) + 1, dtype=np.int64)  # byte offset of each character
    np.cumsum(utf8_len, out=byte_at[1:])
    row = np.repeat(np.arange(len(counts)), counts)
    last = np.repeat(np.cumsum(counts), counts)  # one past the last unit of each unit's text
    at = np.arange(len(unit_start))
    rows, starts, lengths = [], [], []
    for n in range(min_n, max_n + 1):
        first = at[at + n <= last]
        begin, end = byte_at[unit_start[first]], byte_at[unit_end[first + n - 1]]
        rows.append(row[first])
        starts.append(begin)
        lengths.append(end - begin)
    buffer = joined.encode("utf-8") + b"\0\0\0\0"  # a block read past the end stays in the buffer
    return np.concatenate(rows), np.concatenate(starts), np.concatenate(lengths), buffer


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << _U32(r)) | (x >> _U32(32 - r))


def _murmur3_32(buffer: bytes, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """MurmurHash3_x86_32 with seed 0 of each span `buffer[start:start + length]`, as signed int32."""
    # the little-endian 4 bytes at every byte offset: an unaligned view, so a block is one gather
    words = np.ndarray((len(buffer) - 3,), dtype="<u4", buffer=buffer, strides=(1,))

    def mix(k: np.ndarray) -> np.ndarray:
        return _rotl(k * _C1, 15) * _C2

    h = np.zeros(len(starts), dtype=_U32)
    blocks = lengths >> 2
    active = np.flatnonzero(blocks > 0)
    k = 0
    while len(active):  # block k of every span that has one (spans are short: a few rounds)
        x = h[active] ^ mix(words[starts[active] + 4 * k])
        h[active] = _rotl(x, 13) * _U32(5) + _U32(0xE6546B64)
        k += 1
        active = active[blocks[active] > k]
    tail = lengths & 3
    has_tail = np.flatnonzero(tail)
    if len(has_tail):
        keep = (_U32(1) << (tail[has_tail].astype(_U32) * _U32(8))) - _U32(1)
        h[has_tail] ^= mix(words[starts[has_tail] + 4 * blocks[has_tail]] & keep)
    h ^= lengths.astype(_U32)
    h ^= h >> _U32(16)
    h *= _U32(0x85EBCA6B)
    h ^= h >> _U32(13)
    h *= _U32(0xC2B2AE35)
    h ^= h >> _U32(16)
    return h.view(np.int32)
