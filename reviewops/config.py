"""Settings: every URL, path, threshold and secret of the platform, in one place.

Values come from `REVIEWOPS_*` environment variables or a `.env` file; everything has an
embedded default under `REVIEWOPS_HOME` (default `./var`) so one machine without Docker runs
the whole platform on SQLite and a local artifact folder.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # an empty variable is an unset one: compose passes optional settings as `${VAR:-}`
    model_config = SettingsConfigDict(
        env_prefix="REVIEWOPS_", env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    # --- locations -----------------------------------------------------------------------
    home: Path = Field(Path("var"), description="Root folder of the embedded defaults.")
    database_url: str | None = Field(
        None, description="Review store (SQLAlchemy URL). Default: SQLite file under home."
    )
    artifact_uri: str | None = Field(
        None, description="Object store for snapshots and raw crawls: a folder or s3://bucket/prefix."
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking server or backend. Default: SQLite under home."
    )
    mlflow_artifact_root: str | None = Field(
        None, description="Artifact root for new MLflow experiments (embedded mode only)."
    )
    mlflow_experiment: str = "review-sentiment"
    model_name: str = Field("review-sentiment", description="Registered model name.")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO); empty for AWS.")
    corpus: Path | None = Field(None, description="Corpus for `make demo`; default: the bundled sample.")

    # --- cleaning --------------------------------------------------------------------------
    min_text_chars: int = Field(2, ge=1)
    max_text_chars: int = Field(1000, ge=10, description="Longer texts are rejected at ingest.")
    min_hangul_ratio: float = Field(0.3, ge=0.0, le=1.0, description="Share of letters that are Hangul.")
    max_repeat: int = Field(2, ge=1, description="Runs of one character are squeezed to this length.")

    # --- labels ----------------------------------------------------------------------------
    label_negative_max: int = Field(4, ge=1, le=10, description="Ratings up to this are negative.")
    label_positive_min: int = Field(9, ge=1, le=10, description="Ratings from this are positive.")

    # --- snapshots and evaluation ---------------------------------------------------------
    test_percent: int = Field(10, ge=1, le=50, description="Share of reviews (by id hash) held out for test.")
    valid_percent: int = Field(5, ge=0, le=50, description="Share held out for validation.")
    eval_max_chars: int = Field(140, description="NSMC-style evaluation: texts shorter than this.")

    # --- promotion gate --------------------------------------------------------------------
    gate_metric: str = "accuracy"
    gate_margin: float = Field(0.002, ge=0.0, description="A challenger must beat the champion by this.")
    gate_floor: float = Field(0.75, ge=0.0, le=1.0, description="A first model must reach this.")

    # --- CPU model ----------------------------------------------------------------------------
    model_params: dict[str, Any] = Field(
        default_factory=dict, description='Baseline hyperparameters as JSON, e.g. {"C": 4, "char_features": 1048576}.'
    )

    # --- crawling -----------------------------------------------------------------------------
    user_agent: str = "ReviewOps/0.1 (+https://github.com/reviewops/reviewops; Korean review sentiment research)"
    crawl_delay: float = Field(1.0, ge=0.0, description="Seconds between two requests to one host.")
    crawl_timeout: float = Field(10.0, gt=0.0, description="Seconds before a request times out.")
    crawl_retries: int = Field(4, ge=0, description="Retries on 429, 5xx and timeouts.")
    crawl_backoff: float = Field(0.5, ge=0.0, description="First backoff in seconds; doubles, plus jitter.")
    crawl_backoff_max: float = Field(30.0, ge=0.0)
    crawl_max_failures: int = Field(3, ge=1, description="Failed movies in a row before a source stops.")
    crawl_max_pages: int = Field(50, ge=1, description="Pages per movie and run (again as many to back-fill).")
    selenium_fallback: bool = Field(True, description="Render pages in headless Chromium when JSON fails.")
    cgv_base_url: str = "http://www.cgv.co.kr"
    cgv_list_path: str = "/movies/?lt=1&ft=1"
    cgv_detail_path: str = "/movies/detail-view/?midx={code}"
    cgv_reviews_path: str = "/common/ajax/point.aspx/GetMoviePointVariableList"
    cgv_page_size: int = 6
    cgv_movie_selector: str = "div.box-image a[href*='midx=']"
    cgv_title_selector: str = "div.box-contents strong.title"
    cgv_review_selector: str = "li.box-comment"
    cgv_plot_selector: str = "div.sect-story-movie"
    megabox_base_url: str = "https://www.megabox.co.kr"
    megabox_list_path: str = "/on/oh/oha/Movie/selectMovieList.do"
    megabox_reviews_path: str = "/on/oh/oha/Movie/selectOneLnList.do"
    megabox_review_page_path: str = "/movie-detail/comment?rpstMovieNo={code}&page={page}"
    megabox_page_size: int = 10
    megabox_id_field: str = "oneLnEvalNo"
    megabox_score_field: str = "evalPoint"
    megabox_review_selector: str = ".story-box .story-wrap.review"

    transformer_params: dict[str, Any] = Field(
        default_factory=dict, description='Transformer fine-tuning parameters as JSON, e.g. {"epochs": 3}.'
    )

    # --- Slack ----------------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(None, description="Bot token (xoxb-…); or use a webhook.")
    slack_channel: str = "#reviewops"
    slack_webhook_url: SecretStr | None = Field(None, description="Incoming webhook URL.")
    slack_api_url: str | None = Field(None, description="Slack Web API base URL (tests point it elsewhere).")
    mlflow_ui_url: str | None = Field(None, description="MLflow UI address for links in reports.")

    # --- prediction --------------------------------------------------------------------------
    predict_batch_size: int = Field(20_000, ge=1)

    # --- orchestration (Airflow) ------------------------------------------------------------
    retrain_min_new_labels: int = Field(
        5000, ge=1, description="New labelled reviews since the last training that trigger an early retrain."
    )
    task_retries: int = Field(2, ge=0, description="Airflow retries of a failed task (exponential backoff).")
    task_retry_delay: float = Field(60.0, ge=0.0, description="Seconds before the first retry of a task.")
    transformer_queue: str | None = Field(
        None, description="Airflow queue of a GPU worker; when set, sentiment_train also fine-tunes the transformer."
    )
    mlflow_backend_store_uri: str | None = Field(
        None, description="`reviewops mlflow-server`: its backend store. Default: SQLite under home."
    )
    mlflow_artifacts_destination: str | None = Field(
        None, description="`reviewops mlflow-server`: where proxied artifacts go (folder or s3://...)."
    )

    # --- serving (FastAPI, Streamlit, nginx) -----------------------------------------------------
    api_url: str = Field("http://127.0.0.1:8000", description="Where the Streamlit app reaches the API.")
    api_max_texts: int = Field(1000, ge=1, description="Most texts in one /v1/predict request.")
    api_max_text_chars: int = Field(2000, ge=1, description="Longest text /v1/predict accepts.")
    api_max_body_bytes: int = Field(2_000_000, ge=1024, description="Larger request bodies get 413.")
    api_max_header_bytes: int = Field(16_384, ge=1024, description="Request line and headers over this get 431 "
                                      "and the connection is closed (the API holds no more of them in memory).")
    api_header_timeout_seconds: float = Field(10.0, gt=0.0, description="A connection that has not sent a "
                                              "request's headers within this is closed (slow clients).")
    api_body_timeout_seconds: float = Field(30.0, gt=0.0, description="A request body not received within "
                                            "this gets 408 and the connection is closed (slow clients).")
    tls_cert: Path | None = Field(None, description="`reviewops proxy`: TLS certificate (PEM, full chain); "
                                  "with tls_key, the platform is served over HTTPS.")
    tls_key: Path | None = Field(None, description="`reviewops proxy`: the certificate's private key (PEM).")
    admin_token: SecretStr | None = Field(None, description="Bearer token of the admin endpoints (reload, "
                                          "promote, rollback); unset: they are refused.")
    model_poll_seconds: float = Field(30.0, gt=0.0, description="How often the API checks the champion alias.")
    serve_batch_max_size: int = Field(64, ge=1, description="Transformer micro-batching: most texts per batch.")
    serve_batch_max_wait_ms: float = Field(2.0, ge=0.0, description="Transformer micro-batching: how long an idle model waits for more texts.")
    serve_prefer_onnx: bool = Field(True, description="Serve a transformer's ONNX int8 export on CPU when present.")

    # --- monitoring ---------------------------------------------------------------------------
    monitor_window_hours: int = Field(24, ge=1, description="model_monitor compares reviews collected in this window.")
    monitor_reference_rows: int = Field(20_000, ge=100, description="Rows sampled from the champion's snapshot.")
    monitor_min_reviews: int = Field(30, ge=1, description="Fewer recent reviews than this: no drift verdict.")
    drift_psi_threshold: float = Field(0.2, gt=0.0, description="PSI above this is drift (length, scores).")
    drift_unknown_rate_delta: float = Field(0.10, gt=0.0, description="Rise in the unknown-token rate that is drift.")
    drift_positive_share_delta: float = Field(0.15, gt=0.0, description="Change in the positive share that is drift.")
    drift_confidence_drop: float = Field(0.05, gt=0.0, description="Fall in mean confidence that is drift.")
    agreement_min: float = Field(
        0.75, ge=0.0, le=1.0, description="Lowest agreement of predictions with reviewers' own ratings."
    )

    @field_validator("label_positive_min")
    @classmethod
    def _labels_do_not_overlap(cls, v: int, info):
        neg = info.data.get("label_negative_max", 4)
        if v <= neg:
            raise ValueError(f"label_positive_min ({v}) must be above label_negative_max ({neg})")
        return v

    @model_validator(mode="after")
    def _absolute_home(self) -> Settings:
        self.home = self.home.expanduser().resolve()
        return self

    # --- derived values (the only place each default location is spelled out) -------------
    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'reviews.db'}"

    @property
    def artifacts(self) -> str:
        return self.artifact_uri or str(self.home / "artifacts")

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> str:
        return self.mlflow_artifact_root or (self.home / "mlruns").as_uri()

    @property
    def mlflow_backend(self) -> str:
        return self.mlflow_backend_store_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def mlflow_artifacts_dest(self) -> str:
        return self.mlflow_artifacts_destination or str(self.home / "mlartifacts")

    @property
    def model_cache(self) -> Path:
        return self.home / "model-cache"

    def redacted(self) -> dict[str, object]:
        """Settings as shown to people: secrets masked, credentials removed from URLs."""
        out: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***" if value.get_secret_value() else ""
            elif isinstance(value, str):
                value = redact_url(value)
            out[name] = value
        return out


def redact_url(url: str) -> str:
    """Drop a password from a URL (`scheme://user:secret@host` → `scheme://user:***@host`)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def redact_text(text: str, settings: Settings | None = None) -> str:
    """Mask what must never reach a log or a message: the settings' secret values and URL passwords."""
    import re

    if settings is not None:
        for name in type(settings).model_fields:
            value = getattr(settings, name)
            if isinstance(value, SecretStr) and len(value.get_secret_value()) >= 4:
                text = text.replace(value.get_secret_value(), "***")
    return re.sub(r"(://[^/\s:@]+):[^@\s/]+@", r"\1:***@", text)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
