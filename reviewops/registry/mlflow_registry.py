"""MLflow tracking and the model registry: runs, versions of `review-sentiment`, aliases.

Aliases: `champion` is the version in service; `challenger` the latest version that did not beat
it. Every promotion is appended to the registered model's `champion_history` tag, which
`rollback` walks back.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass

from reviewops.config import Settings, redact_url
from reviewops.errors import ConfigError, RegistryError

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_history"


def configure(settings: Settings) -> None:
    """Point MLflow at the configured tracking server/backend and make sure the experiment exists."""
    import mlflow
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's hints about type hints, integer columns and ambiguous dataset sources are noise here
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
    warnings.filterwarnings("ignore", message=r".*[Tt]ype hint", category=UserWarning)
    # quiet MLflow's own loggers about database migrations on every start
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking._tracking_service.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        settings.home.mkdir(parents=True, exist_ok=True)
    if uri.startswith(("http://", "https://")):
        _probe(uri)  # a dead server fails in seconds, not after MLflow's minutes of retries
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(settings.mlflow_experiment)
        if exp is None:
            artifact_location = settings.mlflow_artifacts if not uri.startswith("http") else None
            try:
                client.create_experiment(settings.mlflow_experiment, artifact_location=artifact_location)
            except MlflowException as exc:  # another task created it a moment ago: fine
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        mlflow.set_experiment(settings.mlflow_experiment)
    except MlflowException as exc:
        raise ConfigError(
            f"MLflow at {redact_url(uri)} (REVIEWOPS_MLFLOW_TRACKING_URI) is unusable: {str(exc).splitlines()[0]}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - connection errors come in many types
        raise ConfigError(
            f"cannot reach MLflow at {redact_url(uri)} (REVIEWOPS_MLFLOW_TRACKING_URI): {type(exc).__name__}"
        ) from None


def _probe(uri: str, attempts: int = 3, timeout: float = 5.0) -> None:
    import time

    import httpx

    problem = ""
    for attempt in range(attempts):
        try:
            resp = httpx.get(f"{uri.rstrip('/')}/health", timeout=timeout)
            if resp.status_code < 500:
                return
            problem = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            problem = type(exc).__name__
        if attempt + 1 < attempts:
            time.sleep(1.0)
    raise ConfigError(f"cannot reach MLflow at {redact_url(uri)} (REVIEWOPS_MLFLOW_TRACKING_URI): {problem}")


@dataclass
class VersionInfo:
    name: str
    version: str
    run_id: str | None
    aliases: list[str]
    tags: dict[str, str]
    created_ms: int | None = None  # when the version was registered (ms since the epoch)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class Registry:
    def __init__(self, settings: Settings) -> None:
        import mlflow

        configure(settings)
        self.settings = settings
        self.name = settings.model_name
        self.client = mlflow.MlflowClient()

    # --- reading -----------------------------------------------------------------------
    def _info(self, mv) -> VersionInfo:
        return VersionInfo(mv.name, str(mv.version), mv.run_id, list(getattr(mv, "aliases", []) or []), dict(mv.tags or {}),
                           getattr(mv, "creation_timestamp", None))

    def run_metrics(self, run_id: str | None) -> dict[str, float]:
        """The summary metrics of a version's training run (no per-slice ones); {} when the run has none
        or cannot be read: they are for display."""
        if not run_id:
            return {}
        try:
            metrics = self.client.get_run(run_id).data.metrics
        except Exception:  # noqa: BLE001 - a missing run or a registry hiccup
            return {}
        return {k: float(v) for k, v in metrics.items() if not k.startswith("slice.")}

    def by_alias(self, alias: str) -> VersionInfo | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self.client.get_model_version_by_alias(self.name, alias))
        except MlflowException:
            return None

    def get(self, version: str | int) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self.client.get_model_version(self.name, str(version)))
        except MlflowException:
            raise RegistryError(f"model {self.name!r} has no version {version}") from None

    def versions(self) -> list[VersionInfo]:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(f"name = '{self.name}'")
            aliases = self.client.get_registered_model(self.name).aliases or {}
        except MlflowException:
            return []
        out = sorted((self._info(mv) for mv in found), key=lambda v: int(v.version))
        for v in out:  # search results do not carry aliases on every backend: the registered model does
            v.aliases = sorted({*v.aliases, *(a for a, ver in aliases.items() if str(ver) == v.version)})
        return out

    def history(self) -> list[str]:
        from mlflow.exceptions import MlflowException

        try:
            tags = self.client.get_registered_model(self.name).tags or {}
        except MlflowException:
            return []
        return json.loads(tags.get(HISTORY_TAG, "[]"))

    # --- writing -----------------------------------------------------------------------
    def tag(self, version: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(self.name, str(version), k, str(v))

    def promote(self, version: str | int, reason: str = "promoted by hand") -> VersionInfo:
        """Give `version` the champion alias (and record it in the history)."""
        info = self.get(version)
        current = self.by_alias(CHAMPION)
        if current and current.version == info.version:
            return info
        self.client.set_registered_model_alias(self.name, CHAMPION, info.version)
        history = self.history() + [info.version]
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history))
        self.tag(info.version, {"gate.decision": "champion", "gate.reason": reason})
        challenger = self.by_alias(CHALLENGER)
        if challenger and challenger.version == info.version:
            self.client.delete_registered_model_alias(self.name, CHALLENGER)
        return self.get(info.version)

    def mark_challenger(self, version: str | int, reason: str) -> VersionInfo:
        self.client.set_registered_model_alias(self.name, CHALLENGER, str(version))
        self.tag(str(version), {"gate.decision": "challenger", "gate.reason": reason})
        return self.get(version)

    def rollback(self) -> tuple[VersionInfo, VersionInfo]:
        """Move the champion back to the version that held it before. Returns (from, to)."""
        current = self.by_alias(CHAMPION)
        if current is None:
            raise RegistryError(f"model {self.name!r} has no champion to roll back")
        history = self.history()
        while history and history[-1] == current.version:
            history.pop()
        if not history:
            raise RegistryError(f"version {current.version} is the first champion of {self.name!r}: nothing to roll back to")
        previous = self.get(history[-1])
        self.client.set_registered_model_alias(self.name, CHAMPION, previous.version)
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history))
        self.tag(current.version, {"gate.decision": "rolled_back", "gate.reason": f"rolled back to {previous.version}"})
        return current, self.get(previous.version)

    def delete_version(self, version: str) -> None:
        try:
            self.client.delete_model_version(self.name, str(version))
        except Exception:  # noqa: BLE001 - best effort cleanup after a failure
            log.warning("could not delete half-registered version %s of %s", version, self.name)
