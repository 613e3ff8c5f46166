"""The CPU model: learns, calibrates, saves safely, refuses broken or tampered artifacts."""

import json
import shutil

import numpy as np
import pytest

from reviewops.errors import ModelArtifactError
from reviewops.models.baseline import BaselineModel, BaselineParams
from reviewops.models.loading import load_model_folder
from tests.conftest import sample_records

SMALL = BaselineParams(char_features=2**18, word_features=2**17, n_jobs=1)


@pytest.fixture(scope="module")
def data():
    recs = [r for r in sample_records(16000) if r["rating"] <= 4 or r["rating"] >= 9]
    texts = [r["text"] for r in recs]
    y = np.array([1 if r["rating"] >= 9 else 0 for r in recs])
    return texts[:-2000], y[:-2000], texts[-2000:], y[-2000:]


@pytest.fixture(scope="module")
def model(data):
    tr_x, tr_y, va_x, va_y = data
    return BaselineModel(SMALL).fit(tr_x, tr_y, va_x[:1000], va_y[:1000])


def _balanced_accuracy(model, x, y):
    p = model.predict_proba(x)
    return np.mean([((p >= 0.5) == y)[y == c].mean() for c in (0, 1)])


def test_learns_korean_sentiment(model, data):
    _, _, va_x, va_y = data
    assert _balanced_accuracy(model, va_x[1000:], va_y[1000:]) > 0.75
    p = model.predict_proba(["정말 재밌고 감동적인 영화 강추합니다", "최악의 영화 돈 아깝고 시간 아까움"])
    assert p[0] > 0.7 and p[1] < 0.3


def test_probabilities_are_calibrated_for_a_balanced_prior(model, data):
    _, _, va_x, va_y = data
    x, y = va_x[1000:], va_y[1000:]
    p = model.predict_proba(x)
    # class-balanced expected calibration: mean predicted P(pos) ≈ share of positives in each bin
    w = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    bins = np.digitize(p, [0.2, 0.4, 0.6, 0.8])
    ece = sum(abs(np.average(p[bins == b], weights=w[bins == b])
                  - np.average(y[bins == b], weights=w[bins == b]))
              * w[bins == b].sum() for b in np.unique(bins)) / w.sum()
    assert ece < 0.08


def test_normalisation_is_part_of_the_model(model):
    a, b = model.predict_proba(["ㅋㅋㅋㅋㅋㅋㅋ 진짜 웃기다", "ㅋㅋ 진짜 웃기다"])
    assert a == pytest.approx(b)


def test_save_and_load_predict_exactly_the_same(model, data, tmp_path):
    folder = model.save(tmp_path / "m")
    loaded = load_model_folder(folder)
    x = data[2][:500]
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.skops"]


def test_tampered_model_is_refused(model, tmp_path):
    folder = model.save(tmp_path / "m")
    blob = bytearray((folder / "model.skops").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (folder / "model.skops").write_bytes(bytes(blob))
    with pytest.raises(ModelArtifactError, match="does not match its checksum"):
        load_model_folder(folder)


def test_truncated_model_with_forged_checksum_is_a_clear_error(model, tmp_path):
    import hashlib

    folder = model.save(tmp_path / "m")
    blob = (folder / "model.skops").read_bytes()[:1000]
    (folder / "model.skops").write_bytes(blob)
    meta = json.loads((folder / "meta.json").read_text())
    meta["sha256"] = hashlib.sha256(blob).hexdigest()
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelArtifactError, match="cannot be read"):
        load_model_folder(folder)


def test_unexpected_types_are_refused(tmp_path):
    """A model file that smuggles in a non-scikit-learn object is never loaded, checksum or not."""
    import hashlib

    import skops.io as sio

    folder = tmp_path / "evil"
    folder.mkdir()
    blob = sio.dumps({"vectorizers": Smuggled(), "tfidf": None, "clf": None})
    (folder / "model.skops").write_bytes(blob)
    meta = {"format": "reviewops-tfidf-linear/2", "sha256": hashlib.sha256(blob).hexdigest()}
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelArtifactError, match="unexpected types"):
        load_model_folder(folder)


class Smuggled:
    def __init__(self) -> None:
        self.payload = "would run on load"


@pytest.mark.parametrize("broken", ["missing_model", "missing_meta", "bad_json", "wrong_format"])
def test_broken_artifacts(model, tmp_path, broken):
    folder = model.save(tmp_path / "m")
    if broken == "missing_model":
        (folder / "model.skops").unlink()
    elif broken == "missing_meta":
        (folder / "meta.json").unlink()
    elif broken == "bad_json":
        (folder / "meta.json").write_text("{not json")
    else:
        (folder / "meta.json").write_text(json.dumps({"format": "something-else/9"}))
    with pytest.raises(ModelArtifactError):
        load_model_folder(folder)


