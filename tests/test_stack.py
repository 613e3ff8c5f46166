"""The stacked CPU model: MeCab (or Kiwi) morphemes, a validation-fitted combiner, an exact save/load, a trainer
option."""

import json
from dataclasses import replace

import numpy as np
import pytest

from reviewops.config import Settings
from reviewops.errors import InputError, ModelArtifactError
from reviewops.evaluate.metrics import accuracy_interval
from reviewops.models.baseline import BaselineParams
from reviewops.models.loading import load_for_serving, load_model_folder
from reviewops.models.stack import MORPHEME_DEFAULTS, StackModel, StackParams
from reviewops.models.trainers import StackTrainer, trainer_for
from reviewops.text import morphemes
from tests.conftest import sample_records

SMALL = StackParams(BaselineParams(word_features=2**16, nospace_features=2**17, n_jobs=1),
                    BaselineParams.from_dict({**MORPHEME_DEFAULTS, "word_features": 2**17, "n_jobs": 1}))


@pytest.fixture(scope="module")
def data():
    recs = [r for r in sample_records(8000) if r["rating"] <= 4 or r["rating"] >= 9]
    texts = [r["text"] for r in recs]
    y = np.array([1 if r["rating"] >= 9 else 0 for r in recs])
    return texts[:-1500], y[:-1500], texts[-1500:-700], y[-1500:-700], texts[-700:], y[-700:]


@pytest.fixture(scope="module")
def model(data):
    tr_x, tr_y, va_x, va_y, _, _ = data
    return StackModel(SMALL).fit(tr_x, tr_y, va_x, va_y)


@pytest.mark.parametrize("analyser", morphemes.ANALYSERS)
def test_morphemes_split_stems_from_endings_and_come_back_from_the_cache(monkeypatch, analyser):
    morphemes.clear_cache()
    first = morphemes.tokenise(["정말 재밌어요", "시간 아까운 영화"], analyser=analyser)
    assert "재밌/VA" in first[0].split() and "어요/EF" in first[0].split()
    other = next(a for a in morphemes.ANALYSERS if a != analyser)
    assert morphemes.tokenise(["시간 아까운 영화"], analyser=other) != first[1:]  # each analyser's own entry

    def analysed_again(texts):
        raise AssertionError(f"tokenised again: {texts}")

    monkeypatch.setitem(morphemes._CHUNKS, analyser, analysed_again)
    assert morphemes.tokenise(["시간 아까운 영화", "정말 재밌어요"], analyser=analyser) == first[::-1]
    with pytest.raises(InputError, match="unknown morpheme analyser 'okt'"):
        morphemes.tokenise(["좋아요"], analyser="okt")
    with pytest.raises(InputError, match=r"'okt' \(known: mecab, kiwi\)"):
        StackParams.from_dict({"analyser": "okt"})


@pytest.mark.parametrize("analyser", morphemes.ANALYSERS)
def test_worker_processes_tokenise_exactly_as_one_process(monkeypatch, data, analyser):
    texts = data[0][:400]
    morphemes.clear_cache()
    alone = morphemes.tokenise(texts, analyser=analyser)
    morphemes.clear_cache()
    monkeypatch.setattr(morphemes, "PARALLEL_MIN_TEXTS", 100)
    monkeypatch.setattr(morphemes, "CHUNK_TEXTS", 150)
    assert morphemes.tokenise(texts, n_jobs=2, analyser=analyser) == alone


def test_the_combiner_is_fitted_on_validation_and_trusts_both_models(model, data):
    *_, te_x, te_y = data
    w_baseline, w_morphemes = model.weights
    assert w_baseline > 0 and w_morphemes > 0
    accuracy = ((model.predict_proba(te_x) >= 0.5) == te_y).mean()
    assert accuracy > 0.75
    p = model.predict_proba(["정말 재밌고 감동적인 영화 강추합니다", "최악의 영화 돈 아깝고 시간 아까움"])
    assert p[0] > 0.7 and p[1] < 0.3


def test_saved_and_loaded_it_predicts_exactly_as_trained(model, data, tmp_path):
    *_, te_x, _ = data
    folder = model.save(tmp_path / "stack")
    loaded = load_model_folder(folder)
    assert isinstance(loaded, StackModel)
    np.testing.assert_array_equal(loaded.predict_proba(te_x), model.predict_proba(te_x))
    backend, served = load_for_serving(folder)
    assert backend == "stack"
    np.testing.assert_array_equal(served.predict_proba(te_x[:50]), model.predict_proba(te_x[:50]))


def test_a_tampered_part_is_refused(model, tmp_path):
    folder = model.save(tmp_path / "stack")
    path = folder / "morphemes" / "model.skops"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelArtifactError, match="checksum"):
        load_model_folder(folder)


