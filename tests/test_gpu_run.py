"""The GPU run (`make gpu-run`, bench/gpu_run.py) end to end on CPU with its tiny settings, so it is known
to work before a GPU is lent: every step ran and recorded sane figures, and what it wrote loads."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.tiny_hf import make_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("smoke", "e5", "pretrain", "ours", "trainer", "onnx", "pack")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny run; a tiny BERT stands in for the imported e5 (the import has its own tests)."""
    tmp = tmp_path_factory.mktemp("gpu-run")
    e5 = make_tiny_checkpoint(tmp / "e5")
    out = tmp / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_run.py"), "--tiny", "--out", str(out),
                           "--e5-checkpoint", str(e5)], capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


def _sane_accuracy(record: dict) -> None:
    acc, (lo, hi) = record["accuracy"], record["interval95"]
    assert 0.0 <= lo <= acc <= hi <= 1.0
    assert 0 <= record["correct"] <= record["n"] > 0
    assert hi - lo < 0.5  # a real interval on the evaluation set, not [0, 1]


def test_every_step_ran_with_sane_figures(run):
    _, res = run
    assert res["tiny"] is True and res["device"]["cuda"] is False
    assert {name: res["steps"][name]["status"] for name in STEPS} == dict.fromkeys(STEPS, "ok")
    smoke = res["steps"]["smoke"]
    assert smoke["e5"]["samples_per_second"] > 0 and smoke["ours"]["samples_per_second"] > 0
    assert smoke["pretrain"]["samples_per_second"] > 0
    for name in ("e5", "ours"):
        step = res["steps"][name]
        assert step["samples_per_second"] > 0 and step["epochs_run"] == 1 and step["rows"] == 300
        assert all(s > 0 for s in step["epoch_seconds"])
        _sane_accuracy(step["heldout"])
    pretrain = res["steps"]["pretrain"]
    assert pretrain["steps"] == 8 and pretrain["texts"] <= pretrain["corpus_texts"]
    trainer = res["steps"]["trainer"]
    assert trainer["model"] == "e5" and trainer["ours"]["steps"] == trainer["trainer"]["steps"] == trainer["steps"]
    assert trainer["speed_ratio"] == pytest.approx(trainer["ours"]["samples_per_second"]
                                                   / trainer["trainer"]["samples_per_second"])
    _sane_accuracy(trainer["trainer"]["heldout"])
    summary = res["summary"]
    assert set(summary["heldout"]) >= {"e5", "ours", "e5-onnx-int8", "ours-onnx-int8"}
    assert summary["speed_ratio_vs_trainer"] > 0


def test_held_out_split_is_the_snapshots_evaluation_set(run):
    out, res = run
    import pandas as pd

    frame = pd.read_parquet(out / "bundle" / "reviews.parquet")
    ev = frame[frame["split"] == "eval"]
    assert (ev["text"].str.len() < 140).all() and (ev["label"] == 1).sum() == (ev["label"] == 0).sum()
    assert not set(ev["text"]) & set(frame.loc[frame["split"] != "eval", "text"])  # never trained on
    assert res["manifest"]["snapshot"]["counts"]["eval"]["rows"] == len(ev) == res["rows"]["eval"]
    assert (frame.loc[frame["split"] == "unlabelled", "label"] == -1).all()
    assert res["rows"]["pretrain_texts"] == (frame["split"] != "eval").sum()


def test_onnx_exports_exist_and_load(run):
    out, res = run
    from reviewops.models.onnx_export import OnnxClassifier

    for name in ("e5", "ours"):
        onnx = res["steps"]["onnx"][name]
        assert onnx["parity"]["n"] > 0
        for fmt in ("fp32", "int8"):
            assert onnx[fmt]["cpu_reviews_per_second"] > 0
            graph = OnnxClassifier(onnx[fmt]["file"], Path(res["steps"][name]["folder"]) / "hf", max_length=64)
            p = graph.predict_proba(["정말 재밌어요", "최악의 영화"])
            assert p.shape == (2,) and ((p >= 0) & (p <= 1)).all()
        _sane_accuracy(onnx["int8"]["heldout"])


def test_packed_models_unpack_into_loadable_folders(run, tmp_path):
    out, res = run
    from reviewops.models.transformer import TransformerModel

    for name, packed in res["steps"]["pack"]["models"].items():
        archive = tmp_path / f"{name}.tar.xz"
        archive.write_bytes(b"".join((out / part).read_bytes() for part in packed["parts"]))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp_path, filter="data")
        model = TransformerModel.load(tmp_path / name)
        assert model.predict_proba(["배우 연기가 좋았다"]).shape == (1,)
