"""Why this label: exact contributions of the linear model (they sum to its margin), occlusion for any other
model with its faithfulness measured, the words a model never saw, and the one rule for verdicts and flags."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from reviewops.models.baseline import BaselineModel, BaselineParams
from reviewops.models.explain import contributions, explain, occlusion, unseen_share, word_spans
from reviewops.models.stack import MORPHEME_DEFAULTS, StackModel, StackParams
from reviewops.predict import Band, judge, predict_texts, text_flags
from tests.conftest import sample_records

SMALL = BaselineParams(word_features=2**16, nospace_features=2**17, n_jobs=1)
MESSY = [
    "배우들   연기가 정말 좋았고ㅋㅋㅋㅋㅋ <b>최고</b>&amp; 강추!!!",  # spaces, repeats, HTML, entities
    "시간 아깝다 www.example.com 진짜 최악의 영화 BAD",  # a URL and upper case
    unicodedata.normalize("NFD", "지루하고 유치한 스토리"),  # decomposed Hangul (NFC recomposes it)
    "\t  재밌어요 😂😂\n",  # leading/trailing space, emoji
    "https://example.com",  # nothing left after normalisation
    "두 시간 동안 잠만 잤습니다 ^^",
]


@pytest.fixture(scope="module")
def data():
    recs = [r for r in sample_records(7000) if r["rating"] <= 4 or r["rating"] >= 9]
    texts = [r["text"] for r in recs]
    y = np.array([1 if r["rating"] >= 9 else 0 for r in recs])
    return texts[:-1500], y[:-1500], texts[-1500:-700], y[-1500:-700], texts[-700:]


@pytest.fixture(scope="module")
def baseline(data):
    tr_x, tr_y, va_x, va_y, _ = data
    return BaselineModel(SMALL).fit(tr_x, tr_y, va_x, va_y)


@pytest.fixture(scope="module")
def stack(data):
    tr_x, tr_y, va_x, va_y, _ = data
    params = StackParams(SMALL, BaselineParams.from_dict({**MORPHEME_DEFAULTS, "word_features": 2**16, "n_jobs": 1}))
    return StackModel(params).fit(tr_x[:3000], tr_y[:3000], va_x, va_y)


def _held_out(data, n: int = 60) -> list[str]:
    return [t for t in data[4] if len(t.split()) >= 4][:n]


# --- the linear model: exact ---------------------------------------------------------------------------


def test_linear_contributions_sum_to_the_margin_minus_the_intercept(baseline, data):
    intercept, slope = float(baseline.clf.intercept_[0]), baseline.calibration[0]
    texts = [*MESSY, *_held_out(data, 30)]
    assert [len(p) for p in contributions(baseline, texts)] == [len(t.split()) for t in texts]
    for text in texts:
        (parts,) = contributions(baseline, [text])
        margin = float(baseline.margin([text])[0])
        assert parts.sum() == pytest.approx(margin - intercept, abs=1e-4), text
        spans = explain(baseline, [text])[0]
        assert [(s["start"], s["end"]) for s in spans] == word_spans(text)
        assert all(text[s["start"]:s["end"]] == s["text"] for s in spans)
        assert [s["text"] for s in spans] == text.split()
        assert [s["weight"] for s in spans] == pytest.approx((parts * slope).tolist(), abs=1e-5)
    assert explain(baseline, ["https://example.com"])[0][0]["weight"] == 0.0  # removed: no features


def test_the_linear_weights_point_where_the_words_push(baseline, data):
    """Removing the word with the largest exact weight moves the score the way its sign says."""
    agree, total = 0, 0
    for text in _held_out(data):
        spans = explain(baseline, [text])[0]
        top = max(spans, key=lambda s: abs(s["weight"]))
        without = text[: top["start"]] + text[top["end"]:]
        before, after = baseline.predict_proba([text, without])
        total += 1
        agree += np.sign(before - after) == np.sign(top["weight"])
    assert agree / total >= 0.9, f"{agree}/{total}"
    worst = min(explain(baseline, ["시간 아깝다 진짜 최악의 영화"])[0], key=lambda s: s["weight"])
    assert worst["text"] in {"아깝다", "최악의"}


# --- other models: occlusion -------------------------------------------------------------------------


def test_occlusion_explains_the_stacked_model_faithfully(stack, data):
    """The stacked model is explained by occlusion. Faithfulness, beyond one word (which occlusion fits by
    construction): removing the two most positive words together lowers the score, the two most negative
    raise it, and more than removing two words at random (ERASER's comprehensiveness)."""
    texts = _held_out(data, 40)
    explained = explain(stack, texts)
    rng = np.random.default_rng(0)
    right, top_drop, random_drop = 0, [], []
    for text, spans in zip(texts, explained, strict=True):
        assert [s["text"] for s in spans] == text.split()
        positive = float(stack.predict_proba([text])[0]) >= 0.5
        ranked = sorted(spans, key=lambda s: s["weight"], reverse=positive)[:2]
        picked = [spans[i] for i in rng.choice(len(spans), 2, replace=False)]
        base, top, rand = stack.predict_proba([text, _without(text, ranked), _without(text, picked)])
        sign = 1 if positive else -1
        right += sign * (base - top) > 0
        top_drop.append(sign * (base - top))
        random_drop.append(sign * (base - rand))
    assert right / len(texts) >= 0.9, f"{right}/{len(texts)}"
    assert np.mean(top_drop) > 2 * max(np.mean(random_drop), 0.01)


def _without(text: str, spans: list[dict]) -> str:
    for s in sorted(spans, key=lambda s: s["start"], reverse=True):
        text = text[: s["start"]] + text[s["end"]:]
    return text


def test_occlusion_agrees_with_the_exact_weights_on_the_linear_model(baseline, data):
    texts = _held_out(data, 30)
    same = 0
    for exact, occluded in zip(explain(baseline, texts), occlusion(baseline, texts), strict=True):
        top = max(range(len(exact)), key=lambda i: abs(exact[i]["weight"]))
        same += np.sign(exact[top]["weight"]) == np.sign(occluded[top]["weight"])
    assert same / len(texts) >= 0.9


# --- what the model never saw ------------------------------------------------------------------------


def test_unseen_share_counts_the_words_the_model_never_saw(baseline, stack):
    shares = unseen_share(baseline, ["영화 정말 재밌어요", "뷁뛟 똵쒧 꿿뜛", "영화 뷁뛟", "👍 !!", "영화였어요"])
    assert shares[:3].tolist() == [0.0, 1.0, 0.5]
    assert np.isnan(shares[3])  # no words: not "mostly unseen"
    assert shares[4] == 0.0  # a known word with an ending it never saw: 영화였어요 → 영화
    assert unseen_share(stack, ["뷁뛟 똵쒧", "영화 정말 재밌어요"]).tolist() == [1.0, 0.0]  # its linear part

    with pytest.MonkeyPatch.context() as mp:  # the remembered words are bounded; answers do not change
        mp.setattr("reviewops.models.explain._CACHE_WORDS", 3)
        again = unseen_share(baseline, ["영화 정말 재밌어요", "뷁뛟 똵쒧 꿿뜛", "영화 뷁뛟", "👍 !!", "영화였어요"])
        assert np.array_equal(again, shares, equal_nan=True)

    class Opaque:  # a model that cannot tell (as a transformer): no flag rather than a guess
        def predict_proba(self, texts):
            return np.full(len(texts), 0.9)

    assert unseen_share(Opaque(), ["뷁뛟"]) is None


def test_a_transformer_counts_its_unknown_subwords(tmp_path):
    from tests.tiny_hf import korean_texts, make_tokenizer

    class Served:  # as the API holds an ONNX model: the tokenizer one level down
        def __init__(self, tokenizer):
            self.model = type("Inner", (), {"tokenizer": tokenizer})()

        def predict_proba(self, texts):
            return np.full(len(texts), 0.5)

    tokenizer = make_tokenizer(tmp_path / "tok", korean_texts(1500), vocab_size=400)
    shares = unseen_share(Served(tokenizer), ["영화 정말 재밌어요", "ﾀﾞﾒ 뷁 🙃🙃 똵쒧", "!!"])
    assert shares[0] == 0.0 and shares[1] > 0.5
    judged = judge(Served(tokenizer), ["영화 정말 재밌어요", "ﾀﾞﾒ 뷁 🙃🙃 똵쒧"], [0.9, 0.9], Band.from_settings())
    assert judged.flags == [[], ["mostly_unseen"]] and judged.verdicts == ["긍정", "애매함"]


# --- the one rule -------------------------------------------------------------------------------------


def test_flags_whatever_the_model():
    assert [text_flags(t) for t in ["", "  \n", "good movie", "10/10", "👍👍", "^^ !!", "좋아요 good", "ㅋㅋ"]] == [
        ["empty"], ["empty"], ["no_hangul"], ["no_hangul"], ["emoji_only"], ["emoji_only"], [], []]


def test_the_band_and_blank_texts(baseline):
    class Fixed:  # scores chosen to sit on the band's edges; it must never be asked about a blank text
        def __init__(self, scores):
            self.scores = scores

        def predict_proba(self, texts):
            assert all(t.strip() for t in texts)
            return np.array(self.scores[: len(texts)])

    texts = ["좋아요", "", "괜찮아요", "그냥 그래요", "별로예요", "   ", "good"]
    scores = [0.9, 0.65, 0.35, 0.3499, 0.651]
    judged = predict_texts(Fixed([0.9, 0.65, 0.35, 0.3499, 0.2]), texts, Band(0.35, 0.65))
    assert judged.verdicts == ["긍정", "애매함", "애매함", "애매함", "부정", "애매함", "애매함"]
    assert judged.labels == [1, None, 1, 0, 0, None, 0]
    assert judged.scores == [0.9, None, 0.65, 0.35, 0.3499, None, 0.2]
    assert judged.flags == [[], ["empty"], [], [], [], ["empty"], ["no_hangul"]]
    assert judged.explanations is None
    judged = judge(Fixed(scores), ["a", "b", "c", "d", "e"], scores, Band(0.35, 0.65))
    assert judged.verdicts == ["애매함"] * 5  # no Hangul: flagged, whatever the score
    judged = judge(baseline, ["", "뷁뛟 똵쒧 꿿뜛", "영화 정말 재밌어요"], [0.99, 0.99], Band(0.35, 0.65), explain=True)
    assert judged.flags == [["empty"], ["mostly_unseen"], []]
    assert judged.verdicts == ["애매함", "애매함", "긍정"]
    assert judged.explanations[0] == [] and [s["text"] for s in judged.explanations[2]] == ["영화", "정말", "재밌어요"]
