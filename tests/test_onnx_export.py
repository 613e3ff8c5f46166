"""ONNX export of a (tiny, briefly fine-tuned) Hugging Face classifier: parity, serving, failure modes."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from reviewops.errors import InputError, ModelArtifactError
from reviewops.models import onnx_export, training
from reviewops.models.onnx_export import (
    OnnxClassifier,
    OnnxExportError,
    TorchClassifier,
    export_onnx,
    torch_predict_proba,
)
from tests.conftest import sample_records
from tests.tiny_hf import korean_texts, make_tiny_checkpoint

FILES = {"model.onnx", "model.int8.onnx", "parity.json"}


def _fine_tune(path: Path, steps: int = 30) -> None:
    """A few AdamW steps on rating-labelled reviews, in balanced batches: a random-init head gives
    near-tied logits (|gap| ~ 1e-4) that int8 noise flips at random, and unbalanced steps only learn
    the prior; this model tells the texts apart (probabilities spread over ~0.3 or more)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    recs = [r for r in sample_records(3000) if r["text"].strip() and (r["rating"] >= 9 or r["rating"] <= 4)]
    pos = [(r["text"], 1) for r in recs if r["rating"] >= 9]
    neg = [(r["text"], 0) for r in recs if r["rating"] <= 4]
    data = [x for pair in zip(pos, neg, strict=False) for x in pair]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        batch = [data[(step * 16 + i) % len(data)] for i in range(16)]
        enc = tok([t for t, _ in batch], padding=True, truncation=True, max_length=32, return_tensors="pt")
        model(**enc, labels=torch.tensor([y for _, y in batch])).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval().save_pretrained(path)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return korean_texts(400)[:200]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("hf") / "ckpt")
    _fine_tune(path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, checkpoint, texts) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("export") / "onnx"
    return out, export_onnx(checkpoint, out, texts)


def test_export_writes_both_graphs_and_parity(exported, texts):
    out, report = exported
    assert {p.name for p in out.iterdir()} == FILES  # no temporary file left behind
    assert json.loads((out / "parity.json").read_text()) == report
    assert report["n"] == len(texts)
    assert report["fp32"]["max_abs_logit_diff"] < 1e-4
    assert report["fp32"]["label_agreement"] == 1.0
    assert report["int8"]["label_agreement"] >= 0.9
    assert report["files"] == {name: (out / name).stat().st_size
                               for name in ("model.onnx", "model.int8.onnx")}
    assert report["files"]["model.int8.onnx"] < report["files"]["model.onnx"]
    assert report["inputs"][:2] == ["input_ids", "attention_mask"]


def test_graph_inputs_and_dynamic_axes(exported):
    import onnx

    out, report = exported
    graph = onnx.load(str(out / "model.onnx")).graph
    assert [i.name for i in graph.input] == report["inputs"]
    assert [o.name for o in graph.output] == ["logits"]
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch"  # symbolic, not a number
    assert graph.input[0].type.tensor_type.shape.dim[1].dim_param == "sequence"
    int8 = onnx.load(str(out / "model.int8.onnx")).graph
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in int8.node)


def test_int8_weights_fit_seven_bits(exported):
    """8-bit weights saturate onnxruntime's AVX2 kernel on CPUs without VNNI (CI once got 85.5% label
    agreement there against 100% on a VNNI host); weights in [-64, 64] give the same answers everywhere."""
    import onnx
    from onnx import numpy_helper

    out, report = exported
    graph = onnx.load(str(out / "model.int8.onnx")).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    largest = max(int(np.abs(w.astype(np.int16)).max()) for w in weights)
    assert 32 < largest <= 64  # 7 bits, and used
    assert report["quantization"]["reduce_range"] is True


def test_onnx_classifier_matches_torch_in_input_order(exported, checkpoint, texts):
    out, _ = exported
    clf = OnnxClassifier(out / "model.onnx", checkpoint, threads=1)
    onnx_p = clf.predict_proba(texts)
    torch_p = torch_predict_proba(checkpoint, texts)
    assert onnx_p.shape == (len(texts),)
    np.testing.assert_allclose(onnx_p, torch_p, atol=1e-4, rtol=0)
    assert np.ptp(torch_p) > 0.05  # the texts are really told apart, so order matters

    order = list(range(len(texts)))
    random.Random(7).shuffle(order)
    shuffled = clf.predict_proba([texts[i] for i in order], batch_size=7)
    np.testing.assert_allclose(shuffled, onnx_p[order], atol=1e-5, rtol=0)
    assert clf.predict_proba([]).shape == (0,)
    single = clf.predict_proba([texts[3]])
    np.testing.assert_allclose(single, onnx_p[3:4], atol=1e-5, rtol=0)  # batch of one, no padding


def test_int8_classifier_agrees_with_torch(exported, checkpoint, texts):
    out, _ = exported
    int8_p = OnnxClassifier(out / "model.int8.onnx", checkpoint).predict_proba(texts, batch_size=16)
    torch_p = TorchClassifier(checkpoint).predict_proba(texts)
    assert ((int8_p >= 0.5) == (torch_p >= 0.5)).mean() >= 0.9
    assert np.abs(int8_p - torch_p).max() < 0.05


