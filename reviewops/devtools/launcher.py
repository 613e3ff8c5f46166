"""`make up` (`reviewops up`): the whole platform on one machine, no Docker, for development and demos.

Each service is a `reviewops` command in its own process group with its log under REVIEWOPS_HOME/logs:
the MLflow server, the test site and the Slack stand-in (when the real sites and Slack are out of
reach), the API, the app, `airflow standalone` and nginx in front. Compose runs the same commands.

Secrets are made once and kept, readable only by their owner, under REVIEWOPS_HOME: the proxy's password
(nginx/proxy-password), which is also Airflow's admin password, so one login opens /mlflow/ and /airflow/,
and, when REVIEWOPS_ADMIN_TOKEN is not set, the API's admin token (admin-token).

Stopping: the first SIGTERM, SIGINT or SIGHUP stops every service; any later one is ignored, so the
signals a terminal or a supervisor sends to the whole process group (`make` passes its own on to us as
well) cannot interrupt the stopping and leave services running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from reviewops.config import PORTS, Settings
from reviewops.errors import ConfigError
from reviewops.platform import airflow_env, airflow_password_file, init_platform

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
ADMIN_TOKEN_FILE = "admin-token"  # under REVIEWOPS_HOME


@dataclass
class Service:
    name: str
    argv: list[str]
    url: str
    health: str  # URL that answers 200 once the service is up
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None


def platform_services(settings: Settings, ports: dict[str, int], test_site: bool,
                      slack_standin: bool, admin_token: str | None = None) -> list[Service]:
    """The processes `make up` runs, with the environment each one needs. The DAGs' tasks inherit
    Airflow's: they talk to the MLflow server, the test site (when the real sites are not configured)
    and the Slack stand-in (when no Slack is configured). nginx is the front door: `/` the app,
    `/api/` the API (`admin_token`: its REVIEWOPS_ADMIN_TOKEN when the environment has none),
    `/mlflow/` behind basic auth, `/airflow/` behind Airflow's login."""
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
    api_env = base | ({"REVIEWOPS_ADMIN_TOKEN": admin_token} if admin_token else {})
    services.append(Service("api", [ro, "serve", "--host", host, "--port", str(ports["api"])],
                            f"{public}/api/", f"{api_url}/healthz", api_env))
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
    gone, then SIGKILL what is left. Stop signals reaching this process meanwhile are ignored: stopping
    is never cut short."""
    with _stop_signals_ignored():
        _stop(services, grace)


def _stop(services: list[Service], grace: float) -> None:
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


@contextlib.contextmanager
def _stop_signals_ignored():
    if threading.current_thread() is not threading.main_thread():  # only the main thread sets handlers
        yield
        return
    before = {sig: signal.signal(sig, _ignore) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _ignore(signum, frame) -> None:
    """A stop signal while stopping: nothing to do. A handler rather than SIG_IGN: a signal that arrived
    just before the switch is then delivered here, where with SIG_IGN CPython prints a traceback ("Signal 15
    ignored due to race condition")."""


def stop_on_signals() -> None:
    """The first SIGTERM, SIGINT or SIGHUP raises KeyboardInterrupt (so `finally` blocks stop the services);
    the handler ignores every later one at once, before Python could deliver another."""

    def first(signum, frame):
        for sig in STOP_SIGNALS:
            signal.signal(sig, _ignore)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, first)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start(services: list[Service], logs: Path, env: dict[str, str], timeout: float = 180.0,
          echo=print) -> list[Service]:
    """Start each service in its own session (`env`: for those without their own), logging to
    `logs/<name>.log`, and wait until each answers its health URL; on any failure (or a stop signal) stop
    what was started and raise."""
    logs.mkdir(parents=True, exist_ok=True)
    try:
        for s in services:
            with open(logs / f"{s.name}.log", "ab") as log_file:
                s.proc = subprocess.Popen(s.argv, env=s.env or env, stdout=log_file,
                                          stderr=subprocess.STDOUT, start_new_session=True)
            echo(f"starting {s.name} (log: {logs / (s.name + '.log')})")
        for s in services:
            wait_healthy(s, timeout)
    except BaseException:
        stop(services)
        raise
    return services


