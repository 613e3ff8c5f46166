"""Per-movie insights from the review store: the data behind `GET /v1/movies` and
`GET /v1/movies/{id}/summary` (see fastapi/README.md).

Only kept reviews count (`Review.reject_reason IS NULL`). A review's predicted sentiment is its
`Prediction` from the model version asked for; when no version is asked for, or that version has
not scored the movie yet, each review's newest prediction of the model (highest `Prediction.id`)
is used instead, and the summary's `model` says which version(s) that was.

Counts are aggregated in SQL; only the texts that keywords and representative reviews need are
read. Keywords come from konlpy's Okt, imported on first use (the JVM starts once per process).
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date, datetime

from sqlalchemy import Date, and_, case, cast, exists, func, literal, select
from sqlalchemy.orm import Session

from reviewops.errors import ConfigError
from reviewops.store.models import Movie, Prediction, Review

# Keyword extraction reads at most this many texts per call: a summary stays fast on any movie.
MAX_KEYWORD_TEXTS = 2_000
# Texts are tagged this many at a time, joined by newlines: one JVM call per chunk instead of
# one per text (about 3x faster; the tags are the same as text by text).
_TAG_CHUNK = 200
# Parts of speech kept as keywords (Okt tags), and their minimum length in characters.
KEYWORD_TAGS = ("Noun", "Adjective")
MIN_KEYWORD_CHARS = 2
# Words too common in any movie review to say anything about one movie: the film itself (영화,
# 평점, 점수), intensifiers (정말, 진짜, 너무, 그냥) and the stems of the most frequent verbs and
# adjectives after `stem=True` (하다, 이다, 있다, ...). 것, 수 and 점 are also dropped by the
# length rule; they are listed to make the intent explicit.
STOPWORDS = frozenset({
    "영화", "평점", "점수",
    "정말", "진짜", "너무", "그냥", "완전", "조금",
    "하다", "이다", "있다", "없다", "같다", "보다", "되다", "않다", "아니다", "그렇다", "이렇다",
    "것", "수", "점",
})
# Representative reviews: preferred text length (characters, as written) and the reviewer
# ratings that agree with a positive / negative prediction.
REPRESENTATIVE_CHARS = (10, 200)
AGREEING_POSITIVE_RATING = 9
AGREEING_NEGATIVE_RATING = 4

_kept = Review.reject_reason.is_(None)


# --- movies -------------------------------------------------------------------------------------


def _movie_rows(session: Session, movie_id: int | None = None) -> list[dict]:
    has_prediction = exists().where(Prediction.review_id == Review.id)
    stmt = (
        select(Movie.id, Movie.source, Movie.source_movie_id, Movie.title,
               func.count(Review.id).label("reviews"),
               func.count(case((has_prediction, Review.id))).label("scored"))
        .join(Review, and_(Review.movie_id == Movie.id, _kept))
        .group_by(Movie.id, Movie.source, Movie.source_movie_id, Movie.title)
        .order_by(func.count(Review.id).desc(), Movie.id)
    )
    if movie_id is not None:
        stmt = stmt.where(Movie.id == movie_id)
    return [
        {"id": r.id, "source": r.source, "source_movie_id": r.source_movie_id, "title": r.title,
         "reviews": int(r.reviews), "scored": int(r.scored)}
        for r in session.execute(stmt)
    ]


def list_movies(session: Session) -> list[dict]:
    """Every movie with at least one kept review, most reviewed first (ties by id):
    `[{"id", "source", "source_movie_id", "title", "reviews", "scored"}]`, where `reviews` counts
    its kept reviews and `scored` those of them with at least one prediction (of any model)."""
    return _movie_rows(session)


# --- one movie's summary ------------------------------------------------------------------------


def _version_key(version: str) -> tuple:
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def _day(session: Session, column):
    """The calendar day of a timestamp column, in SQL (SQLite keeps timestamps as text)."""
    if session.get_bind().dialect.name == "sqlite":
        return func.date(column)
    return cast(column, Date)


def _iso_day(value) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)[:10]


def _chosen(session: Session, movie_id: int, model_name: str, model_version: str | None):
    """A CTE of the movie's kept, scored reviews with the prediction each is summarised by, and the
    version asked for when it was used (None when each review's newest prediction is used)."""
    base = (Review.movie_id == movie_id, _kept)
    if model_version is not None:
        scored = session.scalar(
            select(literal(1)).select_from(Review)
            .join(Prediction, Prediction.review_id == Review.id)
            .where(*base, Prediction.model_name == model_name, Prediction.model_version == model_version)
            .limit(1))
        if scored:
            prediction = and_(Prediction.review_id == Review.id, Prediction.model_name == model_name,
                              Prediction.model_version == model_version)
            stmt = select(Review.id).join(Prediction, prediction)
            return stmt, model_version
    newest = (
        select(Prediction.review_id, func.max(Prediction.id).label("prediction_id"))
        .join(Review, Review.id == Prediction.review_id)
        .where(*base, Prediction.model_name == model_name)
        .group_by(Prediction.review_id)
        .subquery("newest")
    )
    stmt = (select(Review.id).join(newest, newest.c.review_id == Review.id)
            .join(Prediction, Prediction.id == newest.c.prediction_id))
    return stmt, None


def movie_summary(
    session: Session,
    movie_id: int,
    model_name: str,
    model_version: str | None,
    top_k: int = 15,
    per_side: int = 3,
) -> dict | None:
    """The summary of one movie's kept reviews as `model_name` predicted them, or None for an
    unknown movie id. The shape is the API contract's (fastapi/README.md):

    - `movie`: as in `list_movies` (zero counts for a movie without kept reviews);
    - `model`: `{"name", "version", "versions", "requested", "fallback"}`: `versions` lists the
      versions whose predictions were used (ascending), `version` is the one version used (None
      when none or several were), `requested` is `model_version`, and `fallback` is True when a
      version was asked for but had not scored the movie, so newest predictions were used;
    - `by_day`: predicted positive / negative reviews per day (the day a review was posted, or
      collected when the source gave no date), days ascending;
    - `rating_vs_prediction`: the same per reviewer rating 1..10 (reviews without one are left out);
    - `keywords`: `keywords()` of the positive and of the negative reviews, most recent first;
    - `representative`: the `per_side` most confident reviews of each side, preferring ones whose
      reviewer rating agrees (>= 9 positive, <= 4 negative, missing counts as not agreeing) and
      whose text is 10..200 characters: `[{"text" (as written), "score" (P(positive)), "rating"}]`.
    """
    movie = session.get(Movie, movie_id)
    if movie is None:
        return None
    rows = _movie_rows(session, movie_id)
    info = rows[0] if rows else {"id": movie.id, "source": movie.source, "source_movie_id": movie.source_movie_id,
                                 "title": movie.title, "reviews": 0, "scored": 0}

    chosen, used_requested = _chosen(session, movie_id, model_name, model_version)
    when = func.coalesce(Review.posted_at, Review.collected_at)
    c = chosen.add_columns(
        Review.rating.label("rating"), Review.text.label("text"), Review.clean_text.label("clean_text"),
        when.label("at"), func.length(Review.text).label("chars"),
        Prediction.label.label("label"), Prediction.score.label("score"),
        Prediction.model_version.label("model_version"),
    ).where(Review.movie_id == movie_id, _kept).cte("chosen")

    positive = func.sum(case((c.c.label == 1, 1), else_=0))
    negative = func.sum(case((c.c.label == 1, 0), else_=1))

    versions = sorted(session.scalars(select(c.c.model_version).distinct()), key=_version_key)

    day = _day(session, c.c.at).label("day")
    by_day = [
        {"date": _iso_day(d), "positive": int(p or 0), "negative": int(n or 0)}
        for d, p, n in session.execute(select(day, positive, negative).group_by(day).order_by(day))
    ]
    by_rating = [
        {"rating": int(r), "positive": int(p or 0), "negative": int(n or 0)}
        for r, p, n in session.execute(
            select(c.c.rating, positive, negative).where(c.c.rating.is_not(None))
            .group_by(c.c.rating).order_by(c.c.rating))
    ]

    lo, hi = REPRESENTATIVE_CHARS
    fits = case((c.c.chars.between(lo, hi), 1), else_=0)
    sides = {
        "positive": (1, case((c.c.rating >= AGREEING_POSITIVE_RATING, 1), else_=0), c.c.score.desc()),
        "negative": (0, case((c.c.rating <= AGREEING_NEGATIVE_RATING, 1), else_=0), c.c.score.asc()),
    }
    words: dict[str, list[dict]] = {}
    representative: dict[str, list[dict]] = {}
    for side, (label, agrees, confident) in sides.items():
        texts = session.scalars(
            select(c.c.clean_text).where(c.c.label == label).order_by(c.c.at.desc(), c.c.id.desc())
            .limit(MAX_KEYWORD_TEXTS)).all()
        words[side] = keywords(list(texts), top_k) if texts and top_k > 0 else []
        representative[side] = [
            {"text": r.text, "score": float(r.score), "rating": r.rating}
            for r in session.execute(
                select(c.c.text, c.c.score, c.c.rating).where(c.c.label == label)
                .order_by(agrees.desc(), fits.desc(), confident, c.c.id).limit(max(per_side, 0)))
        ]

    return {
        "movie": info,
        "model": {
            "name": model_name,
            "version": versions[0] if len(versions) == 1 else None,
            "versions": versions,
            "requested": model_version,
            "fallback": model_version is not None and used_requested is None,
        },
        "by_day": by_day,
        "rating_vs_prediction": by_rating,
        "keywords": words,
        "representative": representative,
    }


# --- keywords -------------------------------------------------------------------------------------

_okt = None
_okt_lock = threading.Lock()

JAVA_MISSING = ("keyword extraction needs Java for konlpy's Okt tagger and none was found: "
                "install it (`apt-get install default-jre-headless`) or set JAVA_HOME")


def _start_okt():
    """A new Okt tagger (starts the JVM when it is not running)."""
    try:
        import jpype
        from konlpy.tag import Okt
    except ImportError as exc:
        raise ConfigError(f"keyword extraction needs konlpy (`pip install konlpy`): {exc}") from None
    try:
        return Okt()
    except (jpype.JVMNotFoundException, jpype.JVMNotSupportedException) as exc:
        raise ConfigError(f"{JAVA_MISSING} ({exc})") from None


def okt():
    """The process's one Okt tagger, started on first use."""
    global _okt
    with _okt_lock:
        if _okt is None:
            _okt = _start_okt()
        return _okt


def _tag(texts: list[str]) -> list[list[tuple[str, str]]]:
    """Okt's `pos(norm=True, stem=True)` of each text, a chunk of texts per call."""
    tagger = okt()
    flat = [" ".join(t.split()) for t in texts]  # one line each: newlines separate the texts
    out: list[list[tuple[str, str]]] = []
    with _okt_lock:  # the tagger is shared between threads (API workers)
        for start in range(0, len(flat), _TAG_CHUNK):
            chunk = flat[start:start + _TAG_CHUNK]
            parts: list[list[tuple[str, str]]] = [[]]
            for word, tag in tagger.pos("\n".join(chunk), norm=True, stem=True):
                if "\n" in word and not word.strip():
                    parts.extend([] for _ in range(word.count("\n")))
                else:
                    parts[-1].append((word, tag))
            if len(parts) != len(chunk):  # the tagger did not keep the line breaks: one text at a time
                parts = [tagger.pos(t, norm=True, stem=True) if t else [] for t in chunk]
            out.extend(parts)
    return out


def keywords(texts: list[str], k: int = 15) -> list[dict]:
    """The `k` most used keywords of `texts`: `[{"word", "count"}]`, most used first (ties by word).

    Words are Okt's nouns and adjectives (`pos(text, norm=True, stem=True)`, so adjectives come as
    their dictionary form, e.g. 재밌다) of at least two characters, less `STOPWORDS`. `count` is the
    number of texts that use the word (a review repeating a word counts once). Only the first
    `MAX_KEYWORD_TEXTS` texts are read: give the most recent first.
    Raises ConfigError when Java (or konlpy) is missing.
    """
    if k <= 0:
        return []
    texts = [t for t in texts[:MAX_KEYWORD_TEXTS] if t and t.strip()]
    if not texts:
        return []
    counts: Counter[str] = Counter()
    for tokens in _tag(texts):
        counts.update({word for word, tag in tokens
                       if tag in KEYWORD_TAGS and len(word) >= MIN_KEYWORD_CHARS and word not in STOPWORDS})
    ranked = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))[:k]
    return [{"word": w, "count": n} for w, n in ranked]