def test_int8_answer_does_not_depend_on_the_batch(exported, checkpoint, texts):
    """Dynamic int8 scales a whole input tensor at once; run batched, a text's score moved with its
    neighbours'. A text must get the same answer alone, in any batch and in any order."""
    out, _ = exported
    int8 = OnnxClassifier(out / "model.int8.onnx", checkpoint)
    assert int8.one_text_per_run and not OnnxClassifier(out / "model.onnx", checkpoint).one_text_per_run
    batched = int8.predict_proba(texts, batch_size=64)
    alone = np.array([int8.predict_proba([t])[0] for t in texts[:40]])
    np.testing.assert_array_equal(alone, batched[:40])
    order = list(range(len(texts)))
    random.Random(3).shuffle(order)
    np.testing.assert_array_equal(int8.predict_proba([texts[i] for i in order], batch_size=9), batched[order])
    # its texts run side by side on one thread each, and still each gets its own answer
    assert int8.session.get_session_options().intra_op_num_threads == 1
    one_worker = OnnxClassifier(out / "model.int8.onnx", checkpoint, threads=1)
    two_workers = OnnxClassifier(out / "model.int8.onnx", checkpoint, threads=2)
    np.testing.assert_array_equal(one_worker.predict_proba(texts), batched)
    np.testing.assert_array_equal(two_workers.predict_proba(texts), batched)


def test_corrupt_or_missing_model_file(exported, checkpoint, tmp_path):
    out, _ = exported
    broken = tmp_path / "model.onnx"
    data = (out / "model.onnx").read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(OnnxExportError, match="model.onnx") as info:
        OnnxClassifier(broken, checkpoint)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ModelArtifactError)

    broken.write_bytes(b"not an onnx model at all")
    with pytest.raises(OnnxExportError, match="corrupt"):
        OnnxClassifier(broken, checkpoint)
    with pytest.raises(OnnxExportError, match="does not exist"):
        OnnxClassifier(tmp_path / "absent.onnx", checkpoint)


def test_export_to_unusable_folder_fails_cleanly(checkpoint, texts, tmp_path):
    missing_parent = tmp_path / "no" / "such" / "onnx"
    with pytest.raises(OnnxExportError, match="not an existing folder"):
        export_onnx(checkpoint, missing_parent, texts[:8])
    assert not (tmp_path / "no").exists()

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OnnxExportError, match="not an existing folder"):
        export_onnx(checkpoint, a_file / "onnx", texts[:8])
    with pytest.raises(OnnxExportError, match="cannot create"):
        export_onnx(checkpoint, a_file, texts[:8])  # the output folder is a file

    with pytest.raises(OnnxExportError, match="does not exist"):
        export_onnx(tmp_path / "no-checkpoint", tmp_path / "out", texts[:8])
    assert not (tmp_path / "out").exists()


def test_failed_export_leaves_no_partial_files(exported, checkpoint, texts, tmp_path, monkeypatch):
    out, _ = exported
    # a parity failure after both graphs were written: the earlier export stays as it was
    kept = tmp_path / "kept"
    shutil.copytree(out, kept)
    before = {p.name: p.read_bytes() for p in kept.iterdir()}
    with pytest.raises(OnnxExportError, match="int8 parity failed") as info:
        export_onnx(checkpoint, kept, texts[:40], int8_min_agreement=1.01)
    assert "\n" not in str(info.value)
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == before

    # a failure in the middle (quantisation): the folder made for the export is gone again
    def boom(*args, **kwargs):
        raise RuntimeError("quantiser exploded\nwith a traceback-like second line")

    monkeypatch.setattr(onnx_export, "_quantize", boom)
    fresh = tmp_path / "fresh"
    with pytest.raises(OnnxExportError, match="int8 quantisation .* failed: quantiser exploded$"):
        export_onnx(checkpoint, fresh, texts[:8])
    assert not fresh.exists()
    fresh.mkdir()  # an existing folder stays, empty
    with pytest.raises(OnnxExportError, match="int8 quantisation"):
        export_onnx(checkpoint, fresh, texts[:8])
    assert fresh.is_dir() and list(fresh.iterdir()) == []


def test_bad_inputs(checkpoint, tmp_path):
    with pytest.raises(OnnxExportError, match="at least one sample text"):
        export_onnx(checkpoint, tmp_path / "out", [])
    assert not (tmp_path / "out").exists()


def _cost(groups, lengths, call_cost):
    return sum(call_cost + len(g) * max(lengths[i] for i in g) for g in groups)


def test_length_groups_cover_every_row_once_at_least_cost():
    rng = random.Random(3)
    for _ in range(60):
        n = rng.randint(1, 9)
        lengths = [rng.choice([3, 5, 8, 20, 60, 128]) for _ in range(n)]
        max_rows, call_cost = rng.randint(1, 4), rng.choice([0.0, 8.0, 32.0])
        groups = training.length_groups(lengths, max_rows, call_cost)
        assert sorted(int(i) for g in groups for i in g) == list(range(n))
        assert all(1 <= len(g) <= max_rows for g in groups)
        # the least cost over every split of the length order into runs of at most max_rows
        order = sorted(range(n), key=lambda i: lengths[i])
        best = [0.0] + [float("inf")] * n
        for j in range(1, n + 1):
            for i in range(max(0, j - max_rows), j):
                best[j] = min(best[j], best[i] + call_cost + (j - i) * lengths[order[j - 1]])
        assert _cost(groups, lengths, call_cost) == pytest.approx(best[n]), (lengths, max_rows, call_cost)


def test_length_groups_keep_short_reviews_away_from_long_ones():
    lengths = [12] * 30 + [120] * 2  # two long reviews among short ones, as in a real micro-batch
    groups = training.length_groups(lengths, 64, 32.0)
    padded = sum(len(g) * max(lengths[i] for i in g) for g in groups)
    assert padded == sum(lengths)  # no short review is padded to a long one
    assert len(groups) == 2
    naive = len(lengths) * max(lengths)  # one batch padded to the longest: the old behaviour
    assert padded < naive / 4
    assert training.length_groups([], 8, 32.0) == []
    with pytest.raises(InputError):
        training.length_groups([1, 2], 0, 32.0)
