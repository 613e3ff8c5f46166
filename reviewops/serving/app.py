"""The prediction API (FastAPI). Endpoints are thin: the logic lives in the library.

(No `from __future__ import annotations` here: FastAPI must see the request models built in create_app.)

`create_app(settings)` builds the app; `reviewops serve` runs it with uvicorn. See fastapi/README.md
for the contract.
"""


import asyncio
import json
import logging
import secrets
import time
import uuid
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi import Path as FastApiPath
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, Field, StringConstraints, create_model
from pydantic_core import PydanticCustomError

from reviewops.config import Settings, get_settings
from reviewops.data.labels import LABEL_NAMES_KO
from reviewops.errors import ReviewOpsError, StoreError
from reviewops.serving.models import ModelManager
from reviewops.serving.runtime import LatencyWindow, MicroBatcher, PredictionLog
from reviewops.store import db

log = logging.getLogger(__name__)
LABEL_IDS = {"긍정": 1, "부정": 0, 1: 1, 0: 0}


class ModelRef(BaseModel):
    name: str
    version: str


class PredictionOut(BaseModel):
    id: str = Field(description="Prediction id, for POST /v1/feedback.")
    label: Literal["긍정", "부정"]
    label_id: Literal[0, 1]
    score: float = Field(ge=0.0, le=1.0, description="P(positive)")


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[PredictionOut]


class FeedbackIn(BaseModel):
    prediction_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    label: Literal["긍정", "부정", 0, 1]
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class FeedbackOut(BaseModel):
    id: int
    prediction_id: str
    label_id: Literal[0, 1]


def _not_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("blank", "text is blank")
    return text


class PromoteIn(BaseModel):
    version: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}$")]


class BodyLimit:
    """413 for a request body over the limit, declared (Content-Length) or streamed; 408 for one that
    does not arrive within `timeout` seconds (a slow client holds a connection and memory). Bodies are
    small (a few MB at most), so the middleware reads one whole and hands it on."""

    def __init__(self, app, max_bytes: int, timeout: float) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or {}).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send, 413, f"request body over {self.max_bytes:,} bytes")
        chunks, seen = [], 0
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away
                    chunks.append(message.get("body", b""))
                    seen += len(chunks[-1])
                    if seen > self.max_bytes:
                        return await self._reject(send, 413, f"request body over {self.max_bytes:,} bytes")
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            log.warning("request body not received within %.0f s: 408", self.timeout)
            return await self._reject(send, 408, f"request body not received within {self.timeout:g} s")
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _reject(self, send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,  # the rest of the body is not read
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class Observe:
    """Request count and latency by route (plain ASGI: no task or stream per request)."""

    def __init__(self, app, on_done) -> None:
        self.app, self.on_done = app, on_done

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def sent(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            self.on_done(scope, status, time.perf_counter() - start)


def _metrics():
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry()
    return registry, {
        "requests": Counter("reviewops_api_requests", "HTTP requests", ["method", "route", "status"],
                            registry=registry),
        "latency": Histogram("reviewops_api_request_seconds", "Request latency", ["route"], registry=registry,
                             buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)),
        "batch": Histogram("reviewops_api_batch_size", "Texts per model call", registry=registry,
                           buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)),
        "predictions": Counter("reviewops_api_predictions", "Predictions served", ["label"], registry=registry),
        "model": Gauge("reviewops_api_model_info", "The model being served", ["name", "version", "backend"],
                       registry=registry),
    }


