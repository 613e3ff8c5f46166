"""Airflow for the platform: its environment, its metadata database, one DAG run in process, and what
must exist before the services start (`init_platform`).

`reviewops dag test` and `make demo` run a DAG with `dag.test()` (every task in this process, no
scheduler); compose and the one-machine launcher (`reviewops.devtools.launcher`, `make up`) start
Airflow's services with the same environment. Variables already set in the environment win, so compose
and operators can override any of them. The DAG files ship with the package (`reviewops.resources`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from reviewops.config import TIMEZONE, Settings
from reviewops.errors import ConfigError, ReviewOpsError
from reviewops.resources import dags_folder, sample_corpus

DAGS_FOLDER = dags_folder()
SAMPLE = sample_corpus()
DAG_IDS = ("reviews_collect", "reviews_score", "sentiment_train", "model_monitor")
ALL_ADMINS = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"


def airflow_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Airflow and its tasks run with: its home under REVIEWOPS_HOME, our DAGs, no examples,
    DAGs unpaused, and the venv's bin first on PATH (standalone starts `airflow` subcommands by name)."""
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    defaults = {
        "AIRFLOW_HOME": str(settings.home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": TIMEZONE,
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "REVIEWOPS_HOME": str(settings.home),
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    if env.get(ALL_ADMINS, "").strip().lower() in ("true", "1", "t", "yes"):
        # nginx puts no basic auth in front of /airflow/: Airflow's own login is its only lock
        raise ConfigError(f"{ALL_ADMINS} is set: Airflow would let anyone in as admin (through nginx too); "
                          "unset it")
    if bin_dir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


def migrate_airflow_db(env: dict[str, str]) -> None:
    """Create or upgrade Airflow's metadata database (idempotent, a few seconds)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ConfigError(f"airflow db migrate failed (AIRFLOW_HOME={env['AIRFLOW_HOME']}):\n{tail}")


def test_dag(settings: Settings, dag_id: str, conf: dict | None = None) -> dict:
    """Run one DAG end to end in this process with `dag.test()`; returns its state and each task's.

    Airflow reads its configuration when first imported, so the environment is set before that.
    """
    if dag_id not in DAG_IDS:
        raise ConfigError(f"unknown DAG {dag_id!r} (known: {', '.join(DAG_IDS)})")
    env = airflow_env(settings)
    env.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")  # the task table says what happened
    migrate_airflow_db(env)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AIRFLOW", "REVIEWOPS_HOME"))})
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        errors = "\n".join(f"{k}: {v}" for k, v in bag.import_errors.items())
        raise ReviewOpsError(f"DAG import errors:\n{errors}")
    dag = bag.get_dag(dag_id)
    with _mlflow_notices_hidden():
        run = dag.test(run_conf=conf)
    tasks = sorted(
        ({"task": ti.task_id, "map_index": ti.map_index, "label": getattr(ti, "rendered_map_index", None),
          "state": str(ti.state), "tries": ti.try_number}
         for ti in run.get_task_instances()),
        key=lambda t: (t["task"], t["map_index"]),
    )
    return {"dag_id": dag_id, "run_id": run.run_id, "state": str(run.state), "tasks": tasks}


@contextlib.contextmanager
def _mlflow_notices_hidden() -> Iterator[None]:
    """The tasks run in this process, where MLflow prints notices to stderr ("Successfully registered model
    ...", "Created version ...", INFO lines); the task table says what happened. MLflow's warnings and
    errors still reach stderr. (MLflow's own switch, `disable_logging`, is switched back on by its
    autologging wrappers: its stream drops the notices here instead, and its logger writes to stderr.)"""
    from mlflow.utils import logging_utils

    stream = logging_utils.MLFLOW_LOGGING_STREAM
    logger = logging.getLogger("mlflow")
    level = logger.level
    handlers = [h for h in logger.handlers if isinstance(h, logging.StreamHandler) and h.stream is stream]
    for handler in handlers:
        handler.setStream(sys.stderr)
    logger.setLevel(logging.WARNING)
    stream.write = len  # what still writes to MLflow's stream is `eprint`: a notice, dropped
    try:
        yield
    finally:
        del stream.write
        logger.setLevel(level)
        for handler in handlers:
            handler.setStream(stream)


def init_platform(settings: Settings, bootstrap: bool = True, echo=print) -> int:
    """What must exist before the services start, idempotent: the review store's schema, Airflow's
    metadata database, and (with `bootstrap`) the bundled sample as history when the store has no
    labelled review. `make up` and the compose file's `init` service (`reviewops init`) both run it.
    Returns how many reviews the bootstrap added."""
    from reviewops.store import db

    db.upgrade(settings.db_url)
    echo("review store: schema up to date")
    migrate_airflow_db(airflow_env(settings))
    echo("airflow: metadata database up to date")
    added = bootstrap_history(settings) if bootstrap else 0
    if added:
        echo(f"empty review store: ingested {added:,} reviews of the bundled sample as history for the first "
             "training")
    return added


def bootstrap_history(settings: Settings) -> int:
    """Ingest the bundled sample when the review store holds no labelled review; returns how many were
    added."""
    from sqlalchemy import func, select

    from reviewops.jobs.train import run_ingest
    from reviewops.store.db import sessions
    from reviewops.store.models import Review

    with sessions(settings)() as s:
        if s.scalar(select(func.count(Review.id)).where(Review.label.is_not(None))):
            return 0
    return run_ingest(settings, settings.corpus or SAMPLE).new


def airflow_password_file(settings: Settings) -> Path:
    env = airflow_env(settings)
    return Path(env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
                or Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated")
