"""Per-movie insights from the review store: the data behind `GET /v1/movies` and
`GET /v1/movies/{id}/summary` (see fastapi/README.md).

Only kept reviews count (`Review.reject_reason IS NULL`). A review's predicted sentiment is its
`Prediction` from the model version asked for; when no version is asked for, or that version has
not scored the movie yet, each review's newest prediction of the model (highest `Prediction.id`)
is used instead, and the summary's `model` says which version(s) that was.

The reviewer's own sentiment is the review's label (its rating under the label policy, or CGV's egg),
unless a user corrected it through feedback on one of its predictions (the newest feedback wins, as in
training snapshots). Representative reviews and keywords never contradict it: a review the reviewer
rated negative is never shown or counted as positive, whatever the model says. Such disagreements are
listed on their own, as the place to find model errors and mislabels.

A summary reads the movie's kept reviews once (no text), their predictions by review id (the
predictions' unique index leads with it) and then only the texts it shows or extracts keywords
from; the few thousand rows of a movie are counted in Python. Keywords come from konlpy's Okt,
imported on first use (the JVM starts once per process); tagging is the slow part (seconds for a
few thousand texts, more while the JVM warms up), so keyword results are cached by their texts.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from reviewops.config import TIMEZONE
from reviewops.data.labels import SOURCE_NAMES
from reviewops.errors import ConfigError
from reviewops.predict import Band
from reviewops.sources.crawl import SOURCES as CRAWLED_SOURCES
from reviewops.store import queries
from reviewops.store.feedback import feedback_id
from reviewops.store.models import Feedback, Movie, Prediction, Review, storable

# Keyword extraction reads at most this many texts per call: a summary stays fast on any movie.
MAX_KEYWORD_TEXTS = 2_000
# Texts are tagged this many at a time, joined by newlines: one JVM call per chunk instead of
# one per text (2-3x faster; the tags are the same as text by text).
_TAG_CHUNK = 200
# Keyword results of this many recent calls are kept (keyed by the texts' hash): a summary asked
# for again, with no new prediction, does not tag its texts again.
KEYWORD_CACHE_SIZE = 128
# Parts of speech kept as keywords (Okt tags), and their minimum length in characters.
KEYWORD_TAGS = ("Noun", "Adjective")
MIN_KEYWORD_CHARS = 2
# Words too common in any movie review to say anything about one movie: the film itself (영화,
# 평점, 점수), intensifiers (정말, 진짜, 너무, 그냥, 완전, 조금) and the stems of the most frequent
# verbs and adjectives after `stem=True` (하다, 이다, 있다, ...). 것, 수 and 점 are also dropped by
# the length rule; they are listed to make the intent explicit.
STOPWORDS = frozenset({
    "영화", "평점", "점수",
    "정말", "진짜", "너무", "그냥", "완전", "조금",
    "하다", "이다", "있다", "없다", "같다", "보다", "되다", "않다", "아니다", "그렇다", "이렇다",
    "것", "수", "점",
})
# Representative reviews: preferred text length (characters, as written).
REPRESENTATIVE_CHARS = (10, 200)
# Disagreements between the reviewer's rating and the prediction listed in a summary (all are counted).
DISAGREEMENTS_LISTED = 20
# Review ids per `IN (...)` query: below SQLite's oldest bound-parameter limit (999).
_ID_CHUNK = 900
# How a movie without a title is named: the NAVER history has ids only.
_ZONE = ZoneInfo(TIMEZONE)

_kept = Review.reject_reason.is_(None)
_crawled = Movie.source.in_(CRAWLED_SOURCES)


# --- movies -------------------------------------------------------------------------------------


def movie_name(source: str, source_movie_id: str, title: str | None) -> str:
    """A movie's name for people: its title, or (an untitled id of the NAVER history) "NAVER 영화 #12345"."""
    return title or f"{SOURCE_NAMES.get(source, source.upper())} 영화 #{source_movie_id}"


