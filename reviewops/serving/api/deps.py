"""What routes take from the app (`app.state`, set up by `create_app` and its lifespan), as typed
dependencies: `def route(session: SessionDep, manager: ManagerDep)`.

The getters that only read `app.state` are `async`: FastAPI runs a sync dependency in a worker
thread, a hop /v1/predict need not pay for.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session

from reviewops.config import Settings
from reviewops.registry.mlflow_registry import Registry
from reviewops.serving.metrics import Metrics
from reviewops.serving.models import ModelManager
from reviewops.serving.runtime import MicroBatcher, PredictionLog


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_manager(request: Request) -> ModelManager:
    return request.app.state.manager


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_prediction_log(request: Request) -> PredictionLog:
    return request.app.state.prediction_log


async def get_batcher(request: Request) -> MicroBatcher:
    return request.app.state.batcher


def get_db(request: Request) -> Iterator[Session]:
    """A session of the review store (`store.db.sessions`), committed when the route returns."""
    with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
ManagerDep = Annotated[ModelManager, Depends(get_manager)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
PredictionLogDep = Annotated[PredictionLog, Depends(get_prediction_log)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
# scope="function": the transaction commits before the response is sent, so a 201 means stored
SessionDep = Annotated[Session, Depends(get_db, scope="function")]


def get_registry(settings: SettingsDep) -> Registry:
    registry = Registry(settings)
    registry.check()  # a dead tracking server answers 503 in seconds
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


async def require_admin(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """The bearer token must be REVIEWOPS_ADMIN_TOKEN; without one set, admin actions are off."""
    check_admin(settings, authorization)


def check_admin(settings: Settings, authorization: str | None) -> None:
    """`require_admin` for a route where only some requests are admin actions (403 off, 401 refused)."""
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not token:
        raise HTTPException(403, "admin actions are disabled: REVIEWOPS_ADMIN_TOKEN is not set")
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not given or not secrets.compare_digest(given.encode(), token.encode()):
        raise HTTPException(401, "missing or wrong admin token", headers={"WWW-Authenticate": "Bearer"})


AdminDep = Depends(require_admin)
