import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from reviewops.config import GateSettings, Settings, redact_text, redact_url


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
    assert s.gate.margin == 0.01  # from .env
    assert s.model.name == "from-env"  # the environment wins over .env


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
    assert s.tls.cert is None and s.tls.key is None
    assert s.transformer.queue is None and s.admin_token is None and s.slack.bot_token is None
    assert s.gate.margin == GateSettings.model_fields["margin"].default
    monkeypatch.setenv("REVIEWOPS_TRANSFORMER_QUEUE", "gpu")
    assert Settings().transformer.queue == "gpu"


def test_groups_read_todays_variable_names(home, monkeypatch, tmp_path):
    """Grouped settings keep their flat variable names: REVIEWOPS_CRAWL_BACKOFF_MAX is crawl.backoff_max."""
    (tmp_path / ".env").write_text("REVIEWOPS_CRAWL_DELAY=0.25\nREVIEWOPS_CGV_MOVIE_SELECTOR=a.movie\n")
    monkeypatch.setenv("REVIEWOPS_CRAWL_BACKOFF_MAX", "7")
    monkeypatch.setenv("REVIEWOPS_MLFLOW_ARTIFACTS_DESTINATION", "s3://b/p")
    monkeypatch.setenv("REVIEWOPS_MODEL_PARAMS", '{"C": 4, "char_features": 1024}')
    monkeypatch.setenv("REVIEWOPS_TRANSFORMER_PARAMS", '{"epochs": 3}')
    monkeypatch.setenv("REVIEWOPS_DATABASE_URL", "sqlite:///elsewhere.db")
    monkeypatch.setenv("REVIEWOPS_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("REVIEWOPS_USER_AGENT", "tester")
    s = Settings()
    assert s.crawl.delay == 0.25 and s.cgv.movie_selector == "a.movie"  # from .env, beside the environment's
    assert s.crawl.backoff_max == 7 and s.crawl.backoff == 0.5  # the rest of the group keeps its defaults
    assert s.mlflow_artifacts_dest == "s3://b/p"
    assert s.model.params == {"C": 4, "char_features": 1024} and s.transformer.params == {"epochs": 3}
    assert s.db_url == "sqlite:///elsewhere.db" and s.s3_endpoint_url == "http://minio:9000"
    assert s.user_agent == "tester"


def test_every_variable_names_one_setting():
    variables = Settings.variables()
    assert variables["REVIEWOPS_CRAWL_BACKOFF_MAX"] == "crawl.backoff_max"
    assert variables["REVIEWOPS_SLACK_BOT_TOKEN"] == "slack.bot_token"
    assert variables["REVIEWOPS_DATABASE_URL"] == "database_url"
    groups = {path.split(".")[0] for path in variables.values() if "." in path}
    top = [path for path in variables.values() if "." not in path]
    # a top-level name that starts with a group's name would be split into that group
    assert not [name for name in top for g in groups if name.startswith(f"{g}_")]


def test_secrets_in_groups_are_masked(home, monkeypatch):
    bot_token = "xoxb-" + "very-secret"  # built here so no token-shaped string is tracked
    monkeypatch.setenv("REVIEWOPS_SLACK_BOT_TOKEN", bot_token)
    monkeypatch.setenv("REVIEWOPS_SLACK_WEBHOOK_URL", "https://hooks.example/T0/B0/hooksecret")
    monkeypatch.setenv("REVIEWOPS_ADMIN_TOKEN", "admin-secret")
    monkeypatch.setenv("REVIEWOPS_MLFLOW_BACKEND_STORE_URI", "postgresql+psycopg://ml:pw123@db/mlflow")
    s = Settings()
    shown = s.redacted()
    assert shown["slack"]["bot_token"] == "***" and shown["slack"]["webhook_url"] == "***"
    assert shown["admin_token"] == "***" and shown["slack"]["channel"] == "#reviewops"
    assert shown["mlflow"]["backend_store_uri"] == "postgresql+psycopg://ml:***@db/mlflow"
    for secret in (bot_token, "hooksecret", "admin-secret", "pw123"):
        assert secret not in str(shown)
    text = redact_text(f"token {bot_token}, hook https://hooks.example/T0/B0/hooksecret, admin-secret", s)
    assert "very-secret" not in text and "hooksecret" not in text and "admin-secret" not in text


def test_an_invalid_value_names_its_variable(home, monkeypatch):
    monkeypatch.setenv("REVIEWOPS_CRAWL_MAX_PAGES", "0")
    monkeypatch.setenv("REVIEWOPS_LABEL_POSITIVE_MIN", "3")
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert "REVIEWOPS_CRAWL_MAX_PAGES" in message and "greater than or equal to 1" in message
    assert "REVIEWOPS_LABEL_POSITIVE_MIN" in message
    monkeypatch.setenv("REVIEWOPS_TRANSFORMER_PARAMS", "{not json")
    with pytest.raises(SettingsError, match="REVIEWOPS_TRANSFORMER_PARAMS: not valid JSON"):
        Settings()
