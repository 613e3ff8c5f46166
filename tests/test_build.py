"""`make setup` is a no-op once the environment matches the lock."""

import subprocess

import pytest

from tests.conftest import ROOT


def test_setup_is_a_no_op_when_the_lock_did_not_change():
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.fail("run the tests through `make test`, which builds .venv first")
    dry = subprocess.run(["make", "-n", "setup"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert dry.returncode == 0 and "pip install" not in dry.stdout, dry.stdout


def test_requirements_pin_every_package():
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln and not ln.startswith("#")]
    assert len(reqs) > 100
    assert all("==" in r for r in reqs), [r for r in reqs if "==" not in r]
    names = {r.split("==")[0].split("[")[0].lower() for r in reqs}
    assert {"apache-airflow", "mlflow", "fastapi", "streamlit", "torch", "transformers", "konlpy", "boto3",
            "selenium", "slack-sdk", "scikit-learn", "skops"} <= names
