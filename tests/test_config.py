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


def test_empty_variables_mean_unset(home, monkeypatch):
    """Compose passes optional settings as `${VAR:-}`: an empty value must leave the default in force,
    not become a path '.' (TLS on with no certificate) or an empty queue name."""
    for var in ("REVIEWOPS_TLS_CERT", "REVIEWOPS_TLS_KEY", "REVIEWOPS_TRANSFORMER_QUEUE", "REVIEWOPS_ADMIN_TOKEN",
                "REVIEWOPS_SLACK_BOT_TOKEN", "REVIEWOPS_GATE_MARGIN"):
        monkeypatch.setenv(var, "")
    s = Settings()
    assert s.tls_cert is None and s.tls_key is None
    assert s.transformer_queue is None and s.admin_token is None and s.slack_bot_token is None
    assert s.gate_margin == Settings.model_fields["gate_margin"].default
    monkeypatch.setenv("REVIEWOPS_TRANSFORMER_QUEUE", "gpu")
    assert Settings().transformer_queue == "gpu"