def _movie_filter(query: str | None, source: str | None, crawled: bool | None) -> list:
    where = []
    if source:
        where.append(Movie.source == storable(source))
    if crawled is not None:
        where.append(_crawled if crawled else ~_crawled)
    # spacing differs between sites (어벤져스 엔드게임, 어벤져스:엔드게임); NUL and lone surrogates as stored
    words = storable("".join((query or "").split()))
    if words:
        escaped = words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        ident = words.rsplit("#", 1)[-1]  # "12345", "#12345" or a name as shown: "NAVER 영화 #12345"
        where.append(or_(func.replace(Movie.title, " ", "").ilike(f"%{escaped}%", escape="\\"),
                         Movie.source_movie_id == ident))
    return where


def list_movies(session: Session, query: str | None = None, source: str | None = None,
                crawled: bool | None = None, limit: int | None = None) -> list[dict]:
    """Every movie with at least one kept review: the crawled films (CGV, Megabox) first, then the ingested
    history, each most reviewed first (ties by id): `[{"id", "source", "source_movie_id", "title", "name",
    "crawled", "reviews", "scored"}]`, where `name` is `movie_name`, `reviews` counts its kept reviews and
    `scored` those of them with at least one prediction (of any model).

    `query` keeps the movies whose title holds it (case and spaces ignored) or whose source id it is (a
    leading # allowed); `source` one source; `crawled` the crawled films (True) or the history (False);
    `limit` the first that many."""
    has_prediction = exists().where(Prediction.review_id == Review.id)
    reviews = func.count(Review.id)
    stmt = (
        select(Movie.id, Movie.source, Movie.source_movie_id, Movie.title, reviews.label("reviews"),
               func.count(case((has_prediction, Review.id))).label("scored"))
        .join(Review, and_(Review.movie_id == Movie.id, _kept))
        .where(*_movie_filter(query, source, crawled))
        .group_by(Movie.id, Movie.source, Movie.source_movie_id, Movie.title)
        .order_by(case((_crawled, 0), else_=1), reviews.desc(), Movie.id)
    )
    if limit is not None:
        stmt = stmt.limit(max(limit, 0))
    return [_movie(r, r.reviews, r.scored) for r in session.execute(stmt)]


def movie_sources(session: Session) -> list[dict]:
    """The sources of the movies with a kept review, crawled ones first: `[{"source", "name", "crawled",
    "movies"}]`, `name` as people read it (CGV, 메가박스, NAVER)."""
    has_kept = exists().where(Review.movie_id == Movie.id, _kept)
    rows = session.execute(select(Movie.source, func.count(Movie.id)).where(has_kept).group_by(Movie.source)).all()
    return sorted(({"source": s, "name": SOURCE_NAMES.get(s, s.upper()), "crawled": s in CRAWLED_SOURCES,
                    "movies": int(n)} for s, n in rows), key=lambda r: (not r["crawled"], r["source"]))


def count_movies(session: Session, query: str | None = None, source: str | None = None,
                 crawled: bool | None = None) -> int:
    """How many movies `list_movies` gives with these filters and no limit."""
    has_kept = exists().where(Review.movie_id == Movie.id, _kept)
    return int(session.scalar(select(func.count(Movie.id)).where(has_kept, *_movie_filter(query, source, crawled))))


def _movie(movie, reviews: int, scored: int) -> dict:
    return {"id": movie.id, "source": movie.source, "source_movie_id": movie.source_movie_id, "title": movie.title,
            "name": movie_name(movie.source, movie.source_movie_id, movie.title),
            "crawled": movie.source in CRAWLED_SOURCES, "reviews": int(reviews), "scored": int(scored)}


# --- one movie's summary ------------------------------------------------------------------------


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _ID_CHUNK):
        yield ids[start:start + _ID_CHUNK]


def _by_id(session: Session, column, ids: Iterable[int]) -> dict[int, str]:
    """`column` of the reviews with these ids."""
    out: dict[int, str] = {}
    for chunk in _chunks(list(ids)):
        out.update(session.execute(select(Review.id, column).where(Review.id.in_(chunk))).tuples().all())
    return out


