"""GET /v1/model (the model served now) and GET /v1/models (the registry's versions)."""

import json
import time

from fastapi import APIRouter, HTTPException

from reviewops.evaluate.cost import ServingCost
from reviewops.registry.mlflow_registry import CHAMPION, REASON_ARGS_TAG, REASON_CODE_TAG, VersionInfo
from reviewops.serving.api.deps import ManagerDep, RegistryDep
from reviewops.serving.api.schemas import ModelHistory, ModelVersion, Problem, ServedModel, ServingCostOut

router = APIRouter(tags=["models"])


@router.get("/v1/model", response_model_exclude_unset=True,
            responses={503: {"model": Problem, "description": "no model loaded"}})
def served_model(manager: ManagerDep) -> ServedModel:
    if manager.current is None:
        raise HTTPException(503, "no model loaded yet")
    return ServedModel.model_validate(manager.current.describe())


@router.get("/v1/models")
def model_history(registry: RegistryDep) -> ModelHistory:
    champion = registry.by_alias(CHAMPION)
    return ModelHistory(name=registry.name, champion=champion.version if champion else None,
                        versions=[_version(v, registry.run_metrics(v.run_id, slices=True))
                                  for v in registry.versions()])


def _version(v: VersionInfo, run_metrics: dict[str, float]) -> ModelVersion:
    created = time.gmtime(v.created_ms / 1000) if v.created_ms is not None else None
    cost = ServingCost.from_tags(v.tags)
    return ModelVersion(version=v.version, aliases=v.aliases, trainer=v.tags.get("trainer", ""),
                        accuracy=run_metrics.get("accuracy"), decision=v.tags.get("gate.decision", ""),
                        reason=v.tags.get("gate.reason", ""),
                        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", created) if created else None,
                        metrics={k: x for k, x in run_metrics.items() if not k.startswith("slice.")},
                        slices={k: x for k, x in run_metrics.items() if k.startswith("slice.")},
                        reason_code=v.tags.get(REASON_CODE_TAG, ""),
                        reason_args=_reason_args(v.tags.get(REASON_ARGS_TAG)),
                        cost=ServingCostOut(batch_reviews_per_second=cost.batch_rps, single_p50_ms=cost.single_p50_ms,
                                            single_p99_ms=cost.single_p99_ms) if cost else None)


def _reason_args(raw: str | None) -> dict[str, float | str]:
    """The gate reason's figures from their JSON tag; none for a version gated before they were recorded."""
    try:
        args = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {str(k): v if isinstance(v, int | float) and not isinstance(v, bool) else str(v)
            for k, v in args.items()} if isinstance(args, dict) else {}
