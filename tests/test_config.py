import pytest
from pydantic import ValidationError

from reviewops.config import Settings, redact_url


def test_embedded_defaults_live_under_home(home):
    s = Settings()
    assert s.home == home
    assert s.db_url == f"sqlite:///{home / 'reviews.db'}"
    assert s.tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert s.artifacts == str(home / "artifacts")
    assert s.mlflow_artifacts == (home / "mlruns").as_uri()


def test_environment_and_dotenv(home, monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("REVIEWOPS_GATE_MARGIN=0.01\nREVIEWOPS_MODEL_NAME=from-dotenv\n")
    monkeypatch.setenv("REVIEWOPS_MODEL_NAME", "from-env")
    s = Settings()
    assert s.gate_margin == 0.01  # from .env
    assert s.model_name == "from-env"  # the environment wins over .env


def test_invalid_values_are_refused(home, monkeypatch):
    monkeypatch.setenv("REVIEWOPS_LABEL_POSITIVE_MIN", "3")
    with pytest.raises(ValidationError, match="label_positive_min"):
        Settings()


def test_passwords_never_shown(home, monkeypatch):
    monkeypatch.setenv("REVIEWOPS_DATABASE_URL", "postgresql://app:s3cr3t@db:5432/reviews")
    shown = Settings().redacted()
    assert shown["database_url"] == "postgresql://app:***@db:5432/reviews"
    assert "s3cr3t" not in str(shown)
    assert redact_url("sqlite:///x.db") == "sqlite:///x.db"
