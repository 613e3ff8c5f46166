"""Training runs in MLflow: what one training logs (tags, parameters, datasets, metrics, files, the
model), behind a small API so that the jobs name no MLflow function.

    with registry.training_run(f"{trainer.name}-{snapshot.id}", tags) as run:
        run.log_params(...)
        run.log_metrics(...)
        run.log_behaviour(...)
        run.log_model(folder, entry, example, output_example, requirements)

Crash safety: the run is created already tagged with its owner (a kill right after creating it leaves no
anonymous run), is kept alive by the owner's heartbeat while the block runs (`Registry.keepalive`), and
full or read-only storage ends it FAILED, without its partial model files, as one StorageFullError.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from reviewops.errors import StorageFullError
from reviewops.liveness import process_id
from reviewops.registry.mlflow_registry import OWNER_TAG, configure

if TYPE_CHECKING:
    import pandas as pd

    from reviewops.evaluate.behaviour import BehaviourResult
    from reviewops.registry.mlflow_registry import Registry

log = logging.getLogger(__name__)


class TrainingRun:
    """The active tracking run of one training (`Registry.training_run` opens it)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def set_tags(self, tags: dict[str, str]) -> None:
        import mlflow

        mlflow.set_tags(tags)

    def log_params(self, params: dict) -> None:
        import mlflow

        mlflow.log_params(params)

    def log_dataset(self, frame: pd.DataFrame, source: str, name: str, context: str) -> None:
        """Record a dataset the run used (`frame` with `text` and `label` columns, stored at `source`)."""
        import mlflow

        dataset = mlflow.data.from_pandas(frame[["text", "label"]], source=source, name=name, targets="label")
        mlflow.log_input(dataset, context=context)

    def log_dict(self, content: dict, path: str) -> None:
        import mlflow

        mlflow.log_dict(content, path)

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        import mlflow

        mlflow.log_metric(key, value, step=step)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        import mlflow

        mlflow.log_metrics(metrics)

    def log_behaviour(self, result: BehaviourResult) -> None:
        """The behavioural set's metrics (`behaviour.accuracy`, `behaviour.<category>.accuracy`) and every
        case with the model's answer as `behaviour/cases.json`."""
        self.log_metrics(result.metrics())
        self.log_dict(result.table(), "behaviour/cases.json")

    def log_file(self, path: Path) -> None:
        import mlflow

        mlflow.log_artifact(str(path))

    def log_model(self, folder: Path, entry: Path, example: pd.DataFrame, output_example,
                  pip_requirements: list[str]) -> str:
        """Log the model saved in `folder` as the run's pyfunc model (`entry`: the flavour's code); its URI
        is recorded as the run's `model_uri` tag (MLflow 3 keeps a LoggedModel, not run artifacts)."""
        import mlflow
        from mlflow.models import infer_signature

        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(entry),
            artifacts={"model": str(folder)},
            signature=infer_signature(example, output_example),
            input_example=example,
            pip_requirements=pip_requirements,
        )
        mlflow.set_tag("model_uri", info.model_uri)
        return info.model_uri


@contextmanager
def training_run(registry: Registry, name: str, tags: dict[str, str]) -> Iterator[TrainingRun]:
    """A new run in the registry's experiment, owned by this process and kept alive while the block runs;
    it ends FINISHED, or FAILED when the block raises."""
    import mlflow

    experiment_id = configure(registry.settings)
    with (mlflow.start_run(run_name=name, experiment_id=experiment_id, tags={OWNER_TAG: process_id()}) as run,
          registry.keepalive(run.info.run_id), _full_storage_fails(registry, run.info.run_id)):
        mlflow.set_tags(tags)
        yield TrainingRun(run.info.run_id)


@contextmanager
def _full_storage_fails(registry: Registry, run_id: str) -> Iterator[None]:
    """Full or read-only storage ends the block as one StorageFullError, the run's partial model files
    deleted (the run itself ends FAILED as the exception leaves `mlflow.start_run`)."""
    try:
        yield
    except OSError as exc:
        full = StorageFullError.from_os_error(exc, f"training run {run_id} stopped, "
                                                   "storage is full or read-only")
        if full is None:
            raise
        try:
            registry.discard_partial_models(run_id)
        except Exception as cleanup:  # noqa: BLE001 - the storage error is the one to report
            log.warning("partial model files of run %s not deleted: %s", run_id, cleanup)
        raise full from None
