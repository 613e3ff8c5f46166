"""The compose stack on a real Docker Engine, for tests/test_containers.py and bench/containers.py.

`Engine` makes sure a daemon answers (it starts `dockerd` as root when none does, and stops only what it
started); `standins()` builds the third-party stand-ins of this folder; `Stack` runs the real
docker-compose.yml with this folder's compose.test.yml and a generated .env.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEBIAN_IMAGE = "reviewops-test/debian:bookworm"
# the project's own services (the stand-ins and the test site are not the product)
PROJECT_SERVICES = ("init", "mlflow", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "api", "app", "nginx")


def run(argv: list[str], timeout: float = 1800, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:6])}... exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


class Engine:
    """A Docker daemon that answers: the running one, or `dockerd` started here (root) and stopped after."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir, self.proc = log_dir, None

    def __enter__(self) -> Self:
        if run(["docker", "info"], timeout=30, check=False).returncode != 0:
            if os.geteuid() != 0 or not shutil.which("dockerd"):
                raise AssertionError("no Docker daemon answers and dockerd cannot be started here: "
                                     "run `make container-tools` as root, or start Docker")
            log = (self.log_dir / "dockerd.log").open("wb")
            self.proc = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + 60
            while run(["docker", "info"], timeout=30, check=False).returncode != 0:
                assert self.proc.poll() is None, (self.log_dir / "dockerd.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "dockerd did not answer within 60 s"
                time.sleep(1)
        assert run(["docker", "compose", "version"], check=False).returncode == 0, \
            "no Compose v2 plugin: run `make container-tools`"
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(60)


def pip_ca_file() -> str | None:
    """The CA bundle pip trusts here (pip's `cert` setting): builds reach the index through it."""
    found = os.environ.get("PIP_CERT") or run(["python3", "-m", "pip", "config", "get", "global.cert"],
                                              check=False).stdout.strip()
    return found if found and Path(found).is_file() else None


def standins() -> None:
    """Build the stand-ins (the Debian root filesystem first, once): later runs reuse the build cache."""
    if run(["docker", "image", "inspect", DEBIAN_IMAGE], check=False).returncode != 0:
        with tempfile.TemporaryDirectory() as tmp:
            tar = Path(tmp) / "rootfs.tar"
            run(["mmdebstrap", "--variant=minbase", "--include=ca-certificates", "bookworm", str(tar)])
            run(["docker", "import", str(tar), DEBIAN_IMAGE])
    env = {**os.environ, "DEBIAN_IMAGE": DEBIAN_IMAGE,
           "BUILD_CA_FILE": pip_ca_file() or str(ROOT / "compose/no-ca.pem")}
    run(["docker", "compose", "-p", "reviewops-standins", "-f", str(HERE / "compose.standins.yml"), "build"], env=env)


def local_wheels() -> bool:
    """Copy torch's CPU wheel into wheels/ where this machine has it as a file (its index is unreachable
    here); True when the build must take torch from there."""
    found = sorted(Path("/opt/wheels").glob("torch-*+cpu-*.whl"))
    for wheel in found:
        if not (ROOT / "wheels" / wheel.name).exists():
            shutil.copy2(wheel, ROOT / "wheels" / wheel.name)
    return bool(found)


class Stack:
    """The real docker-compose.yml plus compose.test.yml, under project `name`, with a generated .env."""

    def __init__(self, workdir: Path, name: str = "reviewops-ci", http_port: int = 18080) -> None:
        self.workdir, self.name, self.http_port = workdir, name, http_port
        self.secrets = {
            "POSTGRES_PASSWORD": secrets.token_hex(16), "REVIEWOPS_DB_PASSWORD": secrets.token_hex(16),
            "MINIO_ROOT_PASSWORD": secrets.token_hex(16), "AIRFLOW_JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW_FERNET_KEY": _fernet_key(), "REVIEWOPS_ADMIN_TOKEN": secrets.token_hex(16),
        }
        values = {**self.secrets, "MINIO_ROOT_USER": "reviewops", "BIND_ADDRESS": "127.0.0.1",
                  "HTTP_PORT": str(http_port), "HTTPS_PORT": str(http_port + 1), "PUBLIC_HOST": "localhost",
                  "PUBLIC_URL": f"http://localhost:{http_port}"}
        if ca := pip_ca_file():
            values["PIP_CA_FILE"] = ca
        if local_wheels():
            values["TORCH_INDEX"] = ""
        self.env_file = workdir / ".env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        self.env_file.chmod(0o600)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def compose(self, *args: str, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess:
        return run(["docker", "compose", "--project-directory", str(ROOT), "-p", self.name, "--env-file",
                    str(self.env_file), "-f", str(ROOT / "docker-compose.yml"), "-f", str(HERE / "compose.test.yml"),
                    *args], timeout=timeout, check=check)

    def up(self, *services: str, timeout: int = 900) -> float:
        """`up -d --wait`; returns the seconds it took."""
        start = time.monotonic()
        proc = self.compose("up", "-d", "--wait", "--wait-timeout", str(timeout), *services, timeout=timeout + 120,
                            check=False)
        if proc.returncode != 0:
            raise AssertionError(f"up failed:\n{proc.stderr[-3000:]}\n{self.compose('ps', '-a').stdout}\n"
                                 f"{self.compose('logs', '--tail', '40', check=False).stdout[-6000:]}")
        return time.monotonic() - start

    def services(self) -> dict[str, dict]:
        """Service name -> `docker compose ps` record, every container (exited ones too)."""
        out = self.compose("ps", "-a", "--format", "json").stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return {r["Service"]: r for r in rows}

    def exec(self, service: str, *argv: str, check: bool = True) -> str:
        return self.compose("exec", "-T", service, *argv, check=check).stdout

    def sql(self, database: str, query: str) -> list[list[str]]:
        out = self.exec("postgres", "psql", "-U", "postgres", "-d", database, "-At", "-F", "\t", "-c", query)
        return [line.split("\t") for line in out.splitlines() if line]

    def container(self, service: str) -> str:
        return self.compose("ps", "-a", "-q", service).stdout.strip()

    def down(self, volumes: bool = False) -> None:
        self.compose("down", *(["--volumes"] if volumes else []), "--remove-orphans", timeout=600)


def _fernet_key() -> str:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def wait(what: str, fn, timeout: float, every: float = 3.0):
    deadline = time.monotonic() + timeout
    while not (value := fn()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return value


class Airflow:
    """Airflow's REST API through nginx: the proxy's basic auth in the header, Airflow's own token in the
    cookie its UI uses."""

    def __init__(self, stack: Stack) -> None:
        self.auth = ("admin", stack.exec("nginx", "cat", "/var/lib/reviewops/nginx/proxy-password").strip())
        password = json.loads(stack.exec("airflow-apiserver", "cat",
                                         "/var/lib/reviewops/airflow/passwords.json"))["admin"]
        token = httpx.post(f"{stack.url}/airflow/auth/token", auth=self.auth, timeout=30,
                           json={"username": "admin", "password": password})
        assert token.status_code in (200, 201), token.text
        self.http = httpx.Client(base_url=f"{stack.url}/airflow/api/v2", auth=self.auth, timeout=30,
                                 cookies={"_token": token.json()["access_token"]})

    def trigger(self, dag_id: str) -> str:
        r = self.http.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
        assert r.status_code == 200, r.text
        return r.json()["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.http.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]

    def runs(self, dag_id: str) -> list[dict]:
        return self.http.get(f"/dags/{dag_id}/dagRuns", params={"order_by": "run_after"}).json()["dag_runs"]

    def finished(self, dag_id: str, after: int = 0) -> dict | None:
        done = [r for r in self.runs(dag_id)[after:] if r["state"] in ("success", "failed")]
        return done[-1] if done else None
