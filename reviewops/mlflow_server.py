"""The MLflow tracking server of the platform: the `mlflow server` command line, its environment, a
health wait.

Where things live:

* Backend store (runs, metrics, the model registry): `REVIEWOPS_MLFLOW_BACKEND_STORE_URI`. Embedded
  default: a SQLite file, `$REVIEWOPS_HOME/mlflow.db` (its folder is created here). In Docker
  Compose: PostgreSQL, e.g. `postgresql+psycopg://mlflow:<password>@postgres:5432/mlflow`. A URI
  with a password never goes on the command line (where `ps` shows it): it travels in the server's
  environment as `MLFLOW_BACKEND_STORE_URI`, which `mlflow server` reads.
* Artifacts (model files, plots, snapshot manifests): the server proxies them (`--serve-artifacts`)
  to `REVIEWOPS_MLFLOW_ARTIFACTS_DESTINATION`, a folder (default `$REVIEWOPS_HOME/mlartifacts`) or
  `s3://bucket/prefix`. For MinIO, `REVIEWOPS_S3_ENDPOINT_URL` becomes the server's
  `MLFLOW_S3_ENDPOINT_URL`; S3 credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`) come from
  the server's own environment.

Clients (training, the API, Airflow tasks) then need only `REVIEWOPS_MLFLOW_TRACKING_URI=http://host:5000`:
they upload and download artifacts through the server, so they hold no S3 credentials and need no
endpoint. With a static prefix (`--static-prefix /mlflow`, for nginx) every route, `/health` and
the REST API included, moves under the prefix: clients use `http://host:5000/mlflow`.

Host validation: MLflow answers only requests whose `Host` header is localhost or a private IP
unless `allowed_hosts` (or `MLFLOW_SERVER_ALLOWED_HOSTS` in the environment) names more; a
Compose service reached as `http://mlflow:5000` needs e.g. `allowed_hosts="mlflow,mlflow:*"`.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from reviewops.config import Settings, redact_url
from reviewops.errors import ConfigError


def mlflow_executable() -> str:
    """The `mlflow` script installed beside the running Python (the venv's or the image's)."""
    return str(Path(sys.executable).parent / "mlflow")


def _has_scheme(uri: str) -> bool:
    return len(urlsplit(uri).scheme) > 1  # `C:\...` has a one-letter "scheme"


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI (None for in-memory or other databases)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def artifacts_destination(settings: Settings) -> str:
    """Where the server puts proxied artifacts: an absolute folder, or a URI (s3://...) as given."""
    dest = settings.mlflow_artifacts_dest
    if _has_scheme(dest):
        return dest
    return str(Path(dest).expanduser().resolve())


def _has_password(uri: str) -> bool:
    try:
        return urlsplit(uri).password is not None
    except ValueError:
        return False


def prepare_storage(settings: Settings) -> None:
    """Create the SQLite database's folder and a local artifacts folder (MLflow expects both)."""
    db = _sqlite_path(settings.mlflow_backend)
    if db is not None:
        db.expanduser().parent.mkdir(parents=True, exist_ok=True)
    dest = artifacts_destination(settings)
    if not _has_scheme(dest):
        Path(dest).mkdir(parents=True, exist_ok=True)


def server_command(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int | None = None,
    static_prefix: str | None = None,
    allowed_hosts: str | None = None,
    cors_allowed_origins: str | None = None,
) -> list[str]:
    """The `mlflow server` argv for these settings (no secrets in it; see `server_env`).

    Creates the folders a SQLite backend and a local artifacts destination need.
    `static_prefix` ("/mlflow") puts every route under a prefix for a reverse proxy;
    `allowed_hosts` and `cors_allowed_origins` are comma-separated lists for MLflow's security
    middleware (default: localhost and private IPs only).
    """
    prepare_storage(settings)
    backend = settings.mlflow_backend
    cmd = [mlflow_executable(), "server"]
    if not _has_password(backend):  # otherwise it travels as MLFLOW_BACKEND_STORE_URI (server_env)
        cmd += ["--backend-store-uri", backend]
    cmd += ["--serve-artifacts", "--artifacts-destination", artifacts_destination(settings),
            "--host", host, "--port", str(port)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if static_prefix:
        cmd += ["--static-prefix", "/" + static_prefix.strip("/")]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    if cors_allowed_origins:
        cmd += ["--cors-allowed-origins", cors_allowed_origins]
    return cmd


def server_env(settings: Settings) -> dict[str, str]:
    """The server process's environment: ours, plus the S3 endpoint and a backend URI that has a password."""
    env = dict(os.environ)
    # MLflow's GenAI job runner (huey workers, ~250 MB each) serves nothing this platform uses
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if settings.s3_endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    if _has_password(settings.mlflow_backend):
        env["MLFLOW_BACKEND_STORE_URI"] = settings.mlflow_backend
    return env


def wait_until_up(url: str, timeout: float = 60) -> None:
    """Poll `GET {url}/health` until it answers 200; ConfigError naming the URL after `timeout` seconds."""
    health = url.rstrip("/") + "/health"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            with urllib.request.urlopen(health, timeout=max(0.5, min(5.0, timeout))) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise ConfigError(f"MLflow server at {redact_url(url)} is not up after {timeout:g}s "
                              f"(GET {redact_url(health)}: {last})")
        time.sleep(0.25)