def _version_key(version: str) -> tuple:
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def _tally(pairs: Iterable[tuple[object, int]]) -> list[tuple[object, int, int]]:
    """(key, positive, negative) for (key, predicted label) pairs, keys ascending."""
    counts: dict[object, list[int]] = defaultdict(lambda: [0, 0])
    for key, label in pairs:
        counts[key][0 if label == 1 else 1] += 1
    return [(key, pos, neg) for key, (pos, neg) in sorted(counts.items())]


def local_day(posted_at: datetime | None, collected_at: datetime) -> date:
    """The day (KST) a review was posted, or collected when the source gave no date. The sites and the
    NAVER history write their dates in Korean time and the store keeps them as written; `collected_at` is
    the store's naive UTC."""
    if posted_at is not None:
        return posted_at.astimezone(_ZONE).date() if posted_at.tzinfo is not None else posted_at.date()
    return collected_at.replace(tzinfo=UTC).astimezone(_ZONE).date()


def week_start(day: date) -> date:
    """The Monday of `day`'s week (weeks as Korean calendars count them)."""
    return day - timedelta(days=day.weekday())


def _reviews(session: Session, movie_id: int) -> dict[int, object]:
    return {r.id: r for r in session.execute(
        select(Review.id, Review.rating, Review.label, Review.kind, Review.posted_at, Review.collected_at,
               func.length(Review.text).label("chars"))
        .where(Review.movie_id == movie_id, _kept))}


def _predictions(session: Session, review_ids: Iterable[int], model_name: str) -> tuple[set[int], dict[int, list]]:
    """The reviews scored by any model, and this model's predictions of each review."""
    scored: set[int] = set()
    predictions: dict[int, list] = defaultdict(list)
    for chunk in _chunks(sorted(review_ids)):
        for p in session.execute(
                select(Prediction.id, Prediction.public_id, Prediction.review_id, Prediction.model_name,
                       Prediction.model_version, Prediction.label, Prediction.score)
                .where(Prediction.review_id.in_(chunk))):
            scored.add(p.review_id)
            if p.model_name == model_name:
                predictions[p.review_id].append(p)
    return scored, predictions


def _corrections(session: Session, review_ids: Iterable[int]) -> dict[int, int]:
    """The label users gave each review through feedback on any of its predictions (newest feedback)."""
    newest: dict[int, tuple[int, int]] = {}
    for chunk in _chunks(sorted(review_ids)):
        for review_id, fid, label in session.execute(
                select(Prediction.review_id, Feedback.id, Feedback.label)
                .join(Feedback, Feedback.prediction_id == Prediction.id).where(Prediction.review_id.in_(chunk))):
            if review_id not in newest or fid > newest[review_id][0]:
                newest[review_id] = (fid, int(label))
    return {rid: label for rid, (_, label) in newest.items()}


def _choose(predictions: dict[int, list], model_version: str | None) -> tuple[dict[int, object], bool]:
    """Each review's prediction of the requested version (when it scored the movie) or else its newest one,
    and whether the requested version was found."""
    requested = model_version is not None and any(
        p.model_version == model_version for ps in predictions.values() for p in ps)
    chosen = {}
    for review_id, ps in predictions.items():
        pick = (next((p for p in ps if p.model_version == model_version), None) if requested
                else max(ps, key=lambda p: p.id))
        if pick is not None:
            chosen[review_id] = pick
    return chosen, requested


