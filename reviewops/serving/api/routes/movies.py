"""GET /v1/movies and GET /v1/movies/{movie_id}/summary: collected movies as the models predicted them."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from reviewops import insights
from reviewops.predict import Band
from reviewops.serving.api.deps import ManagerDep, SessionDep, SettingsDep
from reviewops.serving.api.schemas import MovieList, MovieSummary, Problem

router = APIRouter(tags=["movies"])


@router.get("/v1/movies")
def movies(session: SessionDep,
           q: Annotated[str | None, Query(max_length=200, description="part of the title, or the source's id")] = None,
           source: Annotated[str | None, Query(max_length=32, description="one source: cgv, megabox, naver")] = None,
           crawled: Annotated[bool | None, Query(description="true: crawled films; false: the history")] = None,
           limit: Annotated[int | None, Query(ge=1, le=100_000)] = None) -> MovieList:
    return MovieList(movies=insights.list_movies(session, q, source, crawled, limit),
                     total=insights.count_movies(session, q, source, crawled),
                     sources=insights.movie_sources(session))


@router.get("/v1/movies/{movie_id}/summary",
            responses={404: {"model": Problem, "description": "unknown movie"}})
def movie_summary(movie_id: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep,
                  settings: SettingsDep, manager: ManagerDep) -> MovieSummary:
    version = manager.current.version if manager.current else None
    summary = insights.movie_summary(session, movie_id, settings.model.name, version, band=Band.from_settings(settings))
    if summary is None:
        raise HTTPException(404, f"unknown movie {movie_id}")
    return MovieSummary.model_validate(summary)
