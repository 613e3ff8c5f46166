"""The transformer path on CPU with a tiny checkpoint built here: it learns, logs, registers, competes at
the gate, loads back exactly, resumes after a crash, and refuses missing or broken checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reviewops.errors import ModelArtifactError
from reviewops.models.loading import load_tokenizer
from reviewops.models.training import length_batches
from reviewops.models.transformer import TransformerModel, TransformerParams, fine_tune
from tests.conftest import sample_records
from tests.tiny_hf import korean_texts, make_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny")


@pytest.fixture(scope="module")
def data():
    recs = [r for r in sample_records(5000) if r["rating"] <= 4 or r["rating"] >= 9]
    x = [r["text"] for r in recs]
    y = np.array([int(r["rating"] >= 9) for r in recs])
    return x[:1200], y[:1200], x[1200:1500], y[1200:1500]


def _params(tiny, **kw) -> TransformerParams:
    return TransformerParams(**{"checkpoint": str(tiny), "batch_size": 32, "lr": 1e-3, "epochs": 2,
                                "num_workers": 0, "patience": 5, **kw})


def test_a_few_steps_lower_the_loss_and_checkpoints_each_epoch(tiny, data, tmp_path):
    losses: list[float] = []
    model = fine_tune(_params(tiny), *data, tmp_path / "work", on_step=lambda s, loss: losses.append(loss))
    assert len(losses) == 2 * 38 and np.mean(losses[-10:]) < np.mean(losses[:10])
    assert [h["epoch"] for h in model.history] == [1, 2]
    assert all(h["samples_per_second"] > 0 for h in model.history)
    assert (tmp_path / "work" / "epoch-0" / "state.pt").is_file() and (tmp_path / "work" / "epoch-1").is_dir()
    p = model.predict_proba(data[2])
    assert p.shape == (300,) and ((p >= 0.5) == data[3]).mean() > 0.6


def test_resume_continues_from_the_saved_step(tiny, data, tmp_path):
    steps: list[int] = []

    def crash_in_epoch_two(step, loss):
        steps.append(step)
        if step == 50:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        fine_tune(_params(tiny), *data, tmp_path / "work", on_step=crash_in_epoch_two)
    assert steps[-1] == 50
    resumed: list[int] = []
    model = fine_tune(_params(tiny), *data, tmp_path / "work", resume=True,
                      on_step=lambda s, loss: resumed.append(s))
    assert resumed[0] == 39 and resumed[-1] == 76  # epoch 2 again, from the step saved after epoch 1
    assert [h["epoch"] for h in model.history] == [1, 2]


def test_saved_model_loads_back_and_predicts_exactly(tiny, data, tmp_path):
    model = TransformerModel.from_checkpoint(_params(tiny))
    folder = model.save(tmp_path / "m")
    again = TransformerModel.load(folder)
    np.testing.assert_array_equal(again.predict_proba(data[2][:64]), model.predict_proba(data[2][:64]))


def test_tampered_or_missing_files_are_refused(tiny, tmp_path):
    folder = TransformerModel.from_checkpoint(_params(tiny)).save(tmp_path / "m")
    weights = folder / "hf" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64] + b"\0" * 64)
    with pytest.raises(ModelArtifactError, match="does not match its checksum"):
        TransformerModel.load(folder)
    weights.unlink()
    with pytest.raises(ModelArtifactError, match="missing"):
        TransformerModel.load(folder)


def test_missing_or_corrupt_checkpoint_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(ModelArtifactError, match="no model hub is reachable"):
        TransformerModel.from_checkpoint(TransformerParams(checkpoint="skt/kobert-base-v1"))
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelArtifactError, match="cannot load the weights"):
        TransformerModel.from_checkpoint(_params(broken))


def test_sentencepiece_tokenization_is_deterministic(tmp_path):
    """KoBERT-style SentencePiece tokenizers are loaded with subword sampling off."""
    import sentencepiece as spm

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(korean_texts(3000)), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "spiece"), vocab_size=2000,
                                   character_coverage=0.9995, model_type="unigram")
    folder = tmp_path / "kobert-like"
    folder.mkdir()
    (folder / "spiece.model").write_bytes((tmp_path / "spiece.model").read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLNetTokenizer",
                                                              "do_lower_case": False}))
    tok = load_tokenizer(folder)
    text = "배우들의 연기가 정말 인상적이었고 마지막 장면은 잊을 수 없어요"
    runs = {tuple(tok(text)["input_ids"]) for _ in range(30)}
    assert len(runs) == 1 and len(next(iter(runs))) > 3


def test_length_batches_cover_everything_once_and_group_lengths():
    lengths = [i % 97 for i in range(1000)]
    batches = length_batches(lengths, 32, seed=1)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 10  # random batches would spread over most of 0..96
    assert batches != length_batches(lengths, 32, seed=2)


def test_train_command_registers_a_transformer_that_competes_at_the_gate(home, tiny, small_corpus,
                                                                         monkeypatch):
    from typer.testing import CliRunner

    from reviewops.cli import app
    from reviewops.config import Settings, reset_settings
    from reviewops.models.pyfunc import load_predictor
    from reviewops.registry.mlflow_registry import Registry

    monkeypatch.setenv("REVIEWOPS_MODEL_PARAMS", json.dumps({"word_features": 2**16,
                                                             "nospace_features": 2**18, "n_jobs": 1}))
    monkeypatch.setenv("REVIEWOPS_TRANSFORMER_PARAMS", json.dumps({"lr": 1e-3, "num_workers": 0}))
    reset_settings()
    from reviewops.store.db import upgrade

    upgrade(Settings().db_url)
    runner = CliRunner()
    r = runner.invoke(app, ["pipeline", "run", "--corpus", str(small_corpus), "--json"])
    assert r.exit_code == 0, r.output
    reset_settings()
    r = runner.invoke(app, ["train", "--trainer", "transformer", "--checkpoint", str(tiny), "--epochs", "1",
                            "--max-rows", "1500", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # scored against the CPU champion
    assert out["version"] == "2" and out["decision"]["champion"] is not None
    reg = Registry(Settings())
    v2 = reg.get("2")
    assert v2.tags["trainer"] == "transformer" and v2.tags["gate.decision"] in ("champion", "challenger")

    import mlflow

    run = mlflow.get_run(out["run_id"])
    history = mlflow.MlflowClient().get_metric_history(out["run_id"], "train.loss")
    assert len(history) >= 3 and "epoch.valid_balanced_accuracy" in run.data.metrics
    assert run.data.params["model.checkpoint"] == str(tiny)
    assert run.data.metrics["onnx.fp32.max_abs_logit_diff"] < 1e-3
    assert run.data.metrics["onnx.fp32.label_agreement"] == 1
    assert 0 <= run.data.metrics["onnx.int8.label_agreement"] <= 1

    # the registered model predicts exactly as the trained one
    pred = load_predictor("models:/review-sentiment/2")
    best = next((Settings().home / "train").glob("transformer-*")) / "best"
    texts = ["정말 재밌어요", "최악의 영화", "그냥 그래요"]
    np.testing.assert_allclose(pred.predict_proba(texts), TransformerModel.load(best).predict_proba(texts))

    r = runner.invoke(app, ["train", "--trainer", "transformer", "--checkpoint", "no/such-model"])
    assert r.exit_code == 5 and "no model hub is reachable" in r.stderr
