"""The scoring job: score collected reviews with the champion and store the predictions (`reviews_score`).

A review is scored once per model version: the job picks the kept reviews that have no prediction
from the current champion, in batches of `predict_batch_size`, one transaction each. A re-run, or
a run after a crash, only scores what is left; a new champion scores everything again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from sqlalchemy import and_, func, insert, select

from reviewops.config import Settings
from reviewops.progress import progress
from reviewops.store.models import Prediction, Review

log = logging.getLogger(__name__)


@dataclass
class ScoreSummary:
    model_version: str | None
    scored: int = 0
    positive: int = 0
    reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _unscored(settings: Settings, version: str):
    scored = select(Prediction.id).where(and_(Prediction.review_id == Review.id,
                                              Prediction.model_name == settings.model.name,
                                              Prediction.model_version == version))
    return Review.reject_reason.is_(None), ~scored.exists()


def score_new_reviews(settings: Settings, limit: int | None = None) -> ScoreSummary:
    from reviewops.models.pyfunc import load_predictor
    from reviewops.registry.mlflow_registry import CHAMPION, Registry
    from reviewops.store.db import sessions

    champion = Registry(settings).by_alias(CHAMPION)
    if champion is None:
        return ScoreSummary(None, reason="no champion yet: nothing scored")
    open_session = sessions(settings)
    where = _unscored(settings, champion.version)
    with open_session() as s:
        todo = s.scalar(select(func.count(Review.id)).where(*where))
    todo = min(todo, limit) if limit else todo
    summary = ScoreSummary(champion.version)
    if not todo:
        summary.reason = "every kept review already has a prediction from this version"
        return summary
    predictor = load_predictor(champion.uri)
    with progress(f"score with v{champion.version}", total=todo, unit_count=True) as bar:
        while summary.scored < todo:
            size = min(settings.predict_batch_size, todo - summary.scored)
            with open_session() as s:  # one batch, one transaction
                rows = s.execute(select(Review.id, Review.clean_text).where(*where).order_by(Review.id)
                                 .limit(size)).all()
                if not rows:
                    break
                scores = predictor.predict_proba([r.clean_text for r in rows])
                s.execute(insert(Prediction), [
                    {"review_id": r.id, "text": r.clean_text, "label": int(p >= 0.5), "score": float(p),
                     "model_name": settings.model.name, "model_version": champion.version}
                    for r, p in zip(rows, scores, strict=True)])
            summary.scored += len(rows)
            summary.positive += int((scores >= 0.5).sum())
            bar.advance(len(rows))
    log.info("scored %d reviews with %s v%s (%d positive)", summary.scored, settings.model.name,
             champion.version, summary.positive)
    return summary
