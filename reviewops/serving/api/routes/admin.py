"""POST /v1/admin/{reload,promote,rollback}: model actions for holders of the admin token.

Registry errors answer with their own status (no such version 404, nothing to roll back to 409)."""

from fastapi import APIRouter, HTTPException

from reviewops.serving.api.deps import AdminDep, ManagerDep, RegistryDep
from reviewops.serving.api.schemas import Problem, Promoted, PromoteIn, Reloaded, RolledBack

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep],
                   responses={401: {"model": Problem, "description": "missing or wrong admin token"},
                              403: {"model": Problem, "description": "no admin token is configured"}})


@router.post("/reload", response_model_exclude_unset=True,
             responses={503: {"model": Problem, "description": "no model loaded"}})
def reload(manager: ManagerDep) -> Reloaded:
    changed = manager.refresh()
    if manager.current is None:
        raise HTTPException(503, manager.last_error or "no model loaded")
    return Reloaded.model_validate({"model": manager.current.describe(), "changed": changed,
                                    "error": manager.last_error})


@router.post("/promote", responses={404: {"model": Problem, "description": "no such version"}})
def promote(body: PromoteIn, registry: RegistryDep, manager: ManagerDep) -> Promoted:
    info = registry.promote(body.version, "promoted by an admin through the API")
    manager.refresh()
    return Promoted(champion=info.version)


@router.post("/rollback", responses={409: {"model": Problem, "description": "nothing to roll back to"}})
def rollback(registry: RegistryDep, manager: ManagerDep) -> RolledBack:
    old, new = registry.rollback()
    manager.refresh()
    return RolledBack(champion=new.version, was=old.version)