def movie_summary(
    session: Session,
    movie_id: int,
    model_name: str,
    model_version: str | None,
    top_k: int = 15,
    per_side: int = 3,
    disagreements: int = DISAGREEMENTS_LISTED,
    band: Band | None = None,
) -> dict | None:
    """The summary of one movie's kept reviews as `model_name` predicted them, or None for an
    unknown movie id. The shape is the API contract's (fastapi/README.md):

    - `movie`: as in `list_movies` (zero counts for a movie without kept reviews);
    - `model`: `{"name", "version", "versions", "requested", "fallback"}`: `versions` lists the
      versions whose predictions were used (ascending), `version` is the one version used (None
      when none or several were), `requested` is `model_version`, and `fallback` is True when a
      version was asked for but had not scored the movie, so newest predictions were used;
    - `by_day` / `by_week`: `[{"date": "YYYY-MM-DD", "positive", "negative"}]`, predicted positive /
      negative reviews per day / per week (from its Monday), by `local_day` (KST), ascending; reviews
      without a prediction are left out here and below;
    - `rating_vs_prediction`: `[{"rating", "positive", "negative"}]` per reviewer rating 1..10
      present (reviews without a rating, e.g. CGV's egg-only ones, are left out);
    - `keywords`: `{"positive": keywords(...), "negative": ...}` of each side's cleaned texts that the
      reviewer's own sentiment does not contradict, the most recent `MAX_KEYWORD_TEXTS` of them (`top_k`
      words; `top_k=0` skips the tagger);
    - `representative`: `{"positive": [{"text", "score", "rating"}], "negative": [...]}`, the
      `per_side` most confident reviews of each side (score closest to 1, resp. 0) that the reviewer's
      sentiment does not contradict and whose score is outside the uncertain `band` (the model's 애매함),
      those it agrees with first, then those whose text is 10..200 characters; `text` is the review as
      written and `score` the prediction's P(positive);
    - `disagreements`: `{"count", "reviews": [...]}`: the reviews whose rating label and prediction differ,
      the prediction outside the uncertain `band` (`count`), the `disagreements` most confident predictions
      of them listed, those no user has judged yet first: `{"review_id", "feedback_id" (for POST
      /v1/feedback), "text", "rating", "kind", "label" (the rating's), "predicted", "score", "feedback" (the
      label a user gave, or None)}`; `band` is the configured one unless given (the API gives
      the settings');
    - `aspects`: `store.queries.aspect_summary` (Megabox's points; [] for other films).
    """
    movie = session.get(Movie, movie_id)
    if movie is None:
        return None
    reviews = _reviews(session, movie_id)
    scored, predictions = _predictions(session, reviews, model_name)
    chosen, requested = _choose(predictions, model_version)
    band = band or Band.from_settings()
    sure = {rid for rid, p in chosen.items() if not band.contains(p.score)}
    corrections = _corrections(session, chosen)
    own = {rid: corrections.get(rid, reviews[rid].label) for rid in chosen}  # the reviewer's, or a user's fix
    versions = sorted({p.model_version for p in chosen.values()}, key=_version_key)
    days = {rid: local_day(reviews[rid].posted_at, reviews[rid].collected_at) for rid in chosen}

    by_day = _tally((days[rid].isoformat(), p.label) for rid, p in chosen.items())
    by_week = _tally((week_start(days[rid]).isoformat(), p.label) for rid, p in chosen.items())
    by_rating = _tally((reviews[rid].rating, p.label) for rid, p in chosen.items()
                       if reviews[rid].rating is not None)

    words: dict[str, list[dict]] = {}
    representative: dict[str, list[dict]] = {}
    for side, label in (("positive", 1), ("negative", 0)):
        ids = [rid for rid, p in chosen.items() if p.label == label and own[rid] != 1 - label and rid in sure]
        recent = sorted(ids, key=lambda rid: (days[rid], rid), reverse=True)[:MAX_KEYWORD_TEXTS]
        if top_k > 0 and recent:
            texts = _by_id(session, Review.clean_text, recent)
            words[side] = keywords([texts[rid] for rid in recent], top_k)
        else:
            words[side] = []
        representative[side] = _representative(session, reviews, chosen, own, ids, label, per_side)

    return {
        "movie": _movie(movie, len(reviews), len(scored)),
        "model": {
            "name": model_name,
            "version": versions[0] if len(versions) == 1 else None,
            "versions": versions,
            "requested": model_version,
            "fallback": model_version is not None and not requested,
        },
        "by_day": [{"date": d, "positive": p, "negative": n} for d, p, n in by_day],
        "by_week": [{"date": d, "positive": p, "negative": n} for d, p, n in by_week],
        "rating_vs_prediction": [{"rating": int(r), "positive": p, "negative": n} for r, p, n in by_rating],
        "keywords": words,
        "representative": representative,
        "disagreements": _disagreements(session, reviews, {rid: chosen[rid] for rid in sure}, corrections,
                                        disagreements),
        "aspects": queries.aspect_summary(session, movie_id),
    }


