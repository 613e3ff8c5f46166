"""MLflow tracking and the model registry: runs, versions of `review-sentiment`, aliases.

This package is the only code that talks to MLflow's client and tracking API: every other module asks
`Registry` (versions, aliases, the gate's record, downloads) or `Registry.training_run` (what a training
run logs, see `registry/runs.py`). Two exceptions, by nature: `models/pyfunc.py` (with `pyfunc_entry.py`) is
the model flavour MLflow itself loads, and `mlflow_server.py` runs the `mlflow server` command. MLflow is
configured once per tracking URI and process (`configure`), so a `Registry` is cheap to construct.

Aliases: `champion` is the version in service; `challenger` the latest version that did not beat
it. Every promotion is appended to the registered model's `champion_history` tag, which
`rollback` walks back.

Crash safety: a process working on a run (training it, or registering and gating its model) tags it
with its owner (host, pid namespace, pid and start time) and refreshes a heartbeat tag while it
works; a version is registered already tagged with its owner. `Registry.repair` (run before each
training and by `reviewops init`) uses them to tell work that crashed (`kill -9`, a full disk, a lost
machine) from work still in progress elsewhere: it deletes versions left without a gate decision and
marks runs left `RUNNING` as `FAILED`, recording why.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reviewops.config import Settings, redact_url
from reviewops.errors import ConfigError, ConflictError, NotFoundError
from reviewops.evaluate.cost import COST_TAGS
from reviewops.liveness import abandonment, process_id

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_history"
GATE_TAG = "gate.decision"
# why, for readers in other languages: the decision's code (`evaluate.gate`, or the two below) and, as
# JSON, the figures its English `gate.reason` was written from
REASON_CODE_TAG, REASON_ARGS_TAG = "gate.reason_code", "gate.reason_args"
MANUAL_PROMOTE, ROLLED_BACK = "manual_promote", "rolled_back"
# MLflow 3's UI opens an experiment without this tag on its GenAI overview (traces, prompts); ours holds
# training runs, so it opens on the runs
KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = {KIND_TAG: "custom_model_development"}
OWNER_TAG = "reviewops.owner"  # the process working on a run or registering a version: host/pidns:pid:start
HEARTBEAT_TAG = "reviewops.heartbeat"  # seconds since the epoch, refreshed while that process works
ABANDONED_TAG = "reviewops.abandoned"  # why `repair` found the work abandoned
HEARTBEAT_SECONDS = 30.0
# work on another machine is abandoned after this long without a heartbeat (20 missed beats: far more
# than a slow registry request, far less than a day's schedule)
STALE_AFTER_SECONDS = 600.0
# the tags a version gets from `register_and_gate` before its gate decision: a version without a
# decision and with only these is an interrupted registration; any other is someone's own and kept
_REGISTRATION_TAGS = frozenset({OWNER_TAG, "snapshot_id", "dataset.fingerprint", "trainer"}) | COST_TAGS


# (tracking URI, experiment) → experiment id, for each configuration that succeeded in this process
_configured: dict[tuple[str, str], str] = {}
_configure_lock = threading.Lock()


def configure(settings: Settings) -> str:
    """Point MLflow at the configured tracking server/backend and make sure the experiment exists; returns
    the experiment's id. The work (a probe, warning filters, the experiment) is done once per tracking URI
    and process; a configuration that failed is tried again next time."""
    import mlflow

    key = (settings.tracking_uri, settings.mlflow.experiment)
    with _configure_lock:
        if key not in _configured:
            _configured[key] = _configure(settings)
        elif mlflow.get_tracking_uri() != key[0]:  # another configuration was set since: cheap, no request
            mlflow.set_tracking_uri(key[0])
            mlflow.set_registry_uri(key[0])
        return _configured[key]


def _configure(settings: Settings) -> str:
    import mlflow
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's hints about type hints, integer columns and ambiguous dataset sources are noise here
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
    warnings.filterwarnings("ignore", message=r".*[Tt]ype hint", category=UserWarning)
    # quiet MLflow's own loggers about database migrations on every start, and its note on validating
    # the input example of every model logged (a failed training must end in one line)
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking._tracking_service.utils", "mlflow.pyfunc"):
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
        exp = client.get_experiment_by_name(settings.mlflow.experiment)
        if exp is None:
            artifact_location = settings.mlflow_artifacts if not uri.startswith("http") else None
            try:
                client.create_experiment(settings.mlflow.experiment, artifact_location=artifact_location,
                                         tags=EXPERIMENT_KIND)
            except MlflowException as exc:  # another task created it a moment ago: fine
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        elif exp.tags.get(KIND_TAG) is None:  # created before the kind was set
            client.set_experiment_tag(exp.experiment_id, KIND_TAG, EXPERIMENT_KIND[KIND_TAG])
        return mlflow.set_experiment(settings.mlflow.experiment).experiment_id
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


def _reason_tags(reason: str, code: str, args: dict | None) -> dict[str, str]:
    """The tags of a gate reason: every one is set each time, so none is left from an earlier decision."""
    return {"gate.reason": reason, REASON_CODE_TAG: code, REASON_ARGS_TAG: json.dumps(args or {}, ensure_ascii=False)}


def _heartbeat_ms(tags: dict[str, str]) -> float | None:
    try:
        return float(tags[HEARTBEAT_TAG]) * 1000
    except (KeyError, ValueError):
        return None


@dataclass
class RepairReport:
    versions: dict[str, str] = field(default_factory=dict)  # deleted version → why
    runs: dict[str, str] = field(default_factory=dict)  # run id marked FAILED → why

    def lines(self) -> list[str]:
        return ([f"deleted half-registered version {v}: {why}" for v, why in self.versions.items()]
                + [f"run {r} marked FAILED: {why}" for r, why in self.runs.items()])


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


@dataclass
class RunInfo:
    """What a caller reads from a tracking run: its tags and its latest metrics."""

    run_id: str
    tags: dict[str, str]
    metrics: dict[str, float]


class Registry:
    def __init__(self, settings: Settings) -> None:
        import mlflow

        self._experiment_id = configure(settings)
        self.settings = settings
        self.name = settings.model.name
        uri = settings.tracking_uri
        self._client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)

    def check(self) -> None:
        """Fail in seconds with a ConfigError when a tracking server is down, rather than after MLflow's
        minutes of retries (what a long-lived process asks before each use)."""
        if self.settings.tracking_uri.startswith(("http://", "https://")):
            _probe(self.settings.tracking_uri)

    # --- reading -----------------------------------------------------------------------
    def _info(self, mv) -> VersionInfo:
        return VersionInfo(mv.name, str(mv.version), mv.run_id, list(getattr(mv, "aliases", []) or []),
                           dict(mv.tags or {}), getattr(mv, "creation_timestamp", None))

    def run(self, run_id: str) -> RunInfo:
        """A tracking run's tags and metrics; NotFoundError when there is no such run."""
        from mlflow.exceptions import MlflowException

        try:
            data = self._client.get_run(run_id).data
        except MlflowException:
            raise NotFoundError(f"there is no training run {run_id!r}") from None
        return RunInfo(run_id, dict(data.tags), {k: float(v) for k, v in data.metrics.items()})

    def run_metrics(self, run_id: str | None, slices: bool = False) -> dict[str, float]:
        """The summary metrics of a version's training run (the per-slice ones only with `slices`); {} when
        the run has none or cannot be read: they are for display."""
        if not run_id:
            return {}
        try:
            metrics = self._client.get_run(run_id).data.metrics
        except Exception:  # noqa: BLE001 - a missing run or a registry hiccup
            return {}
        return {k: float(v) for k, v in metrics.items() if slices or not k.startswith("slice.")}

    def by_alias(self, alias: str) -> VersionInfo | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self._client.get_model_version_by_alias(self.name, alias))
        except MlflowException:
            return None

    def get(self, version: str | int) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self._client.get_model_version(self.name, str(version)))
        except MlflowException:
            raise NotFoundError(f"model {self.name!r} has no version {version}") from None

    def versions(self, include_undecided: bool = False) -> list[VersionInfo]:
        """The registered versions, oldest first. A version without a gate decision is being registered
        (or its registration crashed, see `repair`): it is no candidate, and left out unless asked for."""
        from mlflow.exceptions import MlflowException

        try:
            found = self._client.search_model_versions(f"name = '{self.name}'")
            aliases = self._client.get_registered_model(self.name).aliases or {}
        except MlflowException:
            return []
        out = sorted((self._info(mv) for mv in found), key=lambda v: int(v.version))
        for v in out:  # search results do not carry aliases on every backend: the registered model does
            v.aliases = sorted({*v.aliases, *(a for a, ver in aliases.items() if str(ver) == v.version)})
        return [v for v in out if include_undecided or GATE_TAG in v.tags]

    def last_registered_at(self) -> datetime | None:
        """When the newest version with a gate decision was registered (UTC); None before the first. A
        version whose registration crashed is no training and does not count."""
        since = max((v.created_ms for v in self.versions() if v.created_ms is not None), default=None)
        return None if since is None else datetime.fromtimestamp(since / 1000, UTC)

    def history(self) -> list[str]:
        from mlflow.exceptions import MlflowException

        try:
            tags = self._client.get_registered_model(self.name).tags or {}
        except MlflowException:
            return []
        return json.loads(tags.get(HISTORY_TAG, "[]"))

    def download(self, uri: str, dst: str) -> None:
        """Copy a model's files (`models:/name/version`) into the folder `dst`."""
        import mlflow

        configure(self.settings)  # the download resolves `models:/` through the process's registry URI
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst)

    # --- writing -----------------------------------------------------------------------
    def register(self, model_uri: str) -> str:
        """A new version of the model from `model_uri`, created already tagged with this process as its
        owner (one request: a crash cannot leave it anonymous). Returns the version number."""
        import mlflow

        configure(self.settings)  # the fluent call below uses the process's registry URI
        return str(mlflow.register_model(model_uri, self.name, tags={OWNER_TAG: process_id()}).version)

    def record_gate(self, run_id: str, version: str, decision, champion_metric: float | None) -> VersionInfo:
        """Record the gate's `decision` (an `evaluate.gate.GateDecision`) on the training run (decision,
        reason with its code and figures, registered version, the champion's metric when it was scored, the
        candidate's serving cost as run metrics and version tags) and act on it: `version` becomes champion
        or challenger."""
        outcome = "champion" if decision.promote else "challenger"
        if decision.cost is not None:
            self.tag(version, decision.cost.tags())
            for key, value in decision.cost.metrics().items():
                self._client.log_metric(run_id, key, value)
        tags = {GATE_TAG: outcome, **_reason_tags(decision.reason, decision.code, decision.args),
                "registered_version": version}
        for key, value in tags.items():
            self._client.set_tag(run_id, key, value)
        if champion_metric is not None:
            self._client.log_metric(run_id, f"champion.{self.settings.gate.metric}", champion_metric)
        if decision.promote:
            return self.promote(version, decision.reason, decision.code, decision.args)
        return self.mark_challenger(version, decision.reason, decision.code, decision.args)

    def training_run(self, name: str, tags: dict[str, str]):
        """`with registry.training_run(name, tags) as run:` a new tracking run for one training, owned by
        this process while it works (see `registry/runs.py`)."""
        from reviewops.registry.runs import training_run

        return training_run(self, name, tags)

    def tag(self, version: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self._client.set_model_version_tag(self.name, str(version), k, str(v))

    def promote(self, version: str | int, reason: str = "promoted by hand", code: str = MANUAL_PROMOTE,
                args: dict | None = None) -> VersionInfo:
        """Give `version` the champion alias (and record it in the history)."""
        info = self.get(version)
        current = self.by_alias(CHAMPION)
        if current and current.version == info.version:
            return info
        self._client.set_registered_model_alias(self.name, CHAMPION, info.version)
        history = self.history() + [info.version]
        self._client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history))
        self.tag(info.version, {GATE_TAG: "champion", **_reason_tags(reason, code, args)})
        challenger = self.by_alias(CHALLENGER)
        if challenger and challenger.version == info.version:
            self._client.delete_registered_model_alias(self.name, CHALLENGER)
        return self.get(info.version)

    def mark_challenger(self, version: str | int, reason: str, code: str = "", args: dict | None = None) -> VersionInfo:
        self._client.set_registered_model_alias(self.name, CHALLENGER, str(version))
        self.tag(str(version), {GATE_TAG: "challenger", **_reason_tags(reason, code, args)})
        return self.get(version)

    def rollback(self) -> tuple[VersionInfo, VersionInfo]:
        """Move the champion back to the version that held it before. Returns (from, to)."""
        current = self.by_alias(CHAMPION)
        if current is None:
            raise ConflictError(f"model {self.name!r} has no champion to roll back")
        history = self.history()
        while history and history[-1] == current.version:
            history.pop()
        if not history:
            raise ConflictError(f"version {current.version} is the first champion of {self.name!r}: "
                                "nothing to roll back to")
        previous = self.get(history[-1])
        self._client.set_registered_model_alias(self.name, CHAMPION, previous.version)
        self._client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history))
        self.tag(current.version, {GATE_TAG: "rolled_back", **_reason_tags(
            f"rolled back to {previous.version}", ROLLED_BACK, {"to": previous.version})})
        return current, self.get(previous.version)

    def delete_version(self, version: str) -> None:
        try:
            self._client.delete_model_version(self.name, str(version))
        except Exception:  # noqa: BLE001 - best effort cleanup after a failure
            log.warning("could not delete half-registered version %s of %s", version, self.name)

    # --- crash safety ------------------------------------------------------------------------
    def _beat(self, run_id: str) -> None:
        self._client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.0f}")

    @contextmanager
    def keepalive(self, run_id: str) -> Iterator[None]:
        """While the block runs, `run_id` is owned by this process and its heartbeat is refreshed: what lets
        `repair` in another process tell this work from a crashed one."""
        self._client.set_tag(run_id, OWNER_TAG, process_id())
        self._beat(run_id)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_SECONDS):
                try:
                    self._beat(run_id)
                except Exception as exc:  # noqa: BLE001 - a missed beat is harmless; the next one may pass
                    log.debug("heartbeat of run %s not recorded: %s", run_id, exc)

        thread = threading.Thread(target=beat, name=f"heartbeat-{run_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)

    def discard_partial_models(self, run_id: str) -> list[str]:
        """Delete the files and records of the run's logged models that never became READY (a crash or a
        full disk while they were written). Returns their ids."""
        from mlflow.entities import LoggedModelStatus
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        experiment = self._client.get_run(run_id).info.experiment_id
        found = self._client.search_logged_models([experiment], filter_string=f"source_run_id = '{run_id}'")
        discarded = []
        for model in found:
            if model.status == LoggedModelStatus.READY:
                continue
            try:
                get_artifact_repository(model.artifact_location).delete_artifacts()
            except Exception as exc:  # noqa: BLE001 - the record still goes; the files may need a hand
                log.warning("could not delete the files of partial model %s at %s: %s", model.model_id,
                            model.artifact_location, exc)
            self._client.delete_logged_model(model.model_id)
            discarded.append(model.model_id)
        return discarded

    def repair(self, max_age: float = STALE_AFTER_SECONDS) -> RepairReport:
        """Finish what crashed processes left behind (see the module's docstring): versions without a gate
        decision are deleted, runs left RUNNING are marked FAILED with their partial models deleted; the
        reason is recorded on the run (tag `reviewops.abandoned`). Work still in progress is left alone."""
        report = RepairReport()
        for v in self.versions(include_undecided=True):
            why = self._abandoned_version(v, max_age)
            if why:
                self.delete_version(v.version)
                report.versions[v.version] = why
                if v.run_id:
                    self._client.set_tag(v.run_id, ABANDONED_TAG,
                                         f"registration of version {v.version} interrupted: {why}")
        for run in self._running_runs():
            run_id = run.info.run_id
            why = abandonment(run.data.tags.get(OWNER_TAG), _heartbeat_ms(run.data.tags) or run.info.start_time,
                              max_age)
            if why:
                self._client.set_tag(run_id, ABANDONED_TAG, f"found abandoned while RUNNING: {why}")
                self.discard_partial_models(run_id)
                self._client.set_terminated(run_id, "FAILED")
                report.runs[run_id] = why
        for line in report.lines():
            log.warning("registry repair: %s", line)
        return report

    def _abandoned_version(self, v: VersionInfo, max_age: float) -> str | None:
        if GATE_TAG in v.tags or not set(v.tags) <= _REGISTRATION_TAGS | {self.settings.gate.metric}:
            return None
        from mlflow.exceptions import MlflowException

        signs = [v.created_ms]
        if v.run_id:
            try:
                signs.append(_heartbeat_ms(self._client.get_run(v.run_id).data.tags))
            except MlflowException:
                log.info("run %s of version %s is gone: the version's age decides", v.run_id, v.version)
        return abandonment(v.tags.get(OWNER_TAG), max((s for s in signs if s is not None), default=None), max_age)

    def _running_runs(self) -> list:
        experiment = self._client.get_experiment_by_name(self.settings.mlflow.experiment)
        if experiment is None:
            return []
        return list(self._client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'",
                                            max_results=1000))
