"""`models.hashing.transform` gives exactly scikit-learn's `HashingVectorizer.transform` matrix."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import HashingVectorizer

from reviewops.models import hashing
from reviewops.models.baseline import BaselineModel, BaselineParams, _vectorizers
from reviewops.text.clean import Cleaner
from tests.conftest import sample_records

ODD = ["", " ", "a  b\t\tc\n\nd", "😀😀 하하", "ＡＢＣ abc ÄÖ é", "x" * 300, "ㅋㅋㅋㅋ", "\U0001f600a\u00e9\u0800",
       "a_b c-d", "I'm 10/10!!", "가 한\u200b글", "🇰🇷", "MiXeD CaSe ẞ İ"]


def _same(a, b) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data)


def _blocks() -> list[HashingVectorizer]:
    """The baseline's blocks, with spaces too, and other n-gram ranges and widths."""
    variants = [BaselineParams(char_ngrams=(1, 5)),
                BaselineParams(char_ngrams=(2, 3), word_ngrams=(2, 4), nospace_ngrams=(3, 3), char_features=2**10,
                               word_features=2**12, nospace_features=97)]
    return [v for p in variants for _, v in _vectorizers(p)]


@pytest.fixture(scope="module", autouse=True)
def numpy_for_every_size():
    """NumPy hashes every batch here, however small (in service a few reviews go to scikit-learn)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hashing, "SMALL_CHARS", 0)
        yield


@pytest.fixture(scope="module")
def reviews() -> list[str]:
    raw = [r["text"] for r in sample_records(4000)]
    cleaner = Cleaner()
    return raw + [cleaner.normalise(t)[0] for t in raw] + ODD


@pytest.mark.parametrize("v", _blocks(), ids=lambda v: f"{v.analyzer}{v.ngram_range}/{v.n_features}")
def test_same_matrix_as_scikit_learn_on_real_reviews(v: HashingVectorizer, reviews: list[str]) -> None:
    _same(hashing.transform(v, reviews), v.transform(reviews))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40), min_size=1, max_size=8))
def test_same_matrix_as_scikit_learn_on_any_text(texts: list[str]) -> None:
    for v in _blocks()[:3]:
        _same(hashing.transform(v, texts), v.transform(texts))


def test_large_batches_are_hashed_in_chunks_with_the_same_result(monkeypatch, reviews: list[str]) -> None:
    v = _blocks()[2]
    monkeypatch.setattr(hashing, "CHUNK_TEXTS", 777)
    _same(hashing.transform(v, reviews), v.transform(reviews))
    monkeypatch.setattr(hashing, "SMALL_CHARS", 1_000)
    assert hashing.transform(v, []).shape == (0, v.n_features)  # scikit-learn raises StopIteration here


def test_what_it_does_not_cover_goes_to_scikit_learn(reviews: list[str]) -> None:
    common = {"n_features": 2**12, "norm": None, "alternate_sign": False}
    others = [HashingVectorizer(analyzer="char_wb", ngram_range=(2, 3), **common),
              HashingVectorizer(token_pattern=r"(\w)\w+", **common),
              HashingVectorizer(binary=True, **common), HashingVectorizer(n_features=2**12)]
    for v in others:
        assert not hashing.covered(v)
        _same(hashing.transform(v, reviews[:500]), v.transform(reviews[:500]))
    signed = HashingVectorizer(analyzer="char", ngram_range=(1, 2), n_features=2**12, norm=None)
    assert hashing.covered(signed)
    _same(hashing.transform(signed, reviews[:500]), signed.transform(reviews[:500]))
    with pytest.raises(ValueError, match="string object received"):
        hashing.transform(signed, "one text, not a list")


def test_a_model_predicts_as_it_would_with_scikit_learn_hashing(monkeypatch, reviews: list[str]) -> None:
    records = sample_records(3000)
    model = BaselineModel(BaselineParams(n_jobs=1)).fit([r["text"] for r in records],
                                                        [int(r["rating"] >= 6) for r in records])
    ours = model.predict_proba(reviews)
    monkeypatch.setattr(hashing, "transform", lambda v, texts: v.transform(texts))
    assert np.array_equal(ours, model.predict_proba(reviews))


def test_a_few_reviews_go_to_scikit_learn_and_a_batch_does_not(monkeypatch, reviews: list[str]) -> None:
    monkeypatch.setattr(hashing, "SMALL_CHARS", 1_000)
    v = _blocks()[1]
    calls = []
    monkeypatch.setattr(v, "transform", lambda texts: calls.append(len(texts)) or HashingVectorizer.transform(v, texts))
    few, batch = ["정말 재밌어요", "별로"], reviews[:200]
    _same(hashing.transform(v, few), HashingVectorizer.transform(v, few))
    _same(hashing.transform(v, batch), HashingVectorizer.transform(v, batch))
    assert calls == [2]
