"""GET /v1/monitoring: the numbers behind the app's monitoring page."""

from fastapi import APIRouter, Query

from reviewops.serving.api.deps import SessionDep, SettingsDep
from reviewops.serving.api.schemas import MonitoringSummary
from reviewops.serving.monitoring import summary

router = APIRouter(tags=["monitoring"])


# exclude_unset: the drift report is passed on as the monitor stored it, without added empty fields
@router.get("/v1/monitoring", response_model_exclude_unset=True)
def monitoring(settings: SettingsDep, session: SessionDep,
               hours: int = Query(24, ge=1, le=24 * 14, description="the window, in hours up to now")
               ) -> MonitoringSummary:
    return MonitoringSummary.model_validate(summary(settings, session, hours))
