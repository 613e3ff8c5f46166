"""Settings: every URL, path, threshold and secret of the platform, in one place.

Values come from `REVIEWOPS_*` environment variables or a `.env` file; everything has an
embedded default under `REVIEWOPS_HOME` (default `./var`) so one machine without Docker runs
the whole platform on SQLite and a local artifact folder.

Settings that belong together are grouped, and a group is named after its variables' prefix:
`settings.crawl.backoff_max` is `REVIEWOPS_CRAWL_BACKOFF_MAX`, `settings.slack.bot_token` is
`REVIEWOPS_SLACK_BOT_TOKEN`. Settings without a shared prefix stay at the top (`settings.user_agent`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, get_origin

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

ENV_PREFIX = "REVIEWOPS_"
TIMEZONE = "Asia/Seoul"  # the users' and the schedules' time zone (KST)
# where each service listens by default, on one machine (`make up`) and in compose
PORTS = {"proxy": 8088, "api": 8000, "streamlit": 8501, "mlflow": 5000, "airflow": 8080, "testsite": 8800,
         "slack": 8802}


class Group(BaseModel):
    """A group of settings; unknown keys are ignored, as they are at the top."""


# --- models and training -------------------------------------------------------------------------


class ModelSettings(Group):
    name: str = Field("review-sentiment", description="Registered model name.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description='Baseline hyperparameters as JSON, e.g. {"C": 4, "char_features": 1048576}.',
    )
    poll_seconds: float = Field(30.0, gt=0.0, description="How often the API checks the champion alias.")


class TransformerSettings(Group):
    params: dict[str, Any] = Field(
        default_factory=dict, description='Transformer fine-tuning parameters as JSON, e.g. {"epochs": 3}.'
    )
    queue: str | None = Field(
        None,
        description="Airflow queue of a GPU worker; when set, sentiment_train also fine-tunes the "
        "transformer.",
    )


class LabelSettings(Group):
    negative_max: int = Field(4, ge=1, le=10, description="Ratings up to this are negative.")
    positive_min: int = Field(9, ge=1, le=10, description="Ratings from this are positive.")

    @field_validator("positive_min")
    @classmethod
    def _labels_do_not_overlap(cls, v: int, info):
        neg = info.data.get("negative_max", 4)
        if v <= neg:
            raise ValueError(f"label_positive_min ({v}) must be above label_negative_max ({neg})")
        return v


class GateSettings(Group):
    metric: str = "accuracy"
    margin: float = Field(0.002, ge=0.0, description="A challenger must beat the champion by this.")
    floor: float = Field(0.75, ge=0.0, le=1.0, description="A first model must reach this.")
    # the serving budget: the serving targets on 2 cores; a candidate outside it stays challenger
    min_batch_reviews_per_second: float = Field(
        5000.0, ge=0.0, description="A candidate must score batches at least this fast on CPU (0: no minimum).")
    max_single_p99_ms: float = Field(
        20.0, ge=0.0, description="A candidate's single-review p99 latency on CPU must stay under this (0: no limit).")
    cost_seconds: float = Field(
        4.0, gt=0.0, description="Seconds at most spent measuring a candidate's serving cost at gate time.")


class MlflowSettings(Group):
    tracking_uri: str | None = Field(
        None, description="MLflow tracking server or backend. Default: SQLite under home."
    )
    artifact_root: str | None = Field(
        None, description="Artifact root for new MLflow experiments (embedded mode only)."
    )
    experiment: str = "review-sentiment"
    backend_store_uri: str | None = Field(
        None, description="`reviewops mlflow-server`: its backend store. Default: SQLite under home."
    )
    artifacts_destination: str | None = Field(
        None, description="`reviewops mlflow-server`: where proxied artifacts go (folder or s3://...)."
    )
    ui_url: str | None = Field(None, description="MLflow UI address for links in reports.")


# --- crawling ------------------------------------------------------------------------------------


class CrawlSettings(Group):
    delay: float = Field(1.0, ge=0.0, description="Seconds between two requests to one host.")
    timeout: float = Field(10.0, gt=0.0, description="Seconds before a request times out.")
    retries: int = Field(4, ge=0, description="Retries on 429, 5xx and timeouts.")
    backoff: float = Field(0.5, ge=0.0, description="First backoff in seconds; doubles, plus jitter.")
    backoff_max: float = Field(30.0, ge=0.0)
    max_failures: int = Field(3, ge=1, description="Failed movies in a row before a source stops.")
    max_pages: int = Field(50, ge=1, description="Pages per movie and run (again as many to back-fill).")
    label_expectations: bool = Field(False, description="Give a Megabox 기대평 (written before the film was seen) "
                                     "a training label from its score, as a 관람평 gets.")


class SiteSettings(Group):
    """What every review site has: where it is, where its movie list and reviews are, a page's size."""

    base_url: str
    list_path: str
    reviews_path: str
    page_size: int


