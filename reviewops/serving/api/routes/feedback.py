"""POST /v1/feedback: a user's correction of one prediction. Anyone may correct an answer the API gave
(its id is a secret of who asked); correcting the scoring job's prediction of a collected review
(`scored-<row id>`, guessable) replaces that review's training label, so it is an admin action."""

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException

from reviewops.data.labels import LABEL_IDS_KO
from reviewops.errors import StoreError
from reviewops.serving.api.deps import PredictionLogDep, SessionDep, SettingsDep, check_admin
from reviewops.serving.api.schemas import FeedbackIn, FeedbackOut, Problem
from reviewops.store.feedback import SCORED_PREFIX, add_feedback

router = APIRouter(tags=["feedback"])


@router.post("/v1/feedback", status_code=201,
             responses={401: {"model": Problem, "description": "a collected review's correction without the "
                                                               "admin token"},
                        403: {"model": Problem, "description": "admin actions are disabled"},
                        404: {"model": Problem, "description": "unknown prediction id"},
                        503: {"model": Problem, "description": "the review database refuses writes"}})
def feedback(body: FeedbackIn, session: SessionDep, prediction_log: PredictionLogDep, settings: SettingsDep,
             authorization: Annotated[str | None, Header()] = None) -> FeedbackOut:
    if body.prediction_id.startswith(SCORED_PREFIX):
        check_admin(settings, authorization)
    label = LABEL_IDS_KO.get(body.label, body.label)  # a name or already an id
    feedback_id = add_feedback(session, body.prediction_id, label, body.comment)
    if feedback_id is None:  # the prediction may still be on its way to the database
        prediction_log.flush()
        session.rollback()  # a new transaction sees what the log has just written
        feedback_id = add_feedback(session, body.prediction_id, label, body.comment)
    if feedback_id is not None:
        return FeedbackOut(id=feedback_id, prediction_id=body.prediction_id, label_id=label)
    if prediction_log.last_error:  # it may be one the log could not write: say so, not "unknown"
        raise StoreError(f"the review database refuses writes ({prediction_log.last_error}): "
                         "predictions and feedback are not stored now")
    raise HTTPException(404, f"unknown prediction id {body.prediction_id!r}")