def _representative(session: Session, reviews: dict, chosen: dict, own: dict, ids: list[int], label: int,
                    per_side: int) -> list[dict]:
    lo, hi = REPRESENTATIVE_CHARS

    def rank(rid: int) -> tuple:
        score = chosen[rid].score
        return (own[rid] != label, not lo <= reviews[rid].chars <= hi, -score if label == 1 else score, rid)

    best = sorted(ids, key=rank)[:max(per_side, 0)]
    texts = _by_id(session, Review.text, best)
    return [{"text": texts[rid], "score": float(chosen[rid].score), "rating": reviews[rid].rating} for rid in best]


def _disagreements(session: Session, reviews: dict, chosen: dict, corrections: dict, limit: int) -> dict:
    ids = [rid for rid, p in chosen.items() if reviews[rid].label is not None and reviews[rid].label != p.label]
    # unjudged first, then the most confident (the likeliest mislabels, or the model's worst errors)
    listed = sorted(ids, key=lambda rid: (rid in corrections, -abs(chosen[rid].score - 0.5), rid))[:max(limit, 0)]
    texts = _by_id(session, Review.text, listed)
    return {"count": len(ids), "reviews": [
        {"review_id": rid, "feedback_id": feedback_id(chosen[rid].id, chosen[rid].public_id), "text": texts[rid],
         "rating": reviews[rid].rating, "kind": reviews[rid].kind, "label": int(reviews[rid].label),
         "predicted": int(chosen[rid].label), "score": float(chosen[rid].score), "feedback": corrections.get(rid)}
        for rid in listed]}


# --- keywords -------------------------------------------------------------------------------------

_okt = None
_okt_lock = threading.Lock()
_cache: OrderedDict[tuple[int, str], list[tuple[str, int]]] = OrderedDict()
_cache_lock = threading.Lock()

JAVA_MISSING = ("keyword extraction needs Java for konlpy's Okt tagger and none was found: "
                "install it (`apt-get install default-jre-headless`) or set JAVA_HOME")


def _start_okt():
    """A new Okt tagger (starts the JVM when it is not running)."""
    try:
        import jpype
        from konlpy.tag import Okt
    except ImportError as exc:
        raise ConfigError(f"keyword extraction needs konlpy (`pip install konlpy`): {exc}") from None
    # -Xrs: the JVM leaves SIGTERM/SIGINT to Python. Without it the JVM takes SIGTERM (docker stop, a
    # supervisor) and exits at once with 143: the API's shutdown never runs and queued predictions are lost.
    if "-Xrs" not in os.environ.get("JAVA_TOOL_OPTIONS", "").split():
        os.environ["JAVA_TOOL_OPTIONS"] = (os.environ.get("JAVA_TOOL_OPTIONS", "") + " -Xrs").strip()
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


def warm_up() -> None:
    """Start the JVM and load Okt's dictionaries now (a few seconds) rather than on the first summary."""
    _tag(["배우들의 연기가 좋았고 스토리도 재밌었다"])


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
    The results of the last `KEYWORD_CACHE_SIZE` calls are kept in memory.
    Raises ConfigError when Java (or konlpy) is missing.
    """
    if k <= 0:
        return []
    texts = [t for t in texts[:MAX_KEYWORD_TEXTS] if t and t.strip()]
    if not texts:
        return []
    key = (k, hashlib.sha1("\0".join(texts).encode("utf-8")).hexdigest())
    with _cache_lock:
        ranked = _cache.get(key)
        if ranked is not None:
            _cache.move_to_end(key)
    if ranked is None:
        counts: Counter[str] = Counter()
        for tokens in _tag(texts):
            counts.update({word for word, tag in tokens
                           if tag in KEYWORD_TAGS and len(word) >= MIN_KEYWORD_CHARS and word not in STOPWORDS})
        ranked = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))[:k]
        with _cache_lock:
            _cache[key] = ranked
            while len(_cache) > KEYWORD_CACHE_SIZE:
                _cache.popitem(last=False)
    return [{"word": w, "count": n} for w, n in ranked]