def create_app(settings: Settings | None = None, manager: ModelManager | None = None,
               poll: bool = True) -> FastAPI:
    settings = settings or get_settings()
    sessions = db.sessions(settings)
    manager = manager or ModelManager(settings)
    registry, metrics = _metrics()
    latencies = LatencyWindow()
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["log"] = app.state.prediction_log = PredictionLog(sessions)
        state["batcher"] = MicroBatcher(manager, settings.serve_batch_max_size,
                                        settings.serve_batch_max_wait_ms / 1000, metrics["batch"].observe)
        if poll:
            await run_in_threadpool(manager.start)
        elif manager.current is None:
            await run_in_threadpool(manager.refresh)
        from reviewops import insights

        try:  # konlpy's JVM must start on the main thread, or the process cannot exit afterwards
            insights.warm_up()
        except ReviewOpsError as exc:
            log.warning("movie keywords unavailable: %s", exc)
        yield
        manager.stop()
        await state["batcher"].close()
        await run_in_threadpool(state["log"].close)

    app = FastAPI(title="ReviewOps API", version="1", lifespan=lifespan,
                  description="Korean movie-review sentiment (긍정/부정). Contract: fastapi/README.md.")
    app.state.manager, app.state.settings, app.state.sessions = manager, settings, sessions

    max_texts, max_chars = settings.api_max_texts, settings.api_max_text_chars
    Text = Annotated[str, StringConstraints(min_length=1, max_length=max_chars), AfterValidator(_not_blank)]
    PredictIn = create_model("PredictIn", texts=(list[Text], Field(min_length=1, max_length=max_texts)))

    def observed(scope: dict, status: int, elapsed: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics["requests"].labels(scope.get("method", ""), path, str(status)).inc()
        metrics["latency"].labels(path).observe(elapsed)
        if path == "/v1/predict":
            latencies.add(elapsed)

    app.add_middleware(Observe, on_done=observed)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes, timeout=settings.api_body_timeout_seconds)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        # the schema's HTTPValidationError, without echoing the (possibly megabytes of) input back
        problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "invalid"), "type": e.get("type", "invalid")}
                    for e in exc.errors()[:10]]
        return JSONResponse(status_code=422, content={"detail": problems})

    @app.exception_handler(ReviewOpsError)
    async def library_error(request: Request, exc: ReviewOpsError):
        return JSONResponse(status_code=503, content={"detail": str(exc).splitlines()[0][:500]})

    def admin(authorization: Annotated[str | None, Header()] = None) -> None:
        token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        if not token:
            raise HTTPException(403, "admin actions are disabled: REVIEWOPS_ADMIN_TOKEN is not set")
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not given or not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong admin token", headers={"WWW-Authenticate": "Bearer"})

    # --- prediction ---------------------------------------------------------------------------------
    @app.post("/v1/predict", response_model=PredictResponse,
              responses={413: {"description": "body too large"}, 503: {"description": "no model loaded"}})
    async def predict(body: PredictIn) -> PredictResponse:  # type: ignore[valid-type]
        texts: list[str] = body.texts
        model = manager.current
        if model is None:
            raise HTTPException(503, "no model loaded yet: the registry has no champion or is unreachable")
        if model.batched:
            scores, model = await state["batcher"].predict(texts)
        else:
            scores = await run_in_threadpool(model.predict_proba, texts)
            metrics["batch"].observe(len(texts))
        out, rows = [], []
        request_id = uuid.uuid4().hex[:16]  # a prediction id is its request's id, then its position
        for i, (text, p) in enumerate(zip(texts, scores, strict=True)):
            pid, label = f"{request_id}{i:016x}", int(p >= 0.5)
            out.append(PredictionOut(id=pid, label=LABEL_NAMES_KO[label], label_id=label, score=float(p)))
            rows.append({"public_id": pid, "text": text[:2000], "label": label, "score": float(p),
                         "model_name": model.name, "model_version": model.version})
            metrics["predictions"].labels(LABEL_NAMES_KO[label]).inc()
        state["log"].add(rows)  # written by a background thread, off the request path
        return PredictResponse(model=ModelRef(name=model.name, version=model.version), predictions=out)

    @app.post("/v1/feedback", status_code=201, response_model=FeedbackOut,
              responses={404: {"description": "unknown prediction id"}})
    def feedback(body: FeedbackIn) -> FeedbackOut:
        from sqlalchemy import select

        from reviewops.store.models import Feedback, Prediction

        label = LABEL_IDS[body.label]
        for attempt in range(2):
            with sessions() as s:
                pred_id = s.scalar(select(Prediction.id).where(Prediction.public_id == body.prediction_id))
                if pred_id is not None:
                    fb = Feedback(prediction_id=pred_id, label=label, comment=body.comment)
                    s.add(fb)
                    s.flush()
                    return FeedbackOut(id=fb.id, prediction_id=body.prediction_id, label_id=label)
            if attempt == 0:
                state["log"].flush()  # the prediction may still be on its way to the database
        if state["log"].last_error:  # it may be one the log could not write: say so, not "unknown"
            raise StoreError(f"the review database refuses writes ({state['log'].last_error}): "
                             "predictions and feedback are not stored now")
        raise HTTPException(404, f"unknown prediction id {body.prediction_id!r}")

    # --- models -------------------------------------------------------------------------------------
    @app.get("/v1/model")
    def model_info() -> dict:
        if manager.current is None:
            raise HTTPException(503, "no model loaded yet")
        return manager.current.describe()

    @app.get("/v1/models")
    def models() -> dict:
        from reviewops.registry.mlflow_registry import CHAMPION, Registry

        reg = Registry(settings)
        versions = []
        for v in reg.versions():
            run_metrics = reg.run_metrics(v.run_id)
            created = time.gmtime(v.created_ms / 1000) if v.created_ms is not None else None
            versions.append({"version": v.version, "aliases": v.aliases, "trainer": v.tags.get("trainer", ""),
                             "accuracy": run_metrics.get("accuracy"), "decision": v.tags.get("gate.decision", ""),
                             "reason": v.tags.get("gate.reason", ""),
                             "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", created) if created else None,
                             "metrics": run_metrics})
        champion = reg.by_alias(CHAMPION)
        return {"name": reg.name, "champion": champion.version if champion else None, "versions": versions}

    # --- movies -------------------------------------------------------------------------------------
    @app.get("/v1/movies")
    def movies() -> dict:
        from reviewops import insights

        with sessions() as s:
            return {"movies": insights.list_movies(s)}

    @app.get("/v1/movies/{movie_id}/summary", responses={404: {"description": "unknown movie"}})
    def movie_summary(movie_id: Annotated[int, FastApiPath(ge=1, le=2**31 - 1)]) -> dict:
        from reviewops import insights

        version = manager.current.version if manager.current else None
        with sessions() as s:
            summary = insights.movie_summary(s, movie_id, settings.model_name, version)
        if summary is None:
            raise HTTPException(404, f"unknown movie {movie_id}")
        return summary

    # --- monitoring ---------------------------------------------------------------------------------
    @app.get("/v1/monitoring")
    def monitoring() -> dict:
        from reviewops.serving.monitoring import summary

        return summary(settings, sessions, latencies.percentiles())

    # --- health -------------------------------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "no model loaded"}})
    def readyz() -> JSONResponse:
        if manager.current is None:
            return JSONResponse(status_code=503, content={"status": "not ready", "detail": manager.last_error})
        return JSONResponse({"status": "ready", "model": {"name": manager.current.name,
                                                           "version": manager.current.version}})

    @app.get("/metrics", response_class=Response)
    def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics["model"].clear()
        if manager.current is not None:
            metrics["model"].labels(manager.current.name, manager.current.version, manager.current.backend).set(1)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # --- admin --------------------------------------------------------------------------------------
    @app.post("/v1/admin/reload", dependencies=[Depends(admin)])
    def reload() -> dict:
        changed = manager.refresh()
        if manager.current is None:
            raise HTTPException(503, manager.last_error or "no model loaded")
        return {"model": manager.current.describe(), "changed": changed, "error": manager.last_error}

    @app.post("/v1/admin/promote", dependencies=[Depends(admin)])
    def promote(body: PromoteIn) -> dict:
        from reviewops.registry.mlflow_registry import Registry

        try:
            info = Registry(settings).promote(body.version, "promoted by an admin through the API")
        except ReviewOpsError as exc:
            raise HTTPException(404, str(exc)) from None
        manager.refresh()
        return {"champion": info.version}

    @app.post("/v1/admin/rollback", dependencies=[Depends(admin)])
    def rollback() -> dict:
        from reviewops.registry.mlflow_registry import Registry

        try:
            old, new = Registry(settings).rollback()
        except ReviewOpsError as exc:
            raise HTTPException(409, str(exc)) from None
        manager.refresh()
        return {"champion": new.version, "was": old.version}

    return app
