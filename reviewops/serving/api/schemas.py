"""Request and response models of the v1 API: what the OpenAPI schema documents (fastapi/README.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from reviewops.config import Settings
from reviewops.data.labels import FLAG_NAMES_KO, LABEL_NAMES_KO, VERDICT_UNCERTAIN

Label = Literal[*LABEL_NAMES_KO.values()]  # 긍정, 부정
Verdict = Literal[*LABEL_NAMES_KO.values(), VERDICT_UNCERTAIN]
Flag = Literal[*FLAG_NAMES_KO]
LabelId = Literal[0, 1]


class Problem(BaseModel):
    """The body of an error answer other than 422."""

    detail: str


# --- prediction -------------------------------------------------------------------------------------


def predict_request(settings: Settings) -> type[BaseModel]:
    """The body of POST /v1/predict, with the limits of `settings` (REVIEWOPS_API_MAX_TEXTS, ...). A blank
    text is not an error: it is answered 애매함 with the flag `empty` (`reviewops.predict`)."""
    text = Annotated[str, StringConstraints(max_length=settings.api.max_text_chars)]
    texts = Field(min_length=1, max_length=settings.api.max_texts)
    explain = Field(False, description="Also answer, per text, the words that pushed the score up or down "
                    f"(at most {settings.api.max_explain_texts} texts per request).")
    return create_model("PredictIn", texts=(list[text], texts), explain=(bool, explain))


class ModelRef(BaseModel):
    name: str
    version: str


class Span(BaseModel):
    start: int = Field(ge=0)
    end: int = Field(ge=0, description="text[start:end] is the span's text")
    text: str
    weight: float = Field(description="logit units: > 0 pushed toward 긍정, < 0 toward 부정")


class PredictionOut(BaseModel):
    id: str | None = Field(description="Prediction id, for POST /v1/feedback; null for a blank text (not "
                           "scored, not logged).")
    label: Label | None
    label_id: LabelId | None
    score: float | None = Field(ge=0.0, le=1.0, description="P(positive)")
    verdict: Verdict = Field(description="the label, or 애매함 when the score is in the uncertain band "
                             "(settings serve.uncertain_low/high) or a flag is raised")
    flags: list[Flag] = Field(description="why the input is outside what the model knows: empty, "
                              "no_hangul, emoji_only, mostly_unseen")
    explanation: list[Span] | None = Field(None, description="only when the request asked explain: the "
                                           "text's words with their weights, ordered by start")


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
    reason_code: str = Field("", description="what decided (`evaluate.gate`'s codes, manual_promote, rolled_back); "
                                             "empty for a version gated before codes were recorded")
    reason_args: dict[str, float | str] = Field(default_factory=dict,
                                                description="the figures and names the reason was written from")
    slices: dict[str, float] = Field(default_factory=dict, description="the evaluation per slice of the set: "
                                     "slice.<slice>.<metric>, slices by text length and by source")


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
    name: str = Field(description="the title, or for an untitled id of the NAVER history e.g. 'NAVER 영화 #12345'")
    crawled: bool = Field(description="collected from a site (CGV, Megabox), not ingested history")
    reviews: int = Field(description="kept reviews")
    scored: int = Field(description="kept reviews with at least one prediction")


class MovieSource(BaseModel):
    source: str
    name: str = Field(description="as people read it: CGV, 메가박스, NAVER")
    crawled: bool
    movies: int = Field(description="movies with a kept review, whatever the filters")


class MovieList(BaseModel):
    movies: list[Movie] = Field(description="crawled films first, then the history, each most reviewed first")
    total: int = Field(description="movies matching the filters, before the limit")
    sources: list[MovieSource] = Field(description="crawled sources first")


class SummaryModel(BaseModel):
    name: str
    version: str | None = Field(description="the one version whose predictions were used, if only one")
    versions: list[str]
    requested: str | None
    fallback: bool = Field(description="the requested version had not scored the movie: newest predictions")


class DayCount(BaseModel):
    date: str = Field(description="YYYY-MM-DD (KST): the day, or the Monday of the week")
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


class Disagreement(BaseModel):
    review_id: int
    feedback_id: str = Field(description="the prediction's id for POST /v1/feedback")
    text: str
    rating: int | None
    kind: str = Field(description="review, or expectation (a Megabox 기대평)")
    label: LabelId = Field(description="the reviewer's rating's label")
    predicted: LabelId
    score: float = Field(description="P(positive)")
    feedback: LabelId | None = Field(description="the label a user gave through feedback, if any")


class Disagreements(BaseModel):
    count: int = Field(description="reviews whose rating label and prediction differ")
    reviews: list[Disagreement] = Field(description="not yet judged first, then the most confident predictions")


class AspectCount(BaseModel):
    aspect: str = Field(description="a point Megabox reviewers tick: 연출, 스토리, 영상미, 배우, OST")
    reviews: int = Field(description="kept reviews naming it")
    share: float = Field(description="of the film's kept reviews")
    positive_share: float | None = Field(description="positive among those naming it (rating label, else prediction)")


class MovieSummary(BaseModel):
    movie: Movie
    model: SummaryModel
    by_day: list[DayCount] = Field(description="per day (KST), ascending")
    by_week: list[DayCount] = Field(description="per week (KST), dated by its Monday, ascending")
    rating_vs_prediction: list[RatingCount]
    keywords: Keywords = Field(description="of the reviews whose rating does not contradict the prediction")
    representative: Representative = Field(description="reviews whose rating does not contradict the prediction")
    disagreements: Disagreements
    aspects: list[AspectCount] = Field(description="Megabox's points; empty for other films")


# --- monitoring -------------------------------------------------------------------------------------


class TrafficHour(BaseModel):
    hour: str = Field(description="start of the hour, ISO 8601 UTC (2026-12-06T09:00:00Z); every hour of "
                      "the window, empty ones included")
    requests: int = Field(description="POST /v1/predict requests answered in the hour, by any API worker")
    predictions: int = Field(description="texts those requests predicted")
    errors: int = Field(0, description="of the requests, those answered with a status of 400 or above")


class LatencyHour(BaseModel):
    hour: str = Field(description="start of the hour, ISO 8601 UTC; only hours with requests")
    p50: float = Field(description="milliseconds, over the hour's POST /v1/predict requests")
    p95: float
    p99: float


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
    latency: list[LatencyHour] = Field(default=[], description="latency percentiles per hour")
    prediction_mix: PredictionMix
    mean_confidence: float | None
    latency_ms: Latency = Field(description="percentiles over the whole window's POST /v1/predict requests")
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

