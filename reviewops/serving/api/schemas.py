"""Request and response models of the v1 API: what the OpenAPI schema documents (fastapi/README.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model
from pydantic_core import PydanticCustomError

from reviewops.config import Settings
from reviewops.data.labels import LABEL_NAMES_KO

Label = Literal[*LABEL_NAMES_KO.values()]  # 긍정, 부정
LabelId = Literal[0, 1]


class Problem(BaseModel):
    """The body of an error answer other than 422."""

    detail: str


# --- prediction -------------------------------------------------------------------------------------


def _not_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("blank", "text is blank")
    return text


def predict_request(settings: Settings) -> type[BaseModel]:
    """The body of POST /v1/predict, with the limits of `settings` (REVIEWOPS_API_MAX_TEXTS, ...)."""
    text = Annotated[str, StringConstraints(min_length=1, max_length=settings.api.max_text_chars),
                     AfterValidator(_not_blank)]
    texts = Field(min_length=1, max_length=settings.api.max_texts)
    return create_model("PredictIn", texts=(list[text], texts))


class ModelRef(BaseModel):
    name: str
    version: str


class PredictionOut(BaseModel):
    id: str = Field(description="Prediction id, for POST /v1/feedback.")
    label: Label
    label_id: LabelId
    score: float = Field(ge=0.0, le=1.0, description="P(positive)")


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[PredictionOut]


# --- feedback ---------------------------------------------------------------------------------------


class FeedbackIn(BaseModel):
    prediction_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    label: Label | LabelId
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class FeedbackOut(BaseModel):
    id: int
    prediction_id: str
    label_id: LabelId


# --- models -----------------------------------------------------------------------------------------


class ServedModel(BaseModel):
    """The model the API serves now. `from_cache` appears (true) only while it came from the local cache
    because MLflow was unreachable."""

    name: str
    version: str
    backend: str = Field(description="baseline, transformer or onnx-int8")
    loaded_at: str = Field(description="UTC, ISO 8601")
    aliases: list[str] = []
    trainer: str = ""
    snapshot_id: str = ""
    metrics: dict[str, float] = Field(default={}, description="the training run's summary metrics")
    from_cache: bool = False


class ServingCostOut(BaseModel):
    batch_reviews_per_second: float = Field(description="the best batch of 500 evaluation texts, on CPU")
    single_p50_ms: float = Field(description="one review a call, median latency")
    single_p99_ms: float


class ModelVersion(BaseModel):
    version: str
    aliases: list[str]
    trainer: str
    accuracy: float | None
    decision: str = Field(description="the gate's decision: champion, challenger, rolled_back or empty")
    reason: str
    created_at: str | None = Field(description="UTC, ISO 8601")
    metrics: dict[str, float]
    cost: ServingCostOut | None = Field(
        None, description="the serving cost measured at gate time; null for a version gated before it was")


class ModelHistory(BaseModel):
    name: str
    champion: str | None = Field(description="the version holding the champion alias in the registry")
    versions: list[ModelVersion] = Field(description="oldest first")


# --- movies -----------------------------------------------------------------------------------------


class Movie(BaseModel):
    id: int
    source: str
    source_movie_id: str
    title: str | None
    reviews: int = Field(description="kept reviews")
    scored: int = Field(description="kept reviews with at least one prediction")


class MovieList(BaseModel):
    movies: list[Movie] = Field(description="most reviewed first")


class SummaryModel(BaseModel):
    name: str
    version: str | None = Field(description="the one version whose predictions were used, if only one")
    versions: list[str]
    requested: str | None
    fallback: bool = Field(description="the requested version had not scored the movie: newest predictions")


class DayCount(BaseModel):
    date: str = Field(description="YYYY-MM-DD")
    positive: int
    negative: int


class RatingCount(BaseModel):
    rating: int = Field(ge=1, le=10)
    positive: int
    negative: int


class Keyword(BaseModel):
    word: str
    count: int


class Keywords(BaseModel):
    positive: list[Keyword] = Field(description="most used first")
    negative: list[Keyword]


class RepresentativeReview(BaseModel):
    text: str
    score: float = Field(description="P(positive)")
    rating: int | None


class Representative(BaseModel):
    positive: list[RepresentativeReview]
    negative: list[RepresentativeReview]


class MovieSummary(BaseModel):
    movie: Movie
    model: SummaryModel
    by_day: list[DayCount]
    rating_vs_prediction: list[RatingCount]
    keywords: Keywords
    representative: Representative


# --- monitoring -------------------------------------------------------------------------------------


class TrafficHour(BaseModel):
    hour: str = Field(description="YYYY-MM-DD HH (UTC)")
    requests: int
    predictions: int


class PredictionMix(BaseModel):
    positive: int
    negative: int


class Latency(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None


class FeedbackAgreement(BaseModel):
    n: int
    agreement: float | None = Field(description="share of feedback that agrees with the prediction")


class DriftCheck(BaseModel):
    model_config = ConfigDict(extra="allow")  # a check may carry more (n_labelled, confusion)

    name: str
    value: float | None
    reference: float | None
    threshold: float
    crossed: bool
    detail: str


class DriftReport(BaseModel):
    """The latest report of the model monitor, as it stored it."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(description="ok, drift or insufficient_data")
    n_reference: int
    n_current: int
    checks: list[DriftCheck]
    alerts: list[str]
    model: ModelRef | None = None
    window: dict[str, str] | None = Field(default=None, description="start and end, ISO 8601")


class MonitoringSummary(BaseModel):
    window_hours: int
    traffic: list[TrafficHour]
    prediction_mix: PredictionMix
    mean_confidence: float | None
    latency_ms: Latency
    feedback: FeedbackAgreement
    drift: DriftReport | None


# --- health and admin -------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    model: ModelRef


class NotReady(BaseModel):
    status: Literal["not ready"]
    detail: str | None


class Reloaded(BaseModel):
    model: ServedModel
    changed: bool
    error: str | None = Field(description="why the registry could not be read, when it could not")


class PromoteIn(BaseModel):
    version: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}$")]


class Promoted(BaseModel):
    champion: str


class RolledBack(BaseModel):
    champion: str
    was: str