class CgvSettings(SiteSettings):
    base_url: str = "http://www.cgv.co.kr"
    list_path: str = "/movies/?lt=1&ft=1"
    detail_path: str = "/movies/detail-view/?midx={code}"
    reviews_path: str = "/common/ajax/point.aspx/GetMoviePointVariableList"
    page_size: int = 6
    movie_selector: str = "div.box-image a[href*='midx=']"
    title_selector: str = "div.box-contents strong.title"
    review_selector: str = "li.box-comment"
    plot_selector: str = "div.sect-story-movie"


class MegaboxSettings(SiteSettings):
    base_url: str = "https://www.megabox.co.kr"
    list_path: str = "/on/oh/oha/Movie/selectMovieList.do"
    reviews_path: str = "/on/oh/oha/Movie/selectOneLnList.do"
    review_page_path: str = "/movie-detail/comment?rpstMovieNo={code}&page={page}"
    page_size: int = 10
    # the fields the site's own scripts read (../shared/docs/sources.md, "Megabox, corrected")
    id_field: str = "onelnEvalNo"
    score_field: str = "spointScore"
    kind_field: str = "onelnEvalDivCd"
    expectation_code: str = Field("EXPE", description="The kind field's value of a 기대평; any other is a 관람평.")
    aspects_field: str = Field("topScorePoint", description="HTML naming the points the reviewer ticked.")
    # 관람평 (class review) and 기대평 (class preview) boxes alike
    review_selector: str = ".story-box .story-wrap"


# --- operations ------------------------------------------------------------------------------------


class SlackSettings(Group):
    bot_token: SecretStr | None = Field(None, description="Bot token (xoxb-…); or use a webhook.")
    channel: str = "#reviewops"
    webhook_url: SecretStr | None = Field(None, description="Incoming webhook URL.")
    api_url: str | None = Field(None, description="Slack Web API base URL (tests point it elsewhere).")


class TaskSettings(Group):
    retries: int = Field(2, ge=0, description="Airflow retries of a failed task (exponential backoff).")
    retry_delay: float = Field(60.0, ge=0.0, description="Seconds before the first retry of a task.")


class ApiSettings(Group):
    url: str = Field(f"http://127.0.0.1:{PORTS['api']}", description="Where the Streamlit app reaches the API.")
    max_texts: int = Field(1000, ge=1, description="Most texts in one /v1/predict request.")
    max_text_chars: int = Field(2000, ge=1, description="Longest text /v1/predict accepts.")
    max_body_bytes: int = Field(2_000_000, ge=1024, description="Larger request bodies get 413.")
    max_header_bytes: int = Field(16_384, ge=1024, description="Request line and headers over this get 431 "
                                  "and the connection is closed (the API holds no more of them in memory).")
    header_timeout_seconds: float = Field(10.0, gt=0.0, description="A connection that has not sent a "
                                          "request's headers within this is closed (slow clients).")
    body_timeout_seconds: float = Field(30.0, gt=0.0, description="A request body not received within "
                                        "this gets 408 and the connection is closed (slow clients).")
    connection_max_age_seconds: float = Field(1.0, ge=0.0, description="A keep-alive connection this old "
                                              "is closed after its next answer, so that a few long-lived "
                                              "clients (nginx's upstream pool, batch jobs) spread over the "
                                              "API's workers again; 0 keeps connections open.")
    max_explain_texts: int = Field(100, ge=1, description="Most texts in one /v1/predict request that asks "
                                   "for explanations (explaining costs more than predicting).")


class ServeSettings(Group):
    batch_max_size: int = Field(64, ge=1, description="Transformer micro-batching: most texts per batch.")
    batch_max_wait_ms: float = Field(
        2.0, ge=0.0, description="Transformer micro-batching: how long an idle model waits for more texts."
    )
    prefer_onnx: bool = Field(True, description="Serve a transformer's ONNX int8 export on CPU when present.")
    uncertain_low: float = Field(0.35, ge=0.0, le=1.0, description="A score (P(positive)) from this to "
                                 "uncertain_high is answered 애매함 instead of a label.")
    uncertain_high: float = Field(0.65, ge=0.0, le=1.0, description="Upper end of the uncertain band.")

    @model_validator(mode="after")
    def _band_in_order(self) -> ServeSettings:
        if self.uncertain_low > self.uncertain_high:
            raise ValueError(f"serve.uncertain_low ({self.uncertain_low}) is above serve.uncertain_high "
                             f"({self.uncertain_high})")
        return self


