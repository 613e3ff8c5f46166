"""POST /v1/predict: sentiment of up to `api_max_texts` texts; every prediction is logged with an id.

A batch of hundreds of texts is answered without a pydantic object per prediction: the response is
serialised once from plain lists (`predict_body`) in the `PredictResponse` shape, which stays the route's
declared response model (OpenAPI, docs). Building and re-validating 500 `PredictionOut` objects, one
metric increment and one log-queue put per text cost 18 ms of event-loop time per 500 texts beside the
model's 44 ms (profile: bench/README.md). The verdict, flags and explanations come from the library's one
rule (`reviewops.predict.judge`), computed beside the model call in the worker thread.

(No `from __future__ import annotations`: FastAPI must see the request model built from the settings.)
"""

import json
import uuid

import numpy as np
from fastapi import APIRouter, HTTPException, Response
from fastapi.concurrency import run_in_threadpool

from reviewops.config import Settings
from reviewops.data.labels import LABEL_NAMES_KO, NEGATIVE, POSITIVE
from reviewops.predict import Band, Judged, judge, predict_texts, scorable
from reviewops.serving.api.deps import BatcherDep, ManagerDep, MetricsDep, PredictionLogDep
from reviewops.serving.api.schemas import PredictResponse, Problem, predict_request
from reviewops.serving.metrics import PREDICT_ROUTE
from reviewops.serving.models import LoadedModel
from reviewops.store.models import utcnow


def router_for(settings: Settings) -> APIRouter:
    """The prediction router; its request model carries the limits of `settings`."""
    router = APIRouter(tags=["prediction"])
    PredictIn = predict_request(settings)
    band = Band.from_settings(settings)
    max_explain = settings.api.max_explain_texts

    @router.post(PREDICT_ROUTE, response_model=PredictResponse,
                 responses={400: {"model": Problem, "description": "explain asked for too many texts"},
                            413: {"model": Problem, "description": "body too large"},
                            503: {"model": Problem, "description": "no model loaded"}})
    async def predict(body: PredictIn, manager: ManagerDep, batcher: BatcherDep, metrics: MetricsDep,
                      prediction_log: PredictionLogDep) -> Response:
        texts: list[str] = body.texts
        if body.explain and len(texts) > max_explain:
            raise HTTPException(400, f"explain is answered for at most {max_explain} texts per request "
                                     f"(REVIEWOPS_API_MAX_EXPLAIN_TEXTS), got {len(texts)}")
        model = manager.current or await run_in_threadpool(manager.check_now)
        if model is None:
            raise HTTPException(503, "no model loaded yet: the registry has no champion or is unreachable")
        if model.batched:
            kept = [texts[i] for i in scorable(texts)]
            scores = np.empty(0)
            if kept:
                scores, model = await batcher.predict(kept)
            judged = await run_in_threadpool(judge, model.model, texts, scores, band, body.explain)
        else:
            judged = await run_in_threadpool(predict_texts, model.model, texts, band, body.explain)
            metrics.batch.observe(len(texts))
        scored = judged.scored
        positives = sum(judged.labels[i] for i in scored)
        for label, count in ((POSITIVE, positives), (NEGATIVE, len(scored) - positives)):
            if count:  # one increment per label and request, not one per text
                metrics.predictions.labels(LABEL_NAMES_KO[label]).inc(count)
        request_id = uuid.uuid4().hex[:16]  # a prediction id is its request's id, then its position
        ids = [None] * len(texts)
        for i in scored:
            ids[i] = f"{request_id}{i:016x}"
        if scored:
            prediction_log.add(log_rows(model, [ids[i] for i in scored], [texts[i] for i in scored],
                                        [judged.labels[i] for i in scored], [judged.scores[i] for i in scored]))
        return Response(predict_body(model, ids, judged), media_type="application/json")

    return router


def predict_body(model: LoadedModel, ids: list[str | None], judged: Judged) -> bytes:
    """The `PredictResponse` JSON of one request, serialised in one call."""
    names = LABEL_NAMES_KO
    predictions = [{"id": i, "label": None if label is None else names[label], "label_id": label, "score": score,
                    "verdict": verdict, "flags": flags}
                   for i, label, score, verdict, flags in zip(ids, judged.labels, judged.scores, judged.verdicts,
                                                              judged.flags, strict=True)]
    if judged.explanations is not None:
        for p, spans in zip(predictions, judged.explanations, strict=True):
            p["explanation"] = spans
    return json.dumps({"model": {"name": model.name, "version": model.version}, "predictions": predictions},
                      ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def log_rows(model: LoadedModel, ids: list[str], texts: list[str], labels: list[int],
             scores: list[float]) -> list[dict]:
    """The prediction log's rows of one request (texts cut to the log's 2,000 characters), stamped with the
    time of the answer: the background writer inserts them up to a flush interval later, and the column's
    default, called once per row, was a fifth of the insert's time (bench/README.md, Serving)."""
    name, version, answered = model.name, model.version, utcnow()
    return [{"public_id": i, "text": text[:2000], "label": label, "score": score, "model_name": name,
             "model_version": version, "created_at": answered}
            for i, text, label, score in zip(ids, texts, labels, scores, strict=True)]
