"""The main job: ingest → clean → snapshot → train → evaluate → register → gate.

Each stage is a function the CLI, the demo and (later) the Airflow tasks call. Nothing here
knows about command lines or schedulers.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from reviewops.config import Settings
from reviewops.data.ingest import IngestSummary, ingest
from reviewops.data.labels import LabelPolicy
from reviewops.data.snapshot import Snapshot, SnapshotSpec, build_snapshot
from reviewops.errors import ReviewOpsError, StorageFullError
from reviewops.evaluate.gate import GateDecision, decide
from reviewops.evaluate.metrics import confusion_png, evaluate
from reviewops.liveness import process_id
from reviewops.models.baseline import BaselineParams
from reviewops.registry.mlflow_registry import CHAMPION, OWNER_TAG, Registry
from reviewops.store import db
from reviewops.store.objects import open_store
from reviewops.text.clean import Cleaner

log = logging.getLogger(__name__)


def run_ingest(settings: Settings, path: str | Path, source: str | None = None) -> IngestSummary:
    return ingest(path, db.sessions(settings), Cleaner.from_settings(settings), LabelPolicy.from_settings(settings),
                  source=source)


def run_snapshot(settings: Settings, spec: SnapshotSpec | None = None) -> tuple[Snapshot, dict[str, pd.DataFrame]]:
    spec = spec or SnapshotSpec.from_settings(settings)
    store = open_store(settings.artifacts, settings.s3_endpoint_url)
    with db.sessions(settings)() as session:
        return build_snapshot(session, store, spec, LabelPolicy.from_settings(settings).version,
                              Cleaner.from_settings(settings))


@dataclass
class TrainResult:
    run_id: str
    version: str
    metrics: dict[str, float]
    decision: GateDecision
    snapshot_id: str
    train_seconds: float
    champion_version: str | None = None

    def summary(self) -> dict:
        d = asdict(self)
        d["decision"] = asdict(self.decision)
        d["metrics"] = {k: v for k, v in self.metrics.items() if not k.startswith("slice.")}
        return d


def _pip_requirements(packages: tuple[str, ...]) -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in packages]


def _score_champion(registry: Registry, eval_df: pd.DataFrame) -> tuple[str | None, float | None, str | None]:
    """(version, metric on eval_df, error) of the current champion, scored now on the same set."""
    from reviewops.models.pyfunc import load_predictor

    champion = registry.by_alias(CHAMPION)
    if champion is None:
        return None, None, None
    try:
        predictor = load_predictor(f"models:/{registry.name}@{CHAMPION}")
        score = predictor.predict_proba(eval_df["text"].tolist())
        return champion.version, evaluate(eval_df, score)[registry.settings.gate_metric], None
    except ReviewOpsError as exc:
        return champion.version, None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken champion must not break training
        return champion.version, None, f"{type(exc).__name__}: {exc}"


def train_run(
    settings: Settings,
    snapshot: Snapshot,
    parts: dict[str, pd.DataFrame],
    params: BaselineParams | None = None,
    trainer=None,
) -> str:
    """Train a model on a snapshot and evaluate it; log the run and its model to MLflow; return the run id.
    What crashed runs left is repaired first. Full or read-only storage ends the run FAILED, without its
    partial model, as one StorageFullError."""
    from reviewops.models.trainers import BaselineTrainer

    trainer = trainer or BaselineTrainer(settings, params)
    registry = Registry(settings)  # configures MLflow
    repair_registry(registry)
    return _train_run(registry, trainer, snapshot, parts)


def repair_registry(registry: Registry) -> None:
    """Clean up what crashed runs left (see `Registry.repair`); a failure here never stops the caller."""
    try:
        registry.repair()
    except Exception as exc:  # noqa: BLE001 - the repair is housekeeping; the next run tries again
        log.warning("registry repair skipped: %s: %s", type(exc).__name__, str(exc).splitlines()[0][:300])


@contextmanager
def _full_storage_fails(registry: Registry, run_id: str) -> Iterator[None]:
    """Full or read-only storage ends the block as one StorageFullError, the run's partial model files
    deleted (the run itself ends FAILED as the exception leaves `mlflow.start_run`)."""
    try:
        yield
    except OSError as exc:
        full = StorageFullError.from_os_error(exc, f"training run {run_id} stopped, storage is full or read-only")
        if full is None:
            raise
        try:
            registry.discard_partial_models(run_id)
        except Exception as cleanup:  # noqa: BLE001 - the storage error is the one to report
            log.warning("partial model files of run %s not deleted: %s", run_id, cleanup)
        raise full from None


def _train_run(registry: Registry, trainer, snapshot: Snapshot, parts: dict[str, pd.DataFrame]) -> str:
    import mlflow
    from mlflow.models import infer_signature

    from reviewops.models.pyfunc import SentimentPyfunc

    train, valid, eval_df = parts["train"], parts["valid"], parts["eval"]
    # the owner tag is written with the run itself: a kill right after creating it leaves no anonymous run
    with (mlflow.start_run(run_name=f"{trainer.name}-{snapshot.id}", tags={OWNER_TAG: process_id()}) as run,
          registry.keepalive(run.info.run_id), _full_storage_fails(registry, run.info.run_id)):
        mlflow.set_tags({"trainer": trainer.name, "snapshot_id": snapshot.id, "dataset.fingerprint": snapshot.fingerprint,
                         "cleaning_version": ",".join(snapshot.cleaning_versions)})
        mlflow.log_params(trainer.log_params())
        mlflow.log_params({"snapshot.id": snapshot.id, "snapshot.label_policy": snapshot.label_policy,
                           **{f"snapshot.rows.{k}": v["rows"] for k, v in snapshot.counts.items()}})
        for name, df in (("train", train), ("eval", eval_df)):
            dataset = mlflow.data.from_pandas(df[["text", "label"]], source=snapshot.uris[name],
                                              name=f"{snapshot.id}-{name}", targets="label")
            mlflow.log_input(dataset, context="training" if name == "train" else "evaluation")
        mlflow.log_dict(snapshot.manifest(), "snapshot/manifest.json")

        t0 = time.perf_counter()
        model = trainer.fit(train, valid, snapshot.id,
                            lambda key, value, step=None: mlflow.log_metric(key, value, step=step))
        train_seconds = time.perf_counter() - t0
        score = model.predict_proba(eval_df["text"].tolist())
        metrics = evaluate(eval_df, score)
        metrics["train_seconds"] = train_seconds
        if len(valid):
            metrics.update({f"valid.{k}": v for k, v in evaluate(valid, model.predict_proba(valid["text"].tolist())).items()
                            if not k.startswith("slice.")})
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory(prefix="reviewops-") as tmpdir:
            tmp = Path(tmpdir)
            (tmp / "confusion_matrix.png").write_bytes(
                confusion_png(eval_df["label"].to_numpy(), score, f"eval {snapshot.id} (n={len(eval_df):,})"))
            mlflow.log_artifact(str(tmp / "confusion_matrix.png"))
            folder = model.save(tmp / "model")
            exported = trainer.export(model, folder, eval_df["text"].tolist())
            if exported:
                mlflow.log_metrics(exported)
            example = pd.DataFrame({"text": ["정말 재밌어요 강추합니다", "시간 아까운 영화"]})
            signature = infer_signature(example, SentimentPyfunc.output_example())
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(__file__).parent / "models" / "pyfunc_entry.py"),
                artifacts={"model": str(folder)},
                signature=signature,
                input_example=example,
                pip_requirements=_pip_requirements(trainer.packages),
            )
        mlflow.set_tag("model_uri", info.model_uri)  # MLflow 3 keeps the model as a LoggedModel, not run artifacts
    return run.info.run_id


def register_and_gate(settings: Settings, run_id: str, eval_df: pd.DataFrame | None = None) -> TrainResult:
    """Register a training run's model as a new version and apply the gate: promote it to champion when
    it beats the champion (scored now on the same evaluation set), otherwise keep it as challenger.
    A failure after registration deletes the new version: no half-registered model is left behind (a
    crash leaves its owner tag and a stopped heartbeat, from which `Registry.repair` deletes it)."""
    registry = Registry(settings)
    run = registry.client.get_run(run_id)
    snapshot_id = run.data.tags.get("snapshot_id", "")
    if eval_df is None:
        from reviewops.data.snapshot import read_split

        eval_df = read_split(open_store(settings.artifacts, settings.s3_endpoint_url), snapshot_id, "eval")
    metrics = dict(run.data.metrics)
    if settings.gate_metric not in metrics:
        raise ReviewOpsError(f"run {run_id} has no {settings.gate_metric!r} metric: not a finished training run")
    version: str | None = None
    with registry.keepalive(run_id):  # a crash from here on is found and cleaned up by `Registry.repair`
        try:
            version = registry.register(run.data.tags.get("model_uri", f"runs:/{run_id}/model"))
            registry.tag(version, {"snapshot_id": snapshot_id,
                                   "dataset.fingerprint": run.data.tags.get("dataset.fingerprint", ""),
                                   "trainer": run.data.tags.get("trainer", ""),
                                   settings.gate_metric: f"{metrics[settings.gate_metric]:.6f}"})
            champ_version, champ_metric, champ_error = _score_champion(registry, eval_df)
            decision = decide(settings.gate_metric, metrics[settings.gate_metric], champ_metric,
                              settings.gate_margin, settings.gate_floor, champ_error)
            client = registry.client
            client.set_tag(run_id, "gate.decision", "champion" if decision.promote else "challenger")
            client.set_tag(run_id, "gate.reason", decision.reason)
            client.set_tag(run_id, "registered_version", version)
            if champ_metric is not None:
                client.log_metric(run_id, f"champion.{settings.gate_metric}", champ_metric)
            if decision.promote:
                registry.promote(version, decision.reason)
            else:
                registry.mark_challenger(version, decision.reason)
        except BaseException:
            if version is not None:
                registry.delete_version(version)
            raise
    return TrainResult(run_id, version, metrics, decision, snapshot_id, metrics.get("train_seconds", 0.0),
                       champion_version=version if decision.promote else champ_version)


def train_and_register(
    settings: Settings,
    snapshot: Snapshot,
    parts: dict[str, pd.DataFrame],
    params: BaselineParams | None = None,
    trainer=None,
) -> TrainResult:
    """Train, evaluate, register and gate in one go (the CLI's `train`; Airflow runs the two steps as tasks)."""
    run_id = train_run(settings, snapshot, parts, params, trainer)
    return register_and_gate(settings, run_id, parts["eval"])


def run_pipeline(settings: Settings, corpus: str | Path, params: BaselineParams | None = None,
                 spec: SnapshotSpec | None = None) -> dict:
    """The whole job; returns a JSON-able summary."""
    t0 = time.perf_counter()
    ingested = run_ingest(settings, corpus)
    snapshot, parts = run_snapshot(settings, spec)
    result = train_and_register(settings, snapshot, parts, params)
    out = {
        "ingest": ingested.as_dict(),
        "snapshot": {"id": snapshot.id, "fingerprint": snapshot.fingerprint, "counts": snapshot.counts,
                     "manifest": snapshot.uris.get("manifest")},
        "train": result.summary(),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    log.info("pipeline finished: %s", json.dumps(out["train"]["metrics"]))
    return out