def test_save_replaces_atomically(model, tmp_path):
    folder = model.save(tmp_path / "m")
    model.save(folder)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    shutil.rmtree(folder)


# --- the rating head ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rated():
    """The whole bundled sample: labelled reviews (with their ratings) split 6:1:1, and the neutral ones."""
    recs = sample_records()
    labelled = [r for r in recs if r["rating"] <= 4 or r["rating"] >= 9]
    texts = [r["text"] for r in labelled]
    y = np.array([1 if r["rating"] >= 9 else 0 for r in labelled])
    ratings = np.array([r["rating"] for r in labelled], dtype=float)
    k = len(texts) // 8
    neutral = ([r["text"] for r in recs if 5 <= r["rating"] <= 8],
               np.array([r["rating"] for r in recs if 5 <= r["rating"] <= 8]))
    return {"train": (texts[:-2 * k], y[:-2 * k], ratings[:-2 * k]), "valid": (texts[-2 * k:-k], y[-2 * k:-k]),
            "test": (texts[-k:], y[-k:]), "neutral": neutral}


def _fit(rated, params, ratings=True, neutral=True):
    (x, y, r), (vx, vy) = rated["train"], rated["valid"]
    return BaselineModel(params).fit(x, y, vx, vy, r if ratings else None, rated["neutral"] if neutral else None)


@pytest.fixture(scope="module")
def with_head(rated):
    return _fit(rated, SMALL)


def test_the_rating_head_is_folded_into_one_linear_model(rated, with_head):
    from sklearn.linear_model import Ridge

    alone = _fit(rated, BaselineParams(**{**SMALL.__dict__, "rating_alpha": None}))
    (x, _, r), (vx, _) = rated["train"], rated["valid"]
    head = Ridge(alpha=SMALL.rating_alpha, solver="sparse_cg", tol=1e-3).fit(
        alone.features(x + rated["neutral"][0]), np.concatenate([r, rated["neutral"][1]]))
    w_label, w_rating = with_head.head_weights
    assert w_label > 0 and w_rating > 0 and with_head.rating_rows == len(x) + len(rated["neutral"][0])
    combined = w_label * alone.margin(vx) + w_rating * head.predict(alone.features(vx))
    np.testing.assert_allclose(with_head.margin(vx), combined, atol=2e-4)  # float32 coefficients
    assert with_head.calibration[0] == 1.0
    np.testing.assert_allclose(with_head.predict_proba(vx), 1 / (1 + np.exp(-(combined + with_head.calibration[1]))),
                               atol=1e-4)


def test_the_rating_head_makes_held_out_predictions_more_accurate(rated, with_head):
    alone = _fit(rated, BaselineParams(**{**SMALL.__dict__, "rating_alpha": None}))
    labelled_only = _fit(rated, SMALL, neutral=False)
    tx, ty = rated["test"]
    accuracy = {name: _balanced_accuracy(m, tx, ty) for name, m in
                (("alone", alone), ("labelled ratings", labelled_only), ("with neutral", with_head))}
    assert accuracy["with neutral"] > accuracy["alone"] + 0.003, accuracy


def test_no_ratings_no_head_and_the_same_model_as_without_one(rated):
    off = BaselineParams(**{**SMALL.__dict__, "rating_alpha": None})
    (x, y, r), (vx, vy) = rated["train"], rated["valid"]
    plain = BaselineModel(off).fit(x, y, vx, vy)
    few = BaselineParams(**{**SMALL.__dict__, "rating_min_rows": len(x) + 1})
    for model in (BaselineModel(SMALL).fit(x, y, vx, vy),
                  BaselineModel(SMALL).fit(x, y, vx, vy, np.full(len(x), np.nan), ([], np.empty(0))),
                  BaselineModel(SMALL).fit(x, y, vx, vy, np.full(len(x), 7.0)),  # one rating teaches nothing
                  BaselineModel(few).fit(x, y, vx, vy, r),  # too few rated reviews
                  BaselineModel(SMALL).fit(x, y, vx, vy, 11 - r)):  # validation weighs it against the classifier
        assert model.head_weights is None and model.rating_rows == 0
        np.testing.assert_array_equal(model.predict_proba(vx[:300]), plain.predict_proba(vx[:300]))


def test_a_model_with_a_rating_head_saves_and_loads_exactly(with_head, rated, tmp_path):
    vx = rated["valid"][0][:500]
    loaded = load_model_folder(with_head.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict_proba(vx), with_head.predict_proba(vx))
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert meta["format"] == "reviewops-tfidf-linear/2" and meta["rating_head"]["rows"] == with_head.rating_rows
    assert loaded.head_weights == with_head.head_weights
