"""`make up` (`reviewops up`): the whole platform on one machine, no Docker, for development and demos.

Each service is a `reviewops` command in its own process group with its log under REVIEWOPS_HOME/logs:
the MLflow server, the test site and the Slack stand-in (when the real sites and Slack are out of
reach), the API, the app, `airflow standalone` and nginx in front. Compose runs the same commands.
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

from reviewops.config import PORTS, Settings
from reviewops.errors import ConfigError
from reviewops.platform import airflow_env, init_platform


@dataclass
class Service:
    name: str
    argv: list[str]
    url: str
    health: str  # URL that answers 200 once the service is up
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None


def platform_services(settings: Settings, ports: dict[str, int], test_site: bool,
                      slack_standin: bool) -> list[Service]:
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
    mlflow_argv = [ro, "mlflow-server", "--host", host, "--port", str(ports["mlflow"]), "--workers", "1",
                   "--static-prefix", "/mlflow"]
    services = [Service("mlflow", mlflow_argv, f"{public}/mlflow/", f"{mlflow_url}/health")]
    task_env = {"REVIEWOPS_MLFLOW_TRACKING_URI": mlflow_url, "REVIEWOPS_MLFLOW_UI_URL": f"{public}/mlflow"}
    if test_site:
        site = f"http://{host}:{ports['testsite']}"
        site_argv = [ro, "testsite", "--host", host, "--port", str(ports["testsite"])]
        services.append(Service("testsite", site_argv, site, f"{site}/_control/state"))
        task_env |= {"REVIEWOPS_CGV_BASE_URL": site, "REVIEWOPS_MEGABOX_BASE_URL": site,
                     "REVIEWOPS_CRAWL_DELAY": os.environ.get("REVIEWOPS_CRAWL_DELAY", "0.2")}
    if slack_standin:
        slack = f"http://{host}:{ports['slack']}"
        slack_argv = [ro, "slack-standin", "--port", str(ports["slack"]), "--log-file",
                      str(settings.home / "slack-standin.jsonl")]
        services.append(Service("slack-standin", slack_argv, slack, f"{slack}/messages"))
        from reviewops.devtools.slack_standin import standin_env

        task_env |= standin_env(slack)
    base = airflow_env(settings) | task_env
    services.append(Service("api", [ro, "serve", "--host", host, "--port", str(ports["api"])],
                            f"{public}/api/", f"{api_url}/healthz", base))
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
    upstreams = [arg for name in proxy.UPSTREAMS for arg in (f"--{name}", str(ports[name]))]
    services.append(Service("nginx", [ro, "proxy", "--listen", f"{host}:{ports['proxy']}", *upstreams],
                            f"{public}/", f"{public}/_proxy/health"))
    return services


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


def up(settings: Settings, ports: dict[str, int] | None = None, test_site: bool = True,
       slack_standin: bool = True, timeout: float = 180.0, echo=print,
       bootstrap: bool = False) -> list[Service]:
    """Start the platform; return the running services (stop them with `stop`)."""
    ports = PORTS | (ports or {})
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


