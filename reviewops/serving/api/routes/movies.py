"""GET /v1/movies and GET /v1/movies/{movie_id}/summary: collected movies as the models predicted them."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from reviewops import insights
from reviewops.serving.api.deps import ManagerDep, SessionDep, SettingsDep
from reviewops.serving.api.schemas import MovieList, MovieSummary, Problem

router = APIRouter(tags=["movies"])


@router.get("/v1/movies")
def movies(session: SessionDep) -> MovieList:
    return MovieList(movies=insights.list_movies(session))


@router.get("/v1/movies/{movie_id}/summary",
            responses={404: {"model": Problem, "description": "unknown movie"}})
def movie_summary(movie_id: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep,
                  settings: SettingsDep, manager: ManagerDep) -> MovieSummary:
    version = manager.current.version if manager.current else None
    summary = insights.movie_summary(session, movie_id, settings.model.name, version)
    if summary is None:
        raise HTTPException(404, f"unknown movie {movie_id}")
    return MovieSummary.model_validate(summary)
