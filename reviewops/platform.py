"""Airflow on one machine without Docker: its environment, its database, and one DAG run in process.

`reviewops dag test` and `make demo` run a DAG with `dag.test()` (every task in this process, no
scheduler); `make up` starts `airflow standalone` with the same environment. Variables already set
in the environment win, so compose and operators can override any of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from reviewops.config import Settings
from reviewops.errors import ConfigError, ReviewOpsError

ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = ROOT / "airflow" / "dags"
SAMPLE = ROOT / "data" / "sample" / "reviews.sample.jsonl.gz"
DEFAULT_PORTS = {"proxy": 8088, "api": 8000, "streamlit": 8501, "mlflow": 5000, "airflow": 8080, "testsite": 8800,
                 "slack": 8802}
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
        ({"task": ti.task_id, "map_index": ti.map_index, "label": getattr(ti, "rendered_map_index", None),
          "state": str(ti.state), "tries": ti.try_number}
         for ti in run.get_task_instances()),
        key=lambda t: (t["task"], t["map_index"]),
    )
    return {"dag_id": dag_id, "run_id": run.run_id, "state": str(run.state), "tasks": tasks}


# --- `make up`: the whole platform on this machine, no Docker ------------------------------------------


@dataclass
class Service:
    name: str
    argv: list[str]
    url: str
    health: str  # URL that answers 200 once the service is up
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None


def platform_services(settings: Settings, ports: dict[str, int], test_site: bool, slack_standin: bool) -> list[Service]:
    """The processes `make up` runs, with the environment each one needs. The DAGs' tasks inherit
    Airflow's: they talk to the MLflow server, the test site (when the real sites are not configured)
    and the Slack stand-in (when no Slack is configured). nginx is the front door: `/` the app,
    `/api/` the API, `/mlflow/` and `/airflow/` behind basic auth."""
    from reviewops import proxy

    ro = str(Path(sys.executable).with_name("reviewops"))
    host = "127.0.0.1"
    public = f"http://{host}:{ports['proxy']}"
    mlflow_url = f"http://{host}:{ports['mlflow']}/mlflow"  # served under the prefix nginx forwards as is
    api_url = f"http://{host}:{ports['api']}"
    services = [Service("mlflow", [ro, "mlflow-server", "--host", host, "--port", str(ports["mlflow"]), "--workers", "1",
                                   "--static-prefix", "/mlflow"], f"{public}/mlflow/", f"{mlflow_url}/health")]
    task_env = {"REVIEWOPS_MLFLOW_TRACKING_URI": mlflow_url, "REVIEWOPS_MLFLOW_UI_URL": f"{public}/mlflow"}
    if test_site:
        site = f"http://{host}:{ports['testsite']}"
        services.append(Service("testsite", [ro, "testsite", "--host", host, "--port", str(ports["testsite"])],
                                site, f"{site}/_control/state"))
        task_env |= {"REVIEWOPS_CGV_BASE_URL": site, "REVIEWOPS_MEGABOX_BASE_URL": site,
                     "REVIEWOPS_CRAWL_DELAY": os.environ.get("REVIEWOPS_CRAWL_DELAY", "0.2")}
    if slack_standin:
        slack = f"http://{host}:{ports['slack']}"
        services.append(Service("slack-standin", [ro, "slack-standin", "--port", str(ports["slack"]), "--log-file",
                                                  str(settings.home / "slack-standin.jsonl")], slack, f"{slack}/messages"))
        from reviewops.notify.standin import standin_env

        task_env |= standin_env(slack)
    base = airflow_env(settings) | task_env
    services.append(Service("api", [ro, "serve", "--host", host, "--port", str(ports["api"])], f"{public}/api/",
                            f"{api_url}/healthz", base))
    services.append(Service("app", [ro, "app", "--host", host, "--port", str(ports["streamlit"])],
                            f"{public}/", f"http://{host}:{ports['streamlit']}/_stcore/health",
                            base | {"REVIEWOPS_API_URL": api_url}))
    airflow_url = f"http://{host}:{ports['airflow']}"
    env = dict(base)
    for key, value in {"AIRFLOW__API__PORT": str(ports["airflow"]), "AIRFLOW__API__HOST": host,
                       "AIRFLOW__API__BASE_URL": f"{public}/airflow",
                       # tasks talk to the api-server directly, not through the proxy's basic auth
                       "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{airflow_url}/airflow/execution/",
                       "AIRFLOW__API__WORKERS": "1", "AIRFLOW__CORE__PARALLELISM": "4",
                       "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False"}.items():
        env.setdefault(key, value)
    services.append(Service("airflow", [ro, "airflow", "standalone"],
                            f"{public}/airflow/", f"{airflow_url}/airflow/api/v2/monitor/health", env))
    # the same command the compose file's nginx service runs, with local upstreams
    services.append(Service("nginx", [ro, "proxy", "--listen", f"{host}:{ports['proxy']}",
                                      *(arg for name in proxy.UPSTREAMS for arg in (f"--{name}", str(ports[name])))],
                            f"{public}/", f"{public}/_proxy/health"))
    return services


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
        echo(f"empty review store: ingested {added:,} reviews of the bundled sample as history for the first training")
    return added


def wait_healthy(service: Service, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc is not None and service.proc.poll() is not None:
            raise ConfigError(f"{service.name} exited with code {service.proc.returncode} while starting; "
                              f"see {service.name}.log")
        try:
            if httpx.get(service.health, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ConfigError(f"{service.name} did not answer at {service.health} within {timeout:.0f}s")


def stop(services: list[Service], grace: float = 20.0) -> None:
    """SIGTERM each service's process group (children included), wait until every process of the group is
    gone, then SIGKILL what is left."""
    groups = [s.proc.pid for s in reversed(services) if s.proc is not None]
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for s in services:
        if s.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                s.proc.wait(max(0.1, deadline - time.monotonic()))
    while time.monotonic() < deadline and any(_group_alive(g) for g in groups):
        time.sleep(0.2)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    for s in services:
        if s.proc is not None:
            s.proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def up(settings: Settings, ports: dict[str, int] | None = None, test_site: bool = True, slack_standin: bool = True,
       timeout: float = 180.0, echo=print, bootstrap: bool = False) -> list[Service]:
    """Start the platform; return the running services (stop them with `stop`)."""
    ports = DEFAULT_PORTS | (ports or {})
    services = platform_services(settings, ports, test_site, slack_standin)
    init_platform(settings, bootstrap=bootstrap, echo=echo)
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        for s in services:
            with open(logs / f"{s.name}.log", "ab") as log_file:
                s.proc = subprocess.Popen(s.argv, env=s.env or airflow_env(settings), stdout=log_file,
                                          stderr=subprocess.STDOUT, start_new_session=True)
            echo(f"starting {s.name} (log: {logs / (s.name + '.log')})")
        for s in services:
            wait_healthy(s, timeout)
    except BaseException:
        stop(services)
        raise
    return services


def bootstrap_history(settings: Settings) -> int:
    """Ingest the bundled sample when the review store holds no labelled review; returns how many were added."""
    from sqlalchemy import func, select

    from reviewops.pipeline import run_ingest
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
