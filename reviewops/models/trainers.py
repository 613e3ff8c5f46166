"""Trainers the training job can run: each turns a snapshot's parts (train, valid and the neutral reviews,
`data.snapshot`) into a model that has
`predict_proba(texts)` and `save(folder)`, and says what to log and which packages serve it. `trainer_for`
picks one by name (the CLI's `--trainer`, the Airflow train task)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from reviewops.config import Settings
from reviewops.data.snapshot import NEUTRAL
from reviewops.errors import InputError
from reviewops.models.baseline import BaselineModel, BaselineParams
from reviewops.models.stack import StackModel, StackParams
from reviewops.text import morphemes
from reviewops.text.clean import Cleaner

LogMetric = Callable[[str, float, int | None], None]


class BaselineTrainer:
    name = "baseline"
    packages = ("scikit-learn", "skops", "numpy", "scipy", "pandas", "joblib")

    def __init__(self, settings: Settings, params: BaselineParams | None = None) -> None:
        self.settings = settings
        self.params = params or BaselineParams.from_dict(settings.model.params)

    def log_params(self) -> dict:
        return {f"model.{k}": v for k, v in asdict(self.params).items()}

    def export(self, model, folder: Path, texts: list[str]) -> dict[str, float]:
        return {}  # the CPU model is already fast on CPU

    def fit(self, parts: dict[str, pd.DataFrame], snapshot_id: str, log_metric: LogMetric):
        return BaselineModel(self.params, Cleaner.from_settings(self.settings)).fit(*_linear_inputs(parts))


class StackTrainer(BaselineTrainer):
    """The baseline (with the configured parameters) and the morpheme model, stacked on validation."""

    name = "stack"

    def __init__(self, settings: Settings, params: StackParams | None = None) -> None:
        self.settings = settings
        self.params = params or StackParams(BaselineParams.from_dict(settings.model.params))

    @property
    def packages(self) -> tuple[str, ...]:
        return (*BaselineTrainer.packages, *morphemes.PACKAGES[self.params.analyser])

    def log_params(self) -> dict:
        return {"model.analyser": self.params.analyser,
                **{f"model.{part}.{k}": v for part in ("baseline", "morphemes")
                   for k, v in asdict(getattr(self.params, part)).items()}}

    def fit(self, parts: dict[str, pd.DataFrame], snapshot_id: str, log_metric: LogMetric):
        return StackModel(self.params, Cleaner.from_settings(self.settings)).fit(*_linear_inputs(parts))


def _linear_inputs(parts: dict[str, pd.DataFrame]) -> tuple:
    """`fit`'s arguments for the CPU models: the labelled splits, then the ratings for the rating head."""
    train, valid, neutral = parts["train"], parts["valid"], parts.get(NEUTRAL)
    rated = (neutral["text"].tolist(), neutral["rating"].to_numpy(float)) if neutral is not None else None
    return (train["text"].tolist(), train["label"].to_numpy(), valid["text"].tolist(), valid["label"].to_numpy(),
            pd.to_numeric(train["rating"]).to_numpy(float), rated)


class TransformerTrainer:
    name = "transformer"
    packages = ("torch", "transformers", "tokenizers", "sentencepiece", "safetensors", "onnxruntime", "numpy",
                "pandas")

    def __init__(self, settings: Settings, overrides: dict | None = None, resume: bool = False) -> None:
        from reviewops.models.transformer import TransformerParams

        self.settings = settings
        self.params = TransformerParams.from_dict({**settings.transformer.params, **(overrides or {})})
        self.resume = resume

    def log_params(self) -> dict:
        return {f"model.{k}": v for k, v in asdict(self.params).items()}

    def export(self, model, folder: Path, texts: list[str]) -> dict[str, float]:
        """ONNX fp32 and dynamic int8 beside the checkpoint (`folder/onnx`), checked against PyTorch on a
        sample of texts: fp32 must match; int8's agreement is reported for the serving path to judge."""
        from reviewops.models.onnx_export import export_onnx

        sample = [model.cleaner.normalise(t)[0] for t in texts[:256]]
        report = export_onnx(folder / "hf", folder / "onnx", sample, max_length=model.params.max_length,
                             tokenizer=model.tokenizer, int8_min_agreement=0.0)
        return {f"onnx.{kind}.{k}": float(report[kind][k]) for kind in ("fp32", "int8")
                for k in ("max_abs_logit_diff", "label_agreement")}

    def work_dir(self, snapshot_id: str) -> Path:
        """Where epoch checkpoints go: the same snapshot and parameters give the same folder, so
        `--resume` finds the run that crashed."""
        key = hashlib.sha1(json.dumps(asdict(self.params), sort_keys=True, default=str).encode()).hexdigest()[:10]
        return self.settings.home / "train" / f"transformer-{snapshot_id}-{key}"

    def fit(self, parts: dict[str, pd.DataFrame], snapshot_id: str, log_metric: LogMetric):
        from reviewops.models.transformer import fine_tune

        def on_step(step: int, loss: float) -> None:
            if step % 10 == 0 or step == 1:
                log_metric("train.loss", loss, step)

        def on_epoch(epoch: int, record: dict) -> None:
            for k in ("valid_balanced_accuracy", "epoch_seconds", "samples_per_second"):
                log_metric(f"epoch.{k}", record[k], epoch)

        train, valid = parts["train"], parts["valid"]
        return fine_tune(self.params, train["text"].tolist(), train["label"].to_numpy(), valid["text"].tolist(),
                         valid["label"].to_numpy(), self.work_dir(snapshot_id), resume=self.resume,
                         on_step=on_step, on_epoch=on_epoch)


TRAINERS = {"baseline": BaselineTrainer, "transformer": TransformerTrainer, "stack": StackTrainer}


def trainer_for(name: str, settings: Settings, params=None,
                resume: bool = False) -> BaselineTrainer | StackTrainer | TransformerTrainer:
    """The trainer called `name`, its parameters from the settings; `params` overrides them (the baseline
    takes `BaselineParams`, the stack `StackParams`, the transformer a dict of `TransformerParams` fields),
    `resume` continues a transformer run after its last epoch checkpoint. An unknown name is an InputError
    naming the known ones."""
    if name == "baseline":
        return BaselineTrainer(settings, params)
    if name == "stack":
        return StackTrainer(settings, params)
    if name == "transformer":
        return TransformerTrainer(settings, params, resume=resume)
    raise InputError(f"unknown trainer {name!r}: use {' or '.join(TRAINERS)}")