class TlsSettings(Group):
    cert: Path | None = Field(None, description="`reviewops proxy`: TLS certificate (PEM, full chain); "
                              "with tls_key, the platform is served over HTTPS.")
    key: Path | None = Field(None, description="`reviewops proxy`: the certificate's private key (PEM).")


class MonitorSettings(Group):
    window_hours: int = Field(
        24, ge=1, description="model_monitor compares reviews collected in this window."
    )
    reference_rows: int = Field(20_000, ge=100, description="Rows sampled from the champion's snapshot.")
    # PSI over ten bins drifts by about 9/n on chance alone: from 100 reviews that noise stays well under 0.2
    min_reviews: int = Field(100, ge=1, description="Fewer recent reviews than this: no drift verdict.")


class DriftSettings(Group):
    psi_threshold: float = Field(0.2, gt=0.0, description="PSI above this is drift (length, scores).")
    unknown_rate_delta: float = Field(
        0.10, gt=0.0, description="Rise in the unknown-token rate that is drift."
    )
    positive_share_delta: float = Field(
        0.15, gt=0.0, description="Change in the positive share that is drift."
    )
    confidence_drop: float = Field(0.05, gt=0.0, description="Fall in mean confidence that is drift.")
    significance: float = Field(
        0.01, gt=0.0, lt=1.0, description="A check past its threshold is drift only with a p-value below this."
    )


