"""The training job: ingest → clean → snapshot → train → evaluate → register → gate → report.

Each stage is one function the CLI, the Airflow tasks and `make demo` call; `run_pipeline` is the whole
job in one process. MLflow is reached only through `Registry` (and its `training_run`).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from reviewops.config import Settings
from reviewops.data.ingest import IngestSummary, ingest
from reviewops.data.labels import LabelPolicy
from reviewops.data.snapshot import COLUMNS, NEUTRAL, Snapshot, SnapshotSpec, build_snapshot, read_split
from reviewops.errors import ReviewOpsError
from reviewops.evaluate import behaviour
from reviewops.evaluate.cost import ServingCost, measure
from reviewops.evaluate.gate import GateDecision, ServingBudget, decide
from reviewops.evaluate.metrics import confusion_png, evaluate
from reviewops.models.baseline import BaselineParams
from reviewops.registry.mlflow_registry import CHAMPION, Registry
from reviewops.registry.runs import TrainingRun
from reviewops.store import db, queries
from reviewops.store.objects import open_store
from reviewops.text.clean import Cleaner

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "eval", NEUTRAL)  # what training reads of a snapshot
PYFUNC_ENTRY = Path(__file__).parent.parent / "models" / "pyfunc_entry.py"


def run_ingest(settings: Settings, path: str | Path, source: str | None = None) -> IngestSummary:
    return ingest(path, db.sessions(settings), Cleaner.from_settings(settings),
                  LabelPolicy.from_settings(settings), source=source)


def run_snapshot(settings: Settings,
                 spec: SnapshotSpec | None = None) -> tuple[Snapshot, dict[str, pd.DataFrame]]:
    spec = spec or SnapshotSpec.from_settings(settings)
    store = open_store(settings.artifacts, settings.s3_endpoint_url)
    with db.sessions(settings)() as session:
        return build_snapshot(session, store, spec, LabelPolicy.from_settings(settings).version,
                              Cleaner.from_settings(settings))


def load_snapshot(settings: Settings, snapshot_id: str) -> tuple[Snapshot, dict[str, pd.DataFrame]]:
    """A stored snapshot's manifest and the splits training reads (what another task wrote)."""
    store = open_store(settings.artifacts, settings.s3_endpoint_url)
    snap = Snapshot(**json.loads(store.get(f"snapshots/{snapshot_id}/manifest.json")))
    # a snapshot written before the neutral part existed has none: an empty one
    return snap, {name: read_split(store, snapshot_id, name) if name in snap.uris else pd.DataFrame(columns=COLUMNS)
                  for name in SPLITS}


def train_due(settings: Settings, run_type: str) -> dict:
    """Whether this run trains: a scheduled or manual run always does; a run started by new reviews
    only when `retrain_min_new_labels` labelled reviews arrived since the newest registered version."""
    kind = str(getattr(run_type, "value", run_type))  # Airflow passes its DagRunType enum: "manual", ...
    if "asset" not in kind.lower():
        return {"due": True, "reason": f"{kind} run: always trains"}
    since = Registry(settings).last_registered_at()
    with db.sessions(settings)() as session:
        new = queries.count_labelled_since(session, since)
    due = new >= settings.retrain_min_new_labels
    reason = (f"{new:,} new labelled reviews since the last training "
              f"({'at least' if due else 'fewer than'} {settings.retrain_min_new_labels:,})")
    return {"due": due, "reason": reason, "new_labels": new}


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
        return champion.version, evaluate(eval_df, score)[registry.settings.gate.metric], None
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
    registry = Registry(settings)
    repair_registry(registry)
    return _train_run(registry, trainer, snapshot, parts)


def repair_registry(registry: Registry) -> None:
    """Clean up what crashed runs left (see `Registry.repair`); a failure here never stops the caller."""
    try:
        registry.repair()
    except Exception as exc:  # noqa: BLE001 - the repair is housekeeping; the next run tries again
        log.warning("registry repair skipped: %s: %s", type(exc).__name__, str(exc).splitlines()[0][:300])


def _train_run(registry: Registry, trainer, snapshot: Snapshot, parts: dict[str, pd.DataFrame]) -> str:
    train, valid, eval_df = parts["train"], parts["valid"], parts["eval"]
    tags = {"trainer": trainer.name, "snapshot_id": snapshot.id, "dataset.fingerprint": snapshot.fingerprint,
            "cleaning_version": ",".join(snapshot.cleaning_versions)}
    with registry.training_run(f"{trainer.name}-{snapshot.id}", tags) as run:
        run.log_params(trainer.log_params())
        run.log_params({"snapshot.id": snapshot.id, "snapshot.label_policy": snapshot.label_policy,
                        **{f"snapshot.rows.{k}": v["rows"] for k, v in snapshot.counts.items()}})
        for name, df in (("train", train), ("eval", eval_df)):
            run.log_dataset(df, snapshot.uris[name], f"{snapshot.id}-{name}",
                            "training" if name == "train" else "evaluation")
        run.log_dict(snapshot.manifest(), "snapshot/manifest.json")

        t0 = time.perf_counter()
        model = trainer.fit(parts, snapshot.id, run.log_metric)
        train_seconds = time.perf_counter() - t0
        score = model.predict_proba(eval_df["text"].tolist())
        metrics = evaluate(eval_df, score)
        metrics["train_seconds"] = train_seconds
        if len(valid):
            valid_metrics = evaluate(valid, model.predict_proba(valid["text"].tolist()))
            metrics.update({f"valid.{k}": v for k, v in valid_metrics.items() if not k.startswith("slice.")})
        run.log_metrics(metrics)
        run.log_behaviour(behaviour.score(model.predict_proba))  # the hand-written hard cases
        _log_model(run, trainer, model, snapshot, eval_df, score)
    return run.run_id


