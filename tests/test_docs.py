"""Every setting is documented where an operator looks: .env.example and the README."""

from reviewops.config import Settings
from tests.conftest import ROOT


def test_every_setting_is_documented():
    env_example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for var in Settings.variables():
        assert var in env_example, f"{var} missing from .env.example"
        assert var in readme, f"{var} missing from the README's configuration table"


def test_service_folders_do_not_shadow_libraries():
    for folder in ("airflow", "fastapi", "mlflow", "streamlit"):
        assert not (ROOT / folder / "__init__.py").exists()
