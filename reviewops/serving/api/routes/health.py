"""GET /healthz (the process answers), /readyz (a model is loaded) and /metrics (Prometheus)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from reviewops.serving.api.deps import ManagerDep, MetricsDep
from reviewops.serving.api.schemas import Health, ModelRef, NotReady, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready,
            responses={503: {"model": NotReady, "description": "no model loaded"}})
async def readyz(manager: ManagerDep) -> Ready | JSONResponse:
    model = manager.current
    if model is None:
        return JSONResponse(status_code=503, content={"status": "not ready", "detail": manager.last_error})
    return Ready(status="ready", model=ModelRef(name=model.name, version=model.version))


@router.get("/metrics", response_class=Response,
            responses={200: {"description": "Prometheus text exposition",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
def prometheus(manager: ManagerDep, metrics: MetricsDep) -> Response:
    body, content_type = metrics.exposition(manager.current)
    return Response(body, media_type=content_type)