class Settings(BaseSettings):
    # an empty variable is an unset one: compose passes optional settings as `${VAR:-}`;
    # `_` splits a variable once, after the group's name: REVIEWOPS_CRAWL_BACKOFF_MAX is crawl.backoff_max
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore",
        env_ignore_empty=True, env_nested_delimiter="_", env_nested_max_split=1,
    )

    # --- locations -----------------------------------------------------------------------
    home: Path = Field(Path("var"), description="Root folder of the embedded defaults.")
    database_url: str | None = Field(
        None, description="Review store (SQLAlchemy URL). Default: SQLite file under home."
    )
    artifact_uri: str | None = Field(
        None, description="Object store for snapshots and raw crawls: a folder or s3://bucket/prefix."
    )
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO); empty for AWS.")
    corpus: Path | None = Field(None, description="Corpus for `make demo`; default: the bundled sample.")
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)

    # --- cleaning --------------------------------------------------------------------------
    min_text_chars: int = Field(2, ge=1)
    max_text_chars: int = Field(1000, ge=10, description="Longer texts are rejected at ingest.")
    min_hangul_ratio: float = Field(0.3, ge=0.0, le=1.0, description="Share of letters that are Hangul.")
    max_repeat: int = Field(2, ge=1, description="Runs of one character are squeezed to this length.")

    # --- labels, snapshots, evaluation, the promotion gate ----------------------------------
    label: LabelSettings = Field(default_factory=LabelSettings)
    test_percent: int = Field(10, ge=1, le=50, description="Share of reviews (by id hash) held out for test.")
    valid_percent: int = Field(5, ge=0, le=50, description="Share held out for validation.")
    eval_max_chars: int = Field(140, description="NSMC-style evaluation: texts shorter than this.")
    gate: GateSettings = Field(default_factory=GateSettings)

    # --- models (the CPU baseline and the transformer) ----------------------------------------
    model: ModelSettings = Field(default_factory=ModelSettings)
    transformer: TransformerSettings = Field(default_factory=TransformerSettings)

    # --- crawling -----------------------------------------------------------------------------
    user_agent: str = (
        "ReviewOps/0.1 (+https://github.com/reviewops/reviewops; Korean review sentiment research)"
    )
    crawl: CrawlSettings = Field(default_factory=CrawlSettings)
    selenium_fallback: bool = Field(True, description="Render pages in headless Chromium when JSON fails.")
    cgv: CgvSettings = Field(default_factory=CgvSettings)
    megabox: MegaboxSettings = Field(default_factory=MegaboxSettings)

    # --- Slack ----------------------------------------------------------------------------------
    slack: SlackSettings = Field(default_factory=SlackSettings)

    # --- prediction --------------------------------------------------------------------------
    predict_batch_size: int = Field(20_000, ge=1)

    # --- orchestration (Airflow) ------------------------------------------------------------
    retrain_min_new_labels: int = Field(
        5000, ge=1, description="New labelled reviews since the last training that trigger an early retrain."
    )
    task: TaskSettings = Field(default_factory=TaskSettings)

    # --- serving (FastAPI, Streamlit, nginx) -----------------------------------------------------
    api: ApiSettings = Field(default_factory=ApiSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    admin_token: SecretStr | None = Field(None, description="Bearer token of the admin endpoints (reload, "
                                          "promote, rollback); unset: they are refused.")
    serve: ServeSettings = Field(default_factory=ServeSettings)

    # --- monitoring ---------------------------------------------------------------------------
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    agreement_min: float = Field(
        0.75, ge=0.0, le=1.0, description="Lowest agreement of predictions with reviewers' own ratings."
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _naming_variables(exc) from None
        except SettingsError as exc:  # a value that is not JSON where JSON is expected
            raise _naming_json_variable(exc) from exc.__cause__

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
        return self.mlflow.tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> str:
        return self.mlflow.artifact_root or (self.home / "mlruns").as_uri()

    @property
    def mlflow_backend(self) -> str:
        return self.mlflow.backend_store_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def mlflow_artifacts_dest(self) -> str:
        return self.mlflow.artifacts_destination or str(self.home / "mlartifacts")

    @property
    def model_cache(self) -> Path:
        return self.home / "model-cache"

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Every environment variable the settings read, with the setting it sets (`crawl.backoff_max`)."""
        out: dict[str, str] = {}
        for name in cls.model_fields:
            group = _group(name)
            if group is not None:
                for sub in group.model_fields:
                    out[f"{ENV_PREFIX}{name}_{sub}".upper()] = f"{name}.{sub}"
            else:
                out[f"{ENV_PREFIX}{name}".upper()] = name
        return out

    def redacted(self) -> dict[str, object]:
        """Settings as shown to people, group by group: secrets masked, credentials removed from URLs."""
        return _redacted(self)


def _redacted(model: BaseModel) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            value = _redacted(value)
        elif isinstance(value, SecretStr):
            value = "***" if value.get_secret_value() else ""
        elif isinstance(value, str):
            value = redact_url(value)
        out[name] = value
    return out


def _secrets(model: BaseModel) -> Iterator[str]:
    """The secret values of the settings, in groups too."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _secrets(value)
        elif isinstance(value, SecretStr):
            yield value.get_secret_value()


def _group(name: str) -> type[Group] | None:
    field = Settings.model_fields.get(name)
    annotation = field.annotation if field is not None else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, Group) else None


def _naming_variables(exc: ValidationError) -> ValidationError:
    """The same errors, each located by the variable that sets it (REVIEWOPS_CRAWL_MAX_PAGES)."""
    groups = {name for name in Settings.model_fields if _group(name)}
    errors = []
    for e in exc.errors():
        loc = tuple(e["loc"])
        head = 2 if loc and loc[0] in groups and len(loc) > 1 else 1
        variable = ENV_PREFIX + "_".join(str(part) for part in loc[:head]).upper()
        errors.append({**e, "loc": (variable, *loc[head:])})
    try:
        return ValidationError.from_exception_data(exc.title, errors)
    except (TypeError, ValueError, KeyError):  # an error type pydantic cannot rebuild: keep the original
        return exc


def _naming_json_variable(exc: SettingsError) -> SettingsError:
    """pydantic-settings names the group (`field "model"`); say which variable holds the broken JSON."""
    found = re.search(r'field "(\w+)"', str(exc))
    if found is None or not isinstance(exc.__cause__, ValueError):
        return exc
    name, group = found.group(1), _group(found.group(1))
    if group is None:
        variables = f"{ENV_PREFIX}{name}".upper()
    else:
        json_fields = [sub for sub, f in group.model_fields.items() if get_origin(f.annotation) is dict]
        variables = " or ".join(f"{ENV_PREFIX}{name}_{sub}".upper() for sub in json_fields)
    return SettingsError(f"{variables}: not valid JSON ({exc.__cause__})")


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
    if settings is not None:
        for secret in _secrets(settings):
            if len(secret) >= 4:
                text = text.replace(secret, "***")
    return re.sub(r"(://[^/\s:@]+):[^@\s/]+@", r"\1:***@", text)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