def test_a_part_of_another_kind_is_refused(model, tmp_path):
    folder = model.save(tmp_path / "stack")
    meta = json.loads((folder / "morphemes" / "meta.json").read_text())
    meta["format"] = "reviewops-tfidf-linear/2"  # a morpheme model passed off as the baseline
    (folder / "morphemes" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelArtifactError, match="unknown format"):
        load_model_folder(folder)


def test_a_model_trained_with_kiwi_before_mecab_loads_and_predicts_exactly_as_trained(data, tmp_path):
    tr_x, tr_y, va_x, va_y, te_x, _ = data
    kiwi = StackModel(replace(SMALL, analyser="kiwi")).fit(tr_x, tr_y, va_x, va_y)
    folder = kiwi.save(tmp_path / "stack")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["analyser"]["name"] == "kiwi"
    del meta["analyser"]["name"]  # the metadata of a model written before the analyser was a choice
    (folder / "meta.json").write_text(json.dumps(meta))
    loaded = load_model_folder(folder)
    assert loaded.params.analyser == "kiwi" and loaded.morphemes.analyser == "kiwi"
    np.testing.assert_array_equal(loaded.predict_proba(te_x), kiwi.predict_proba(te_x))


def test_a_model_whose_morphemes_this_install_would_analyse_differently_is_refused(model, tmp_path, monkeypatch):
    folder = model.save(tmp_path / "stack")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["analyser"]["name"] == "mecab" and "python-mecab-ko-dic" in meta["analyser"]
    (folder / "meta.json").write_text(json.dumps({**meta, "analyser": {**meta["analyser"], "load_typo_dict": True}}))
    with pytest.raises(ModelArtifactError, match="analyser options"):
        load_model_folder(folder)
    (folder / "meta.json").write_text(json.dumps({**meta, "analyser": {"name": "okt"}}))
    with pytest.raises(ModelArtifactError, match="unknown morpheme analyser 'okt'"):
        load_model_folder(folder)
    monkeypatch.setitem(morphemes.PACKAGES, "mecab", ("python-mecab-ko-not-installed",))
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelArtifactError, match="need python-mecab-ko-not-installed, which this install lacks"):
        load_model_folder(folder)


def test_no_validation_split_is_an_input_error(data):
    tr_x, tr_y, *_ = data
    with pytest.raises(InputError, match="validation"):
        StackModel(SMALL).fit(tr_x[:200], tr_y[:200], [], np.array([]))


def test_the_trainer_is_picked_by_name(data):
    chosen = trainer_for("stack", Settings())
    assert isinstance(chosen, StackTrainer) and chosen.name == "stack"
    assert chosen.params.morphemes.word_ngrams == (1, 3)
    assert chosen.params.analyser == "mecab" and "python-mecab-ko-dic" in chosen.packages
    assert "kiwipiepy" not in chosen.packages and "model.morphemes.word_ngrams" in chosen.log_params()
    assert "kiwipiepy" in StackTrainer(Settings(), replace(chosen.params, analyser="kiwi")).packages
    with pytest.raises(InputError, match="unknown trainer 'gpt'"):
        trainer_for("gpt", Settings())


def test_the_accuracy_interval_is_wilsons():
    low, high = accuracy_interval(81, 100)
    assert low == pytest.approx(0.7222, abs=1e-4) and high == pytest.approx(0.8749, abs=1e-4)
    assert accuracy_interval(0, 10)[0] == 0.0 and accuracy_interval(10, 10)[1] == 1.0


def test_the_trainers_give_the_snapshots_ratings_and_neutral_reviews_to_the_rating_head():
    import pandas as pd

    from reviewops.models.trainers import BaselineTrainer

    frame = pd.DataFrame(sample_records(6000)).rename(columns={"review_id": "source_review_id"})
    labelled = frame[(frame["rating"] <= 4) | (frame["rating"] >= 9)].assign(label=lambda d: (d["rating"] >= 9) * 1)
    parts = {"train": labelled[:-800], "valid": labelled[-800:],
             "neutral": frame[frame["rating"].between(5, 8)].assign(label=None)}
    params = StackParams(BaselineParams(**{**SMALL.baseline.__dict__, "rating_min_rows": 1000}), SMALL.morphemes)
    stack = StackTrainer(Settings(), params).fit(parts, "snapshot", lambda *a: None)
    assert stack.baseline.rating_rows == len(parts["train"]) + len(parts["neutral"])
    assert stack.baseline.head_weights is not None and stack.morphemes.head_weights is None
    baseline = BaselineTrainer(Settings(), params.baseline).fit(parts, "snapshot", lambda *a: None)
    np.testing.assert_array_equal(baseline.clf.coef_, stack.baseline.clf.coef_)
    assert BaselineTrainer(Settings(), params.baseline).fit({**parts, "neutral": parts["neutral"][:0]}, "snapshot",
                                                            lambda *a: None).rating_rows == len(parts["train"])