def supervise(services: list[Service], echo=print, announce=None) -> list[str]:
    """`announce()` (say where things are), then wait until a service exits or a stop signal arrives (see
    `stop_on_signals`), then stop them all. Returns the names of the services that exited by themselves
    ([] after a stop signal)."""
    try:
        if announce is not None:
            announce()
        while all(s.proc.poll() is None for s in services):
            time.sleep(0.5)
        return [s.name for s in services if s.proc.poll() is not None]
    except KeyboardInterrupt:
        return []
    finally:
        with _stop_signals_ignored():
            with contextlib.suppress(OSError):  # a closed terminal must not keep the services running
                echo("stopping...")
            _stop(services, 20.0)


def admin_token(settings: Settings) -> tuple[str | None, Path | None]:
    """The API's admin token for `make up`: `(None, None)` when REVIEWOPS_ADMIN_TOKEN is set (the API reads
    it itself), else a generated one and the file (mode 0600) that keeps it across restarts."""
    if settings.admin_token is not None:
        return None, None
    from reviewops.proxy import ensure_secret

    path = settings.home / ADMIN_TOKEN_FILE
    return ensure_secret(path, 24), path


def share_airflow_password(settings: Settings, password: str) -> Path | None:
    """Make `password` Airflow's admin password (one login for /mlflow/ and /airflow/): Airflow's simple
    auth manager keeps the passwords it generated in a JSON file and uses the one found there. Left alone
    when the operator named their own file (AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE)."""
    if os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"):
        return None
    from reviewops.proxy import write_private

    path = airflow_password_file(settings)
    write_private(path, json.dumps({"admin": password}) + "\n")
    return path


def access(settings: Settings, proxy_port: int) -> str:
    """What `make up` tells its user once the platform answers: where to open it, where each login's
    secret is (paths only, never a secret), the logs."""
    from reviewops.proxy import ensure_credentials

    user, _, _, password_file = ensure_credentials(settings.home / "nginx")
    airflow = airflow_password_file(settings)
    shared = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE") is None
    logins = (f"Login for /mlflow/ and /airflow/: {user}; the password is in {password_file}" if shared else
              f"Login for /mlflow/: {user}, password in {password_file}; /airflow/: Airflow's users, in {airflow}")
    token = ("API admin token: REVIEWOPS_ADMIN_TOKEN (from the environment)" if settings.admin_token is not None
             else f"API admin token (admin actions in the app, POST /api/v1/admin/...): in "
                  f"{settings.home / ADMIN_TOKEN_FILE}")
    return (f"Open the platform at http://127.0.0.1:{proxy_port}/ (the app; /api/docs, /mlflow/, /airflow/)\n"
            f"{logins}\n{token}\nLogs: {settings.home / 'logs'}\n"
            "Trigger the daily cycle in the Airflow UI (reviews_collect → reviews_score → sentiment_train), "
            "or wait for the schedules.")


def up(settings: Settings, ports: dict[str, int] | None = None, test_site: bool = True,
       slack_standin: bool = True, timeout: float = 180.0, echo=print,
       bootstrap: bool = False) -> list[Service]:
    """Start the platform; return the running services (stop them with `stop`)."""
    from reviewops.proxy import ensure_credentials

    ports = PORTS | (ports or {})
    token, token_file = admin_token(settings)
    services = platform_services(settings, ports, test_site, slack_standin, admin_token=token)
    init_platform(settings, bootstrap=bootstrap, echo=echo)
    share_airflow_password(settings, ensure_credentials(settings.home / "nginx")[1])
    if token_file is not None:
        echo(f"API admin token: generated, in {token_file}")
    return start(services, settings.home / "logs", airflow_env(settings), timeout, echo)
