"""Static checks of the Docker deliverables (there is no Docker engine here): the compose file against
the Compose specification, every file and command it names, the Dockerfiles through hadolint, every
variable documented, and that compose runs the same `reviewops` commands as `make up`."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer.main
import yaml

from reviewops.cli import app as cli_app
from reviewops.config import PORTS, Settings
from reviewops.devtools.launcher import platform_services
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILES = [ROOT / "base.Dockerfile", *sorted(ROOT.glob("*/Dockerfile"))]
# what each third-party image ships to run its healthcheck (our images run python or reviewops)
IMAGE_TOOLS = {"postgres": {"pg_isready"}, "minio/minio": {"mc"}, "redis": {"redis-cli"}}
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}")


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=False, **kwargs)  # the test reads returncode itself


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _argv(value) -> list[str]:
    return list(value) if isinstance(value, list) else shlex.split(value or "")


def _test_argv(check: dict) -> list[str]:
    test = _argv(check["test"])
    if test[0] == "CMD-SHELL":
        return shlex.split(test[1])
    assert test[0] == "CMD", test
    return test[1:]


def _documented() -> set[str]:
    names = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if m:
            names.add(m.group(1))
    return names


# --- the compose file --------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification():
    proc = _run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_catches_a_broken_compose_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("restart: unless-stopped", "restart: [sometimes]", 1))
    proc = _run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0


def test_every_file_and_build_context_it_names_exists(compose):
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build:
            context = ROOT / build["context"]
            assert context.is_dir(), f"{name}: build context {context}"
            assert (context / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']}"
            base = (build.get("args") or {}).get("BASE_IMAGE")
            if base:  # compose builds in dependency order: the service building the base image comes first
                builders = [n for n, other in compose["services"].items() if other.get("image") == base
                            and other.get("build")]
                assert builders, f"{name}: no service builds its base image {base}"
                assert builders[0] in _waits_for(compose, name), f"{name}: does not wait for {builders[0]}"
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: bind-mount source {source}"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} is not declared"
        for env_file in svc.get("env_file", []):
            path = env_file["path"] if isinstance(env_file, dict) else env_file
            assert isinstance(env_file, dict) and env_file.get("required") is False or (ROOT / path).exists()


def _waits_for(compose: dict, service: str) -> set[str]:
    """Every service `service` waits for, directly or through others."""
    seen, todo = set(), [service]
    while todo:
        for dep in compose["services"][todo.pop()].get("depends_on", {}):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _reviewops_commands(compose) -> dict[str, list[str]]:
    return {name: _argv(svc["command"]) for name, svc in compose["services"].items()
            if _argv(svc.get("command"))[:1] == ["reviewops"]}


def _parse_cli(args: list[str]):
    """Parse `reviewops ARGS` with the real CLI, running nothing: unknown commands or options raise
    (click's UsageError, from the click that typer bundles)."""
    group = typer.main.get_command(cli_app)
    ctx = group.make_context("reviewops", list(args), resilient_parsing=False)
    name, cmd, rest = group.resolve_command(ctx, list(args))
    while hasattr(cmd, "resolve_command"):  # a command group: go down
        sub = cmd.make_context(name, rest, parent=ctx)
        name, cmd, rest = cmd.resolve_command(sub, rest)
    return cmd.make_context(name, rest, parent=ctx)


def test_every_reviewops_command_it_runs_parses(compose):
    commands = _reviewops_commands(compose)
    assert {"init", "mlflow", "api", "app", "nginx", "airflow-apiserver", "airflow-scheduler"} <= set(commands)
    for argv in commands.values():
        args = [VAR.sub("2", a) for a in argv[1:]]  # ${API_WORKERS:-2} and the like: any value
        _parse_cli(args)  # raises click.UsageError on an unknown command or option
    for svc in compose["services"].values():  # healthchecks that call reviewops, too
        if "healthcheck" in svc and _test_argv(svc["healthcheck"])[0] == "reviewops":
            _parse_cli(_test_argv(svc["healthcheck"])[1:])
    with pytest.raises(Exception, match="No such option"):  # the check can fail
        _parse_cli(["serve", "--no-such-option", "1"])
    with pytest.raises(Exception, match="No such command"):
        _parse_cli(["no-such-command"])


def test_every_airflow_command_it_runs_exists(compose):
    """`reviewops airflow X` hands X to Airflow: each component (and the celery worker of the celery and gpu
    profiles, whose provider must be in the lock) is asked for its --help."""
    seen = set()
    for svc in compose["services"].values():
        for argv in (_argv(svc.get("command")), _test_argv(svc["healthcheck"]) if "healthcheck" in svc else []):
            if argv[:2] == ["reviewops", "airflow"]:
                words = [a for a in argv[2:] if not a.startswith("-")][:2]
                group = words[:2] if words[0] in ("celery", "jobs") else words[:1]
                seen.add(tuple(group))
    assert {("api-server",), ("scheduler",), ("dag-processor",), ("triggerer",), ("celery", "worker"),
            ("jobs", "check")} <= seen
    env = {**os.environ, "AIRFLOW_HOME": str(ROOT / "var" / "test-airflow-cli"),
           "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"}
    for group in sorted(seen):
        proc = _run([str(BIN / "airflow"), *group, "--help"], capture_output=True, text=True, timeout=120,
                              env=env)
        assert proc.returncode == 0, f"airflow {' '.join(group)}: {proc.stderr[-500:]}"


def test_healthchecks_use_tools_their_images_have(compose):
    for name, svc in compose["services"].items():
        long_running = svc.get("restart", "no") != "no"
        if not long_running:
            continue
        assert "healthcheck" in svc, f"{name} runs for good but has no healthcheck"
        tool = _test_argv(svc["healthcheck"])[0]
        if "build" in svc:  # our images: python, or a console script the lock installs (as in .venv/bin)
            assert tool == "python" or (BIN / tool).is_file(), f"{name}: healthcheck runs {tool}, not in our images"
        else:
            image = svc["image"].split(":")[0]
            assert tool in IMAGE_TOOLS[image], f"{name}: {image} has no {tool}"


def test_dependencies_wait_for_health_or_completion(compose):
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            other = services[dep]
            expected = "service_completed_successfully" if other.get("restart") == "no" else "service_healthy"
            assert cond["condition"] == expected, f"{name} → {dep}: {cond}"
            if expected == "service_healthy":
                assert "healthcheck" in other
            profiles = set(other.get("profiles", []))
            assert not profiles or profiles & set(svc.get("profiles", [])) == set(svc.get("profiles", [])) or (
                set(svc.get("profiles", [])) <= profiles), f"{name} needs {dep}, which its profiles do not start"
    for name in ("postgres", "minio", "mlflow", "api", "nginx", "airflow-scheduler"):
        assert services[name]["restart"] == "unless-stopped"


def test_state_lives_in_named_volumes(compose):
    services = compose["services"]
    wanted = {"postgres": "/var/lib/postgresql/data", "minio": "/data", "redis": "/data",
              "mlflow": "/var/lib/reviewops", "api": "/var/lib/reviewops", "airflow-scheduler": "/var/lib/reviewops"}
    for name, target in wanted.items():
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert target in mounts and mounts[target] in compose["volumes"], f"{name}: {target} not on a named volume"


def test_gpu_profile_reserves_an_nvidia_gpu_and_trains_on_the_transformer_queue(compose):
    svc = compose["services"]["trainer-gpu"]
    assert svc["profiles"] == ["gpu"]
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    argv = _argv(svc["command"])
    assert argv[:5] == ["reviewops", "airflow", "celery", "worker", "--queues"]
    assert "REVIEWOPS_TRANSFORMER_QUEUE" in argv[5]
    base = next(other for other in compose["services"].values()
                if other.get("image") == svc["build"]["args"]["BASE_IMAGE"])
    assert "cu1" in base["build"]["args"]["TORCH_INDEX"]  # a CUDA build of torch


def test_compose_runs_what_make_up_runs(compose, settings):
    """Same `reviewops` commands as `make up` (less the local stand-ins for CGV/Megabox and Slack), and
    nginx's upstreams are the services that listen on those ports."""
    local = platform_services(settings, PORTS, test_site=True, slack_standin=True)
    made_up = {Path(s.argv[0]).name + " " + s.argv[1] for s in local if Path(s.argv[0]).name == "reviewops"}
    assert made_up == {"reviewops mlflow-server", "reviewops testsite", "reviewops slack-standin", "reviewops serve",
                       "reviewops app", "reviewops airflow", "reviewops proxy"}
    commands = _reviewops_commands(compose)
    composed = {" ".join(argv[:2]) for argv in commands.values()}
    assert made_up - {"reviewops testsite", "reviewops slack-standin"} <= composed
    assert composed - made_up == {"reviewops init"}  # make up runs the same init_platform in process

    proxy = commands["nginx"]
    upstreams = {proxy[i].lstrip("-"): proxy[i + 1] for i in range(2, len(proxy) - 1)
                 if proxy[i].lstrip("-") in ("streamlit", "api", "mlflow", "airflow")}
    assert set(upstreams) == {"streamlit", "api", "mlflow", "airflow"}
    for role, target in upstreams.items():
        host, port = target.split(":")
        argv = commands[host]
        listens = argv[argv.index("--port") + 1]
        assert listens == port, f"nginx sends {role} to {target}, but {host} listens on {listens}"
    published = compose["services"]["nginx"]["ports"][0]
    assert published.endswith(":" + proxy[proxy.index("--listen") + 1].split(":")[1])


# --- make ---------------------------------------------------------------------------------------


def _names(path: Path) -> set[str]:
    from packaging.requirements import Requirement

    lines = [ln.strip() for ln in path.read_text().splitlines()]
    return {Requirement(ln).name.lower() for ln in lines if ln and not ln.startswith(("#", "-"))}


def test_make_demo_installs_the_runtime_quietly_and_no_test_tools():
    """`make demo` on a fresh machine: one line per setup step, not one per package, and the runtime
    only; the test and lint tools come with `make test` (requirements-dev.txt, pyproject's `dev` extra)."""
    import tomllib

    tools = _names(ROOT / "requirements-dev.in")
    runtime = _names(ROOT / "requirements.txt")
    assert {"pytest", "ruff"} <= tools and tools & runtime <= {"aiohttp"}  # aiohttp: a runtime library's need too
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    from packaging.requirements import Requirement

    assert {Requirement(r).name for r in extras["dev"]} == tools
    assert not any("pytest" in r or "ruff" in r for name, rs in extras.items() if name != "dev" for r in rs)

    def planned(target: str) -> list[str]:  # every command `make` would run from scratch, none run
        proc = _run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    demo = planned("demo")
    installs = [line for line in demo if " install " in line and "apt-get" not in line]
    assert len(installs) == 3 and all(re.search(r" (-q|--quiet) ", line) for line in installs), installs
    assert not any("requirements-dev" in line for line in demo)
    assert any("-r requirements-dev.txt" in line and "--quiet" in line for line in planned("test"))


# --- the images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_passes_hadolint(dockerfile):
    proc = _run([str(BIN / "hadolint"), "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_finds_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nADD . /app\n")
    proc = _run([str(BIN / "hadolint"), "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "DL3007" in proc.stdout  # `latest` tag


def test_images_run_as_a_non_root_user_and_copy_what_exists():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "var", ".venv", ".git"} <= set(ignored)
    for dockerfile in DOCKERFILES:
        lines = [line.strip() for line in dockerfile.read_text().splitlines()
                 if line.strip() and not line.startswith("#")]
        users = [line.split()[1] for line in lines if line.startswith("USER ")]
        if dockerfile.name == "base.Dockerfile":
            assert users, "the base image must switch to its non-root user"
        assert not users or users[-1] not in ("0", "root"), f"{dockerfile} ends as root"  # else: base's user
        for line in lines:
            if line.startswith("COPY "):
                for source in line.split()[1:-1]:
                    assert (ROOT / source).exists(), f"{dockerfile}: COPY {source}"
            assert not re.search(r"(PASSWORD|TOKEN|SECRET|_KEY)\w*=\S", line), f"{dockerfile}: a secret in {line}"
        if dockerfile.name == "Dockerfile":  # service images start from the base image
            assert "ARG BASE_IMAGE=reviewops/base:latest" in lines and "FROM ${BASE_IMAGE}" in lines
    base = (ROOT / "base.Dockerfile").read_text()
    assert base.index("COPY requirements.txt") < base.index("COPY reviewops")  # the lock's layer is reused
    assert "chromium" not in base and "chromium" in (ROOT / "airflow" / "Dockerfile").read_text()
    assert "fonts-nanum" in (ROOT / "streamlit" / "Dockerfile").read_text()


# --- every variable documented --------------------------------------------------------------------


def _variables_the_code_reads() -> set[str]:
    """Upper-case names read from an environment in the library, the DAGs and the app:
    os.environ[...] / .get / .setdefault / os.getenv, and env[...] / env.get on an environment dict."""
    names = set()
    files = [*ROOT.joinpath("reviewops").rglob("*.py"), *ROOT.joinpath("airflow", "dags").glob("*.py"),
             *ROOT.joinpath("streamlit").rglob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            key = None
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = ast.unparse(node.func)
                if func in ("os.getenv", "os.environ.get", "os.environ.setdefault", "env.get"):
                    key = node.args[0].value
            elif (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
                  and isinstance(node.slice, ast.Constant) and ast.unparse(node.value) in ("os.environ", "env")):
                key = node.slice.value
            if isinstance(key, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", key) and key not in ("PATH", "HOME"):
                names.add(key)
    return names


def test_every_variable_is_in_env_example(compose):
    documented = _documented()
    code = _variables_the_code_reads()
    assert {"REVIEWOPS_CRAWL_DELAY", "AIRFLOW_HOME"} <= code  # the scan finds reads
    settings = set(Settings.variables())
    interpolated = set(VAR.findall(COMPOSE_FILE.read_text()))
    assert {"POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET"} <= interpolated
    missing = sorted((code | settings | interpolated) - documented)
    assert not missing, f"not in .env.example: {missing}"


def test_env_example_has_no_working_default_secret():
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(\S*)", line)
        if m and re.search(r"PASSWORD|SECRET|TOKEN|FERNET|ACCESS_KEY", m.group(1)):
            value = m.group(2)
            assert value in ("", "#") or "CHANGE_ME" in value, f"{m.group(1)} has a default: {value}"
    compose_text = COMPOSE_FILE.read_text()
    for var in ("POSTGRES_PASSWORD", "REVIEWOPS_DB_PASSWORD", "MINIO_ROOT_PASSWORD", "AIRFLOW_FERNET_KEY",
                "AIRFLOW_JWT_SECRET"):
        assert f"${{{var}:?" in compose_text, f"compose must refuse to start without {var}"


# --- what the compose services run, against a real PostgreSQL -------------------------------------


def _interpolate(value: str, values: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$, for the variables of this test."""
    def one(m: re.Match) -> str:
        name, rest = m.group(1), m.group(2) or ""
        if name in values:
            return values[name]
        if rest.startswith((":-", "-")):
            return rest.split("-", 1)[1]
        raise AssertionError(f"compose would refuse to start: {name} is unset ({rest})")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?::?[-?])[^}]*)?\}", one, value).replace("$$", "$")


def _service_env(compose: dict, service: str, values: dict[str, str], local: dict[str, str]) -> dict[str, str]:
    """A compose service's environment as a process here would get it: interpolated, and its host names
    (postgres, minio, mlflow) pointed at local stand-ins."""
    env = {}
    for key, raw in compose["services"][service]["environment"].items():
        text = _interpolate(str(raw), values)
        for host, replacement in local.items():
            text = text.replace(host, replacement)
        env[key] = text
    return env


@pytest.fixture
def compose_postgres():
    """The compose file's PostgreSQL setup on the local server: compose/postgres-init.sh creates the
    `reviewops` role and the reviews, mlflow and airflow databases (dropped first, so each run starts
    as a first start does)."""
    from tests.conftest import PG_URL

    if not PG_URL:
        pytest.skip("needs REVIEWOPS_TEST_POSTGRES_URL")  # deselected before this runs (postgres mark)
    import sqlalchemy as sa

    url = sa.engine.make_url(PG_URL)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in ("reviews", "mlflow", "airflow"):
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    env = {**os.environ, "PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432),
           "POSTGRES_USER": url.username or "postgres", "REVIEWOPS_DB_PASSWORD": "pw-from-the-environment"}
    for _ in range(2):  # a second run changes nothing and does not fail
        proc = _run(["bash", str(ROOT / "compose" / "postgres-init.sh")], env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    with admin.connect() as conn:
        dbs = {r[0] for r in conn.exec_driver_sql("SELECT datname FROM pg_database WHERE datdba = "
                                                  "(SELECT oid FROM pg_roles WHERE rolname = 'reviewops')")}
    assert {"reviews", "mlflow", "airflow"} <= dbs
    yield {"host": f"{url.host or '127.0.0.1'}:{url.port or 5432}"}
    with admin.connect() as conn:
        for name in ("reviews", "mlflow", "airflow"):
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


DB_SECRET = "db-secret-4f9c2e"  # trust auth ignores it; it must not show up in a log
COMPOSE_VALUES = {"POSTGRES_PASSWORD": "x", "REVIEWOPS_DB_PASSWORD": DB_SECRET, "MINIO_ROOT_USER": "testing",
                  "MINIO_ROOT_PASSWORD": "testing", "AIRFLOW_FERNET_KEY": "", "AIRFLOW_JWT_SECRET": "jwt-test-secret"}


@pytest.mark.postgres
def test_compose_init_prepares_postgres_like_a_first_start(compose, compose_postgres, moto_server, tmp_path):
    """`reviewops init` with the init service's own environment: the review store's schema, Airflow's
    metadata database on PostgreSQL (psycopg 3, sync and async), and the first history; idempotent."""
    import sqlalchemy as sa

    from tests.conftest import sample_records, write_jsonl

    values = COMPOSE_VALUES | {"AIRFLOW_FERNET_KEY": "5-x7dhp1oBeGyxCaFX2yhs3yDaIhYyF8F2uaX9Rye9I="}
    env = _service_env(compose, "init", values, {"@postgres:5432": "@" + compose_postgres["host"],
                                                 "http://minio:9000": moto_server})
    env |= {"REVIEWOPS_HOME": str(tmp_path / "home"), "AIRFLOW_HOME": str(tmp_path / "home" / "airflow"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "passwords.json"),
            "REVIEWOPS_CORPUS": str(write_jsonl(tmp_path / "history.jsonl.gz", sample_records(300))),
            "PATH": os.environ["PATH"], "HF_HUB_OFFLINE": "1"}
    argv = _argv(compose["services"]["init"]["command"])
    first = _run([str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True, text=True, timeout=300,
                           cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "ingested 300 reviews" in " ".join(first.stdout.split())
    second = _run([str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert second.returncode == 0 and "ingested" not in second.stdout

    reviews = sa.create_engine(env["REVIEWOPS_DATABASE_URL"])
    airflow = sa.create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    try:
        with reviews.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM reviews").scalar() == 300
            assert conn.exec_driver_sql("SELECT current_user").scalar() == "reviewops"
        with airflow.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
            assert conn.exec_driver_sql("SELECT to_regclass('dag_run')").scalar() == "dag_run"
    finally:
        reviews.dispose()
        airflow.dispose()


@pytest.mark.postgres
def test_compose_mlflow_serves_from_postgres_and_s3(compose, compose_postgres, moto_server, tmp_path):
    """The mlflow service's command and environment: the tracking server on the PostgreSQL mlflow database
    with artifacts proxied to S3, healthy under the /mlflow prefix, a run logged through it."""
    import socket
    import urllib.request

    import mlflow

    values = dict(COMPOSE_VALUES)
    env = _service_env(compose, "mlflow", values, {"@postgres:5432": "@" + compose_postgres["host"],
                                                   "http://minio:9000": moto_server})
    import boto3

    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket="reviewops")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [_interpolate(a, values) for a in _argv(compose["services"]["mlflow"]["command"])]
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    argv[argv.index("--workers") + 1] = "1"
    env |= {"REVIEWOPS_HOME": str(tmp_path / "home"), "PATH": os.environ["PATH"]}
    log = (tmp_path / "mlflow.log").open("wb")
    proc = subprocess.Popen([str(BIN / argv[0]), *argv[1:]], env=env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=tmp_path, start_new_session=True)
    try:
        from reviewops.mlflow_server import wait_until_up

        wait_until_up(f"http://127.0.0.1:{port}/mlflow", timeout=120)
        # as the other containers and nginx reach it: by a name on --allowed-hosts (MLflow refuses others)
        client = mlflow.MlflowClient(tracking_uri=f"http://localhost:{port}/mlflow")
        exp = client.create_experiment("compose-check")
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "accuracy", 0.9)
        note = tmp_path / "note.txt"
        note.write_text("artifact through the server")
        client.log_artifact(run.info.run_id, str(note))
        keys = [o["Key"] for o in boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
                .list_objects_v2(Bucket="reviewops").get("Contents", [])]
        assert any(k.startswith("mlflow/") and k.endswith("note.txt") for k in keys), keys
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/mlflow/health", timeout=5) as r:
            assert r.status == 200
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()
    assert DB_SECRET.encode() not in (tmp_path / "mlflow.log").read_bytes()


def test_compose_environments_make_valid_settings(compose, monkeypatch):
    """Each service's environment, as compose interpolates it from a minimal .env, is valid ReviewOps
    configuration; optional settings left empty stay unset (no TLS, no GPU queue, no admin token)."""
    from reviewops.config import reset_settings

    for name, svc in compose["services"].items():
        if "environment" not in svc or "build" not in svc:
            continue
        env = _service_env(compose, name, COMPOSE_VALUES, {})
        for key in [k for k in os.environ if k.startswith("REVIEWOPS_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        reset_settings()
        s = Settings(_env_file=None)
        assert s.tls.cert is None and s.tls.key is None, name
        assert s.transformer.queue is None and s.admin_token is None, name
        if name != "nginx":
            assert s.db_url.startswith("postgresql+psycopg://reviewops:")
            assert s.db_url.endswith("@postgres:5432/reviews")
            assert s.artifacts == "s3://reviewops/artifacts" and s.s3_endpoint_url == "http://minio:9000"
    reset_settings()


# --- the whole compose stack, run here without Docker -----------------------------------------------


class Stack:
    """Compose's services run as local processes: each one's own command and environment, interpolated
    from a minimal .env, with container names and ports mapped to 127.0.0.1 and free ports."""

    def __init__(self, compose: dict, tmp: Path, s3: str, pg_host: str, executor: str = "LocalExecutor") -> None:
        self.compose, self.tmp = compose, tmp
        self.values = COMPOSE_VALUES | {"API_WORKERS": "1", "AIRFLOW_EXECUTOR": executor,
                                        "AIRFLOW_FERNET_KEY": "5-x7dhp1oBeGyxCaFX2yhs3yDaIhYyF8F2uaX9Rye9I="}
        free = []
        for _ in range(5):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            free.append(s)
        self.ports = {name: s.getsockname()[1] for name, s in zip(
            ("mlflow", "api", "app", "airflow-apiserver", "nginx"), free, strict=True)}
        for s in free:
            s.close()
        # container port -> local port, per service (what its command listens on and its healthcheck asks)
        self.listen = {"mlflow": {"5000": self.ports["mlflow"]}, "api": {"8000": self.ports["api"]},
                       "app": {"8501": self.ports["app"]},
                       "airflow-apiserver": {"8080": self.ports["airflow-apiserver"]},
                       "nginx": {"8080": self.ports["nginx"]}}
        self.names = {"@postgres:5432": "@" + pg_host, "http://minio:9000": s3,
                      "http://mlflow:5000": f"http://localhost:{self.ports['mlflow']}",
                      "http://api:8000": f"http://127.0.0.1:{self.ports['api']}",
                      "http://airflow-apiserver:8080": f"http://127.0.0.1:{self.ports['airflow-apiserver']}",
                      "redis://redis:6379/0": f"redis://127.0.0.1:6379/{REDIS_DB}"}
        self.procs: list[subprocess.Popen] = []
        (tmp / "logs").mkdir()

    def _map(self, text: str, service: str) -> str:
        home = self.tmp / ("proxy-home" if service == "nginx" else "home")
        for name, local in self.names.items():
            text = text.replace(name, local)
        return text.replace("/var/lib/reviewops", str(home))

    def argv(self, service: str, argv: list[str] | None = None) -> list[str]:
        command = argv or _argv(self.compose["services"][service]["command"])
        args = [self._map(_interpolate(a, self.values), service) for a in command]
        out = []
        for i, a in enumerate(args):
            prev = args[i - 1] if i else ""
            if prev == "--port" and a in self.listen.get(service, {}):
                a = str(self.listen[service][a])
            elif prev in ("--streamlit", "--api", "--mlflow", "--airflow"):
                host, port = a.split(":")
                a = f"127.0.0.1:{self.listen[host][port]}"
            elif prev in ("--listen", "--tls-listen"):
                a = f"127.0.0.1:{self.ports['nginx'] if prev == '--listen' else _free_port()}"
            elif prev == "--host":
                a = "127.0.0.1"
            else:
                for container, local in self.listen.get(service, {}).items():
                    a = a.replace(f"127.0.0.1:{container}/", f"127.0.0.1:{local}/")
            out.append(a)
        if out and out[0] in ("reviewops", "python"):
            out[0] = str(BIN / out[0])
        return out

    def env(self, service: str, extra: dict[str, str]) -> dict[str, str]:
        raw = self.compose["services"][service].get("environment", {})
        env = {k: self._map(_interpolate(str(v), self.values), service) for k, v in raw.items()}
        # the image installs the lock's console scripts on PATH: here they are in the venv
        return env | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"} | extra

    def start(self, service: str, extra: dict[str, str]) -> None:
        log = (self.tmp / "logs" / f"{service}.log").open("wb")
        self.procs.append(subprocess.Popen(self.argv(service), env=self.env(service, extra), stdout=log,
                                           stderr=subprocess.STDOUT, cwd=self.tmp, start_new_session=True))
        self.procs[-1].name = service

    def healthy(self, service: str, extra: dict[str, str], timeout: float) -> None:
        """Run the service's own compose healthcheck until it passes."""
        test = _argv(self.compose["services"][service]["healthcheck"]["test"])
        if test[0] == "CMD-SHELL":  # as Docker runs it: through a shell, so $HOSTNAME and the like expand
            check = ["bash", "-c", " ".join(shlex.quote(a) if i else a for i, a in enumerate(
                self.argv(service, shlex.split(_interpolate(test[1], self.values)))))]
            check[2] = check[2].replace("'celery@$HOSTNAME'", "celery@$HOSTNAME")
        else:
            check = self.argv(service, test[1:])
        deadline = time.monotonic() + timeout
        while True:
            for p in self.procs:
                log = (self.tmp / "logs" / (p.name + ".log")).read_text()
                assert p.poll() is None, f"{p.name} exited: {log[-3000:]}"
            result = _run(check, env=self.env(service, extra), capture_output=True, text=True, timeout=60)
            if result.returncode == 0:
                return
            assert time.monotonic() < deadline, (
                f"{service} not healthy: {check} said {(result.stdout + result.stderr)[-1500:]}\n"
                + (self.tmp / "logs" / f"{service}.log").read_text()[-1500:])
            time.sleep(2)

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REDIS_DB = 7  # the local Redis (the celery profile's broker): a database of its own, emptied first


@pytest.mark.postgres
# LocalExecutor, the default, runs in real containers (tests/test_containers.py); the celery profile runs here
@pytest.mark.parametrize("executor", ["CeleryExecutor"])
def test_the_compose_stack_runs_a_cycle(compose, compose_postgres, moto_server, tmp_path, small_corpus, executor):
    """init → mlflow → Airflow's four components → api → app → nginx, each with its compose command,
    environment and healthcheck; a cycle triggered through Airflow's REST API crawls (the local test
    site stands in for CGV and Megabox), trains on PostgreSQL + S3, promotes, and the API answers
    through nginx with the new champion. With CeleryExecutor (the celery profile) tasks go through Redis
    to the `airflow-worker` service."""
    import boto3
    import httpx

    # minio-init
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket="reviewops")
    stack = Stack(compose, tmp_path, moto_server, compose_postgres["host"], executor)
    workers = ["airflow-worker"] if executor == "CeleryExecutor" else []
    if workers:
        import redis

        redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    site_port = _free_port()
    site = f"http://127.0.0.1:{site_port}"
    local = {"REVIEWOPS_CGV_BASE_URL": site, "REVIEWOPS_MEGABOX_BASE_URL": site, "REVIEWOPS_CRAWL_DELAY": "0",
             "REVIEWOPS_CORPUS": str(small_corpus), "REVIEWOPS_RETRAIN_MIN_NEW_LABELS": "100",
             "REVIEWOPS_TASK_RETRIES": "0", "REVIEWOPS_MODEL_POLL_SECONDS": "2",
             "AIRFLOW__API__WORKERS": "1", "AIRFLOW__CORE__PARALLELISM": "4"}  # sized for 2 cores
    site_log = (tmp_path / "logs" / "testsite.log").open("wb")
    stack.procs.append(subprocess.Popen([str(BIN / "reviewops"), "testsite", "--port", str(site_port)], stdout=site_log,
                                        stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
                                        env={**os.environ, "REVIEWOPS_HOME": str(tmp_path / "site")}))
    stack.procs[-1].name = "testsite"
    try:
        init = _run(stack.argv("init"), env=stack.env("init", local), capture_output=True, text=True, timeout=600,
                    cwd=tmp_path)
        assert init.returncode == 0, init.stdout[-2000:] + init.stderr[-2000:]
        stack.start("mlflow", local)
        stack.healthy("mlflow", local, 180)
        airflow_services = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                            *workers]
        for name in airflow_services:
            stack.start(name, local)
        for name in airflow_services:
            stack.healthy(name, local, 240)
        stack.start("api", local)
        stack.healthy("api", local, 180)
        stack.start("app", local)
        stack.healthy("app", local, 120)
        stack.start("nginx", local)
        stack.healthy("nginx", local, 60)

        airflow = f"http://127.0.0.1:{stack.ports['airflow-apiserver']}/airflow"
        password = json.loads((tmp_path / "home" / "airflow" / "passwords.json").read_text())["admin"]
        token = httpx.post(f"{airflow}/auth/token",
                           json={"username": "admin", "password": password}).json()["access_token"]
        client = httpx.Client(base_url=f"{airflow}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        dags = client.get("/dags").json()["dags"]
        assert len(dags) == 4 and not any(d["is_paused"] for d in dags)
        assert client.post("/dags/reviews_collect/dagRuns", json={"logical_date": None}).status_code == 200

        def finished(dag_id: str):
            runs = [r for r in client.get(f"/dags/{dag_id}/dagRuns").json()["dag_runs"]
                    if r["state"] in ("success", "failed")]
            return runs[-1] if runs else None

        def wait(fn, timeout: float, what: str):
            deadline = time.monotonic() + timeout
            while not (value := fn()):
                for p in stack.procs:
                    assert p.poll() is None, f"{p.name} exited while waiting for {what}"
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                time.sleep(2)
            return value

        assert wait(lambda: finished("reviews_collect"), 300, "reviews_collect")["state"] == "success"
        assert wait(lambda: finished("sentiment_train"), 400, "sentiment_train")["state"] == "success"

        front = f"http://127.0.0.1:{stack.ports['nginx']}"
        wait(lambda: httpx.get(f"{front}/api/readyz").status_code == 200, 120, "the API to load the champion")
        r = httpx.post(f"{front}/api/v1/predict",
                       json={"texts": ["정말 재밌어요 최고의 영화", "돈 아까운 최악의 영화"]})
        assert [p["label"] for p in r.json()["predictions"]] == ["긍정", "부정"]
        assert "<title>Streamlit</title>" in httpx.get(f"{front}/").text
        proxy_password = (tmp_path / "proxy-home" / "nginx" / "proxy-password").read_text().strip()
        # MLflow answers the name users type (PUBLIC_HOST, `localhost` by default) and refuses others
        assert httpx.get(f"{front}/mlflow/", auth=("admin", proxy_password),
                         headers={"Host": f"localhost:{stack.ports['nginx']}"}).status_code == 200
        assert httpx.get(f"{front}/mlflow/", auth=("admin", proxy_password),
                         headers={"Host": f"evil.example:{stack.ports['nginx']}"}).status_code == 403
        assert httpx.get(f"{front}/airflow/", auth=("admin", proxy_password), follow_redirects=True).status_code == 200

        keys = [o["Key"] for o in boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
                .list_objects_v2(Bucket="reviewops").get("Contents", [])]
        assert any(k.startswith("mlflow/") for k in keys) and any(k.startswith("artifacts/") for k in keys)
        if workers:  # the tasks really went through Redis to the Celery worker
            received = (tmp_path / "logs" / "airflow-worker.log").read_text().count("Task execute_workload[")
            assert received >= 5, received
        logs = b"".join(f.read_bytes() for f in (tmp_path / "logs").glob("*.log"))
        assert DB_SECRET.encode() not in logs and b"jwt-test-secret" not in logs
    finally:
        stack.stop()
        site_log.close()
