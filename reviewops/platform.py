"""Airflow on one machine without Docker: its environment, its database, and one DAG run in process.

`reviewops dag test` and `make demo` run a DAG with `dag.test()` (every task in this process, no
scheduler); `make up` starts `airflow standalone` with the same environment. Variables already set
in the environment win, so compose and operators can override any of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from reviewops.config import Settings
from reviewops.errors import ConfigError, ReviewOpsError

ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = ROOT / "airflow" / "dags"
DAG_IDS = ("reviews_collect", "reviews_score", "sentiment_train", "model_monitor")


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
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Asia/Seoul",
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "REVIEWOPS_HOME": str(settings.home),
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
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
        raise ReviewOpsError("DAG import errors:\n" + "\n".join(f"{k}: {v}" for k, v in bag.import_errors.items()))
    dag = bag.get_dag(dag_id)
    run = dag.test(run_conf=conf)
    tasks = sorted(
        ({"task": ti.task_id, "map_index": ti.map_index, "state": str(ti.state), "tries": ti.try_number}
         for ti in run.get_task_instances()),
        key=lambda t: (t["task"], t["map_index"]),
    )
    return {"dag_id": dag_id, "run_id": run.run_id, "state": str(run.state), "tasks": tasks}
