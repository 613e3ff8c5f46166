"""The package as a package: a wheel built from the sources, installed into a fresh venv outside the
checkout, runs the CLI, finds the DAGs, the nginx template and the sample it ships, and runs a DAG.

The new venv gets the wheel only (`--no-deps`); the libraries come from the project's venv through a
`.pth` line that appends its site-packages (a plain path: the checkout's editable finder, a `.pth` of
that folder, is not loaded). Every command runs with the temporary folder as its working directory.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata as md
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from reviewops import proxy
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
DAG_FILES = {"reviews_collect.py", "reviews_score.py", "sentiment_train.py", "model_monitor.py"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build_wheel(work: Path) -> Path:
    """Build from a copy of the sources (symbolic links followed, as setuptools does), so the checkout
    gets no build/ or egg-info folders."""
    src = work / "src"
    shutil.copytree(ROOT / "reviewops", src / "reviewops",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = work / "dist"
    if (BIN / "uv").exists():
        argv = [str(BIN / "uv"), "build", "--wheel", "--no-build-isolation", "--python", sys.executable,
                "--out-dir", str(dist), str(src)]
    else:
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist),
                str(src)]
    subprocess.run(argv, cwd=work, check=True, capture_output=True, timeout=300)
    return next(dist.glob("reviewops-*.whl"))


def _console_script(venv: Path, name: str) -> None:
    """A console script of a library the new venv borrows (Airflow's `airflow`), run by its python."""
    (ep,) = md.entry_points(group="console_scripts", name=name)
    module, func = ep.value.split(":")
    script = venv / "bin" / name
    python = venv / "bin" / "python"
    script.write_text(f"#!{python}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
    script.chmod(0o755)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(work)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    if (BIN / "uv").exists():
        install = [str(BIN / "uv"), "pip", "install", "--python", str(python), "--no-deps", str(wheel)]
    else:
        install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", str(wheel)]
    subprocess.run(install, cwd=work, check=True, capture_output=True, timeout=120)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(python), "-c", purelib], capture_output=True, text=True, check=True)
                .stdout.strip())
    (site / "zz_project_libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _console_script(venv, "airflow")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REVIEWOPS_", "AIRFLOW", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"REVIEWOPS_HOME": str(work / "home"), "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}  # rich wraps long paths at 80 columns otherwise
    return {"work": work, "venv": venv, "python": python, "site": site, "env": env}


def _run(installed, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(installed["venv"] / "bin" / "reviewops"), *args], cwd=installed["work"],
                          env=installed["env"], capture_output=True, text=True, timeout=timeout, check=False)
    command = " ".join(args)
    assert proc.returncode == 0, f"reviewops {command} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    code = ("import reviewops, reviewops.resources as r; print(reviewops.__file__); print(r.dags_folder()); "
            "print(r.nginx_template()); print(r.streamlit_app()); print(r.sample_corpus())")
    proc = subprocess.run([str(installed["python"]), "-c", code], cwd=installed["work"], env=installed["env"],
                          capture_output=True, text=True, check=True)
    package, dags, template, app, sample = (Path(line) for line in proc.stdout.split())
    assert package.is_relative_to(installed["site"])
    for path in (dags, template, app, sample):
        assert path.is_relative_to(installed["site"] / "reviewops" / "resources") and path.exists()
    assert {p.name for p in dags.glob("*.py")} >= DAG_FILES
    pages = {p.name for p in (ROOT / "streamlit" / "views").glob("*.py")}
    assert pages and {p.name for p in (app.parent / "views").glob("*.py")} == pages


def test_cli_database_and_dags_from_the_wheel(installed):
    assert "development and demo tools" in _run(installed, "--help").stdout.lower()
    _run(installed, "db", "upgrade")
    listed = _run(installed, "dag", "list").stdout
    folder = Path(re.search(r"DAGs folder: (\S+)", listed).group(1))
    assert folder.is_relative_to(installed["site"])
    assert {p.name for p in folder.glob("*.py")} >= DAG_FILES
    for dag_id in ("reviews_collect", "reviews_score", "sentiment_train", "model_monitor"):
        assert dag_id in listed
    scored = _run(installed, "dag", "test", "reviews_score", timeout=300)
    assert "success" in scored.stdout


NGINX = shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), *proxy.NGINX_DIRS]))


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (make system-deps)")
def test_the_proxy_from_the_wheel(installed):
    port = _free_port()
    reviewops = installed["venv"] / "bin" / "reviewops"
    proc = subprocess.Popen([str(reviewops), "proxy", "--listen", f"127.0.0.1:{port}"],
                            cwd=installed["work"], env=installed["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_proxy/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    conf = (Path(installed["env"]["REVIEWOPS_HOME"]) / "nginx" / "nginx.conf").read_text()
    assert f"127.0.0.1:{port}" in conf


# --- dependencies ------------------------------------------------------------------------------------------


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    reqs = [*project["dependencies"], *(r for extra in extras for r in extra)]
    return {md.distribution(Requirement(r).name).metadata["Name"].lower() for r in reqs
            if Requirement(r).name != "reviewops"}


def _closure(names: set[str]) -> set[str]:
    """The distributions `names` pull in (what pip would install with every extra)."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in md.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                try:
                    todo.append(md.distribution(req.name).metadata["Name"].lower())
                except md.PackageNotFoundError:
                    continue  # an optional need of a library, not installed here
    return seen


def _third_party_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in [*(ROOT / "reviewops").rglob("*.py"), *(ROOT / "airflow" / "dags").glob("*.py"),
                 *(ROOT / "streamlit").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "reviewops":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_a_declared_dependency():
    covered = _closure(_declared())
    owners = md.packages_distributions()
    missing = {top: sorted(files)[:3] for top, files in _third_party_imports().items()
               if not {d.lower() for d in owners.get(top, [])} & covered}
    assert not missing, f"imports no dependency of pyproject.toml provides: {missing}"


def test_only_the_cli_imports_the_development_tools():
    users = set()
    for path in (ROOT / "reviewops").rglob("*.py"):
        if "devtools" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reviewops.devtools"):
                users.add(path.relative_to(ROOT).as_posix())
    assert users <= {"reviewops/cli.py"}, users