def _log_model(run: TrainingRun, trainer, model, snapshot: Snapshot, eval_df: pd.DataFrame, score) -> None:
    """The confusion matrix, the model with its exports (ONNX for the transformer) and their checks."""
    from reviewops.models.pyfunc import SentimentPyfunc

    with tempfile.TemporaryDirectory(prefix="reviewops-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "confusion_matrix.png").write_bytes(
            confusion_png(eval_df["label"].to_numpy(), score, f"eval {snapshot.id} (n={len(eval_df):,})"))
        run.log_file(tmp / "confusion_matrix.png")
        folder = model.save(tmp / "model")
        exported = trainer.export(model, folder, eval_df["text"].tolist())
        if exported:
            run.log_metrics(exported)
        example = pd.DataFrame({"text": ["정말 재밌어요 강추합니다", "시간 아까운 영화"]})
        run.log_model(folder, PYFUNC_ENTRY, example, SentimentPyfunc.output_example(),
                      _pip_requirements(trainer.packages))


def register_and_gate(settings: Settings, run_id: str, eval_df: pd.DataFrame | None = None) -> TrainResult:
    """Register a training run's model as a new version and apply the gate: promote it to champion when
    it beats the champion (scored now on the same evaluation set), otherwise keep it as challenger.
    A failure after registration deletes the new version: no half-registered model is left behind (a
    crash leaves its owner tag and a stopped heartbeat, from which `Registry.repair` deletes it)."""
    registry = Registry(settings)
    run = registry.run(run_id)
    snapshot_id = run.tags.get("snapshot_id", "")
    if eval_df is None:
        eval_df = read_split(open_store(settings.artifacts, settings.s3_endpoint_url), snapshot_id, "eval")
    metrics = run.metrics
    if settings.gate.metric not in metrics:
        raise ReviewOpsError(f"run {run_id} has no {settings.gate.metric!r} metric: "
                             "not a finished training run")
    version: str | None = None
    with registry.keepalive(run_id):  # a crash from here on is found and cleaned up by `Registry.repair`
        try:
            version = registry.register(run.tags.get("model_uri", f"runs:/{run_id}/model"))
            registry.tag(version, {"snapshot_id": snapshot_id,
                                   "dataset.fingerprint": run.tags.get("dataset.fingerprint", ""),
                                   "trainer": run.tags.get("trainer", ""),
                                   settings.gate.metric: f"{metrics[settings.gate.metric]:.6f}"})
            champ_version, champ_metric, champ_error = _score_champion(registry, eval_df)
            budget = ServingBudget(settings.gate.min_batch_reviews_per_second, settings.gate.max_single_p99_ms)
            cost = _serving_cost(registry, version, eval_df, budget)
            decision = decide(settings.gate.metric, metrics[settings.gate.metric], champ_metric,
                              settings.gate.margin, settings.gate.floor, champ_error, cost, budget)
            registry.record_gate(run_id, version, decision, champ_metric)
        except BaseException:
            if version is not None:
                registry.delete_version(version)
            raise
    return TrainResult(run_id, version, metrics, decision, snapshot_id, metrics.get("train_seconds", 0.0),
                       champion_version=version if decision.promote else champ_version)


def _serving_cost(registry: Registry, version: str, eval_df: pd.DataFrame, budget: ServingBudget) -> ServingCost:
    """The new version's CPU cost on the evaluation texts, loaded exactly as the API would serve it (the
    registry's copy, the backend `load_for_serving` picks: a transformer's ONNX int8 export on CPU),
    measured again while it is outside the `budget`."""
    from reviewops.models.loading import find_model_folder, load_for_serving
    from reviewops.text import morphemes

    morphemes.clear_cache()  # a morpheme model's cost is analysing the texts, not finding them where training left them
    with tempfile.TemporaryDirectory(prefix="reviewops-cost-") as tmpdir:
        registry.download(registry.get(version).uri, tmpdir)
        backend, model = load_for_serving(find_model_folder(Path(tmpdir)), registry.settings.serve.prefer_onnx)
        texts, seconds = eval_df["text"].tolist(), registry.settings.gate.cost_seconds
        cost = budget.confirmed(lambda: measure(model.predict_proba, texts, seconds=seconds))
    log.info("version %s (%s) serving cost: %s", version, backend, cost.as_dict())
    return cost


def train_and_register(
    settings: Settings,
    snapshot: Snapshot,
    parts: dict[str, pd.DataFrame],
    params: BaselineParams | None = None,
    trainer=None,
) -> TrainResult:
    """Train, evaluate, register and gate in one go (the CLI's `train`; Airflow runs the two steps as
    tasks)."""
    run_id = train_run(settings, snapshot, parts, params, trainer)
    return register_and_gate(settings, run_id, parts["eval"])


def report_training(settings: Settings, summary: dict) -> None:
    """The training's result to Slack: version, metrics, the gate's decision, a link to MLflow."""
    from reviewops.notify.slack import Notifier, training_report

    Notifier(settings).send(*training_report(summary, settings.mlflow.ui_url))


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
