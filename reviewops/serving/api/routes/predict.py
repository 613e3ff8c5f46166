"""POST /v1/predict: sentiment of up to `api_max_texts` texts; every prediction is logged with an id.

(No `from __future__ import annotations`: FastAPI must see the request model built from the settings.)
"""

import uuid

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from reviewops.config import Settings
from reviewops.data.labels import LABEL_NAMES_KO
from reviewops.serving.api.deps import BatcherDep, ManagerDep, MetricsDep, PredictionLogDep
from reviewops.serving.api.schemas import ModelRef, PredictionOut, PredictResponse, Problem, predict_request
from reviewops.serving.metrics import PREDICT_ROUTE


def router_for(settings: Settings) -> APIRouter:
    """The prediction router; its request model carries the limits of `settings`."""
    router = APIRouter(tags=["prediction"])
    PredictIn = predict_request(settings)

    @router.post(PREDICT_ROUTE, responses={413: {"model": Problem, "description": "body too large"},
                                           503: {"model": Problem, "description": "no model loaded"}})
    async def predict(body: PredictIn, manager: ManagerDep, batcher: BatcherDep, metrics: MetricsDep,
                      prediction_log: PredictionLogDep) -> PredictResponse:
        texts: list[str] = body.texts
        model = manager.current
        if model is None:
            raise HTTPException(503, "no model loaded yet: the registry has no champion or is unreachable")
        if model.batched:
            scores, model = await batcher.predict(texts)
        else:
            scores = await run_in_threadpool(model.predict_proba, texts)
            metrics.batch.observe(len(texts))
        out, rows = [], []
        request_id = uuid.uuid4().hex[:16]  # a prediction id is its request's id, then its position
        for i, (text, p) in enumerate(zip(texts, scores, strict=True)):
            pid, label = f"{request_id}{i:016x}", int(p >= 0.5)
            out.append(PredictionOut(id=pid, label=LABEL_NAMES_KO[label], label_id=label, score=float(p)))
            rows.append({"public_id": pid, "text": text[:2000], "label": label, "score": float(p),
                         "model_name": model.name, "model_version": model.version})
            metrics.predictions.labels(LABEL_NAMES_KO[label]).inc()
        prediction_log.add(rows)  # written by a background thread, off the request path
        return PredictResponse(model=ModelRef(name=model.name, version=model.version), predictions=out)

    return router
