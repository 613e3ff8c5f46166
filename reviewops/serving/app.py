"""The prediction API (FastAPI). `create_app(settings)` only assembles it: state, lifespan, middlewares,
error handlers and one router per resource (`serving/api/routes/`); routes are thin, the logic lives in
the library. `reviewops serve` runs it with uvicorn. See fastapi/README.md for the contract.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from reviewops.config import Settings, get_settings
from reviewops.errors import ReviewOpsError
from reviewops.serving.api.routes import admin, feedback, health, models, monitoring, movies, predict
from reviewops.serving.docs import add_docs
from reviewops.serving.metrics import Metrics
from reviewops.serving.middleware import BodyLimit, Observe
from reviewops.serving.models import ModelManager
from reviewops.serving.runtime import MicroBatcher, PredictionLog
from reviewops.store import db

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, manager: ModelManager | None = None,
               poll: bool = True) -> FastAPI:
    """The API for `settings`; `poll=False` loads the champion once at start instead of watching it."""
    settings = settings or get_settings()
    app = FastAPI(title="ReviewOps API", version="1", lifespan=_lifespan,
                  description="Korean movie-review sentiment (긍정/부정). Contract: fastapi/README.md.",
                  docs_url=None, redoc_url=None, openapi_url=None)  # add_docs: the page without a CDN
    app.state.settings, app.state.sessions, app.state.poll = settings, db.sessions(settings), poll
    app.state.manager = manager or ModelManager(settings)
    app.state.metrics = Metrics()

    app.add_middleware(Observe, on_done=app.state.metrics.observe_request)
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes,
                       timeout=settings.api.body_timeout_seconds)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(ReviewOpsError, _library_error)

    app.include_router(predict.router_for(settings))
    for resource in (feedback, models, movies, monitoring, health, admin):
        app.include_router(resource.router)
    add_docs(app)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    state.prediction_log = PredictionLog(state.sessions)
    state.metrics.start_log(state.sessions)
    state.batcher = MicroBatcher(state.manager, state.settings.serve.batch_max_size,
                                 state.settings.serve.batch_max_wait_ms / 1000, state.metrics.batch.observe)
    if state.poll:
        await run_in_threadpool(state.manager.start)
    elif state.manager.current is None:
        await run_in_threadpool(state.manager.refresh)
    from reviewops import insights

    try:  # konlpy's JVM must start on the main thread, or the process cannot exit afterwards
        insights.warm_up()
    except ReviewOpsError as exc:
        log.warning("movie keywords unavailable: %s", exc)
    yield
    state.manager.stop()
    await state.batcher.close()
    await run_in_threadpool(state.prediction_log.close)
    await run_in_threadpool(state.metrics.close)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # the schema's HTTPValidationError, without echoing the (possibly megabytes of) input back
    problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "invalid"),
                 "type": e.get("type", "invalid")} for e in exc.errors()[:10]]
    return JSONResponse(status_code=422, content={"detail": problems})


async def _library_error(request: Request, exc: ReviewOpsError) -> JSONResponse:
    """Every library error, answered with the status its class carries (errors.py)."""
    first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
    return JSONResponse(status_code=exc.http_status, content={"detail": first_line[:500]})
