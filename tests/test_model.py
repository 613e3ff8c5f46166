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
