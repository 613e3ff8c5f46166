"""Per-movie insights (reviewops.insights): real reviews ingested into SQLite and PostgreSQL, predictions
of two model versions with known scores, and keywords from konlpy's Okt on real Korean text."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from conftest import sample_records, write_jsonl

from reviewops import insights
from reviewops.config import Settings
from reviewops.errors import ConfigError
from reviewops.insights import keywords, list_movies, movie_summary
from reviewops.jobs.train import run_ingest
from reviewops.predict import Band
from reviewops.store import db
from reviewops.store.models import Movie, Prediction, Review

MODEL = "review-sentiment"
DATES = ["2024-03-01", "2024-03-02T21:30:00", "2024-03-03", None]  # None: the collection day is used


def _records() -> list[dict]:
    """360 real reviews spread over four movies (200, 100, 50 and 10) and four days, and one movie
    whose only review is rejected by cleaning."""
    recs = sample_records(360)
    for i, r in enumerate(recs):
        r["movie_id"] = "1001" if i < 200 else "1002" if i < 300 else "1003" if i < 350 else "1004"
        r["date"] = DATES[i % len(DATES)]
    recs.append({"review_id": 99_999_999, "movie_id": "1005", "date": "2024-03-01", "rating": 10, "text": "!!!"})
    return recs


def _generic_score(review_id: int, salt: int) -> float:
    """A known score in [0.02, 0.98], spread over both sides."""
    return 0.02 + 0.96 * ((review_id * salt) % 1000) / 999


def _pred(review: Review, score: float, version: str, model: str = MODEL) -> Prediction:
    return Prediction(review_id=review.id, text=review.clean_text, label=int(score >= 0.5), score=score,
                      model_name=model, model_version=version)


def _fits(r: Review) -> bool:
    return 10 <= len(r.text) <= 200


def _build(tmp_path) -> dict:
    """Ingest the reviews and score them:
    - movie 1001: every kept review by versions 1 and 2 (different scores);
    - movie 1002: by version 1 only, with hand-set scores making 3 agreeing reviews the most
      confident of each side after one disagreeing (more confident) and one too short review;
    - movie 1003: by version 2 (even review ids) and then by version 1 (all): the newest
      prediction of an even review is version 1's;
    - movie 1004: not scored; 1005: no kept review.
    Plus predictions to ignore: another model's, and API predictions without a review."""
    summary = run_ingest(Settings(), write_jsonl(tmp_path / "reviews.jsonl.gz", _records()))
    assert summary.new == 361
    url = Settings().db_url
    out: dict = {"url": url, "picked": {}}
    with db.session_scope(url) as s:
        movies = {m.source_movie_id: m.id for m in s.scalars(sa.select(Movie))}
        kept = defaultdict(list)
        for r in s.scalars(sa.select(Review).where(Review.reject_reason.is_(None)).order_by(Review.id)):
            kept[r.movie_id].append(r)
        a, b, c = kept[movies["1001"]], kept[movies["1002"]], kept[movies["1003"]]
        assert len(a) > 150 and len(b) > 70 and len(c) > 30  # real data: a few are rejected or duplicates

        s.add_all([_pred(r, _generic_score(r.id, 7919), "1") for r in a])
        s.add_all([_pred(r, _generic_score(r.id, 104_729), "2") for r in a])
        s.add_all([_pred(r, 0.5, "9", model="another-model") for r in a[:20]])

        pos = [r for r in b if r.rating is not None and r.rating >= 9 and _fits(r)][:3]
        neg = [r for r in b if r.rating is not None and r.rating <= 4 and _fits(r)][:3]
        wrong_pos = next(r for r in b if r.rating is not None and r.rating <= 4 and r not in neg)
        wrong_neg = next(r for r in b if r.rating is not None and r.rating >= 9 and r not in pos)
        assert len(pos) == 3 and len(neg) == 3
        hand = {pos[0].id: 0.990, pos[1].id: 0.992, pos[2].id: 0.991, wrong_pos.id: 0.9999,
                neg[0].id: 0.012, neg[1].id: 0.010, neg[2].id: 0.011, wrong_neg.id: 0.0001}
        s.add_all([_pred(r, hand.get(r.id, _generic_score(r.id, 7919)), "1") for r in b])
        out["picked"] = {"positive": [pos[1].text, pos[2].text, pos[0].text],
                         "negative": [neg[1].text, neg[2].text, neg[0].text]}

        s.add_all([_pred(r, _generic_score(r.id, 104_729), "2") for r in c if r.id % 2 == 0])
        s.flush()
        s.add_all([_pred(r, _generic_score(r.id, 7919), "1") for r in c])
        s.add(Prediction(review_id=None, text="재밌어요", label=1, score=0.9, model_name=MODEL, model_version="2"))
    out["movies"] = movies
    return out


def _expected(url: str, movie_id: int, version: str | None) -> tuple[list[Review], dict[int, Prediction]]:
    """The movie's kept reviews and the prediction each is summarised by, worked out in Python."""
    with db.session_scope(url) as s:
        reviews = s.scalars(sa.select(Review).where(Review.movie_id == movie_id,
                                                    Review.reject_reason.is_(None))).all()
        preds = s.scalars(sa.select(Prediction).where(Prediction.model_name == MODEL,
                                                      Prediction.review_id.in_([r.id for r in reviews]))).all()
    by_review = defaultdict(list)
    for p in preds:
        by_review[p.review_id].append(p)
    if version is not None and any(p.model_version == version for p in preds):
        chosen = {rid: p for rid, ps in by_review.items() for p in ps if p.model_version == version}
    else:
        chosen = {rid: max(ps, key=lambda p: p.id) for rid, ps in by_review.items()}
    return list(reviews), chosen


def _day(r: Review) -> str:
    """The posted day as the site wrote it (Korean time), or the KST day of the UTC collection time."""
    if r.posted_at is not None:
        return r.posted_at.date().isoformat()
    return (r.collected_at + timedelta(hours=9)).date().isoformat()


def _counts(reviews, chosen, key) -> list[dict]:
    tally: dict = defaultdict(Counter)
    for r in reviews:
        if r.id in chosen and key(r) is not None:
            tally[key(r)]["positive" if chosen[r.id].label == 1 else "negative"] += 1
    return [{"k": k, "positive": v["positive"], "negative": v["negative"]} for k, v in sorted(tally.items())]


def _check_counts(summary, reviews, chosen) -> None:
    by_day = _counts(reviews, chosen, _day)
    assert summary["by_day"] == [{"date": d.pop("k"), **d} for d in by_day]
    by_week = _counts(reviews, chosen, lambda r: insights.week_start(date.fromisoformat(_day(r))).isoformat())
    assert summary["by_week"] == [{"date": d.pop("k"), **d} for d in by_week]
    assert all(date.fromisoformat(d["date"]).weekday() == 0 for d in summary["by_week"])  # Mondays
    by_rating = _counts(reviews, chosen, lambda r: r.rating)
    assert summary["rating_vs_prediction"] == [{"rating": d.pop("k"), **d} for d in by_rating]
    assert sum(d["positive"] + d["negative"] for d in summary["by_day"]) == len(chosen)


# --- the store --------------------------------------------------------------------------------------


def test_list_movies_counts_kept_and_scored_reviews(db_url, tmp_path):
    built = _build(tmp_path)
    ids = built["movies"]
    with db.session_scope(db_url) as s:
        kept = Counter(s.scalars(sa.select(Review.movie_id).where(Review.reject_reason.is_(None))))
        movies = list_movies(s)
        assert movie_summary(s, 987_654, MODEL, "1") is None  # unknown movie
        empty = movie_summary(s, ids["1005"], MODEL, None)
    assert [m["id"] for m in movies] == [ids["1001"], ids["1002"], ids["1003"], ids["1004"]]  # 1005: nothing kept
    assert {m["id"]: m["reviews"] for m in movies} == {mid: kept[mid] for mid in ids.values() if kept[mid]}
    assert {m["id"]: m["scored"] for m in movies} == {
        ids["1001"]: kept[ids["1001"]], ids["1002"]: kept[ids["1002"]], ids["1003"]: kept[ids["1003"]], ids["1004"]: 0}
    assert movies[0] == {"id": ids["1001"], "source": "naver", "source_movie_id": "1001", "title": None,
                         "name": "NAVER 영화 #1001", "crawled": False,
                         "reviews": kept[ids["1001"]], "scored": kept[ids["1001"]]}
    assert empty["movie"]["reviews"] == 0 and empty["by_day"] == [] and empty["representative"] == {
        "positive": [], "negative": []}


def test_summary_counts_by_day_and_rating_for_each_version(db_url, tmp_path):
    built = _build(tmp_path)
    movie = built["movies"]["1001"]
    with db.session_scope(db_url) as s:
        v1 = movie_summary(s, movie, MODEL, "1", top_k=0)  # keywords: see below
        v2 = movie_summary(s, movie, MODEL, "2", top_k=0)
    for version, summary in (("1", v1), ("2", v2)):
        reviews, chosen = _expected(db_url, movie, version)
        assert {p.model_version for p in chosen.values()} == {version}
        assert summary["model"] == {"name": MODEL, "version": version, "versions": [version], "requested": version,
                                    "fallback": False}
        assert summary["movie"]["id"] == movie and summary["movie"]["scored"] == len(reviews)
        _check_counts(summary, reviews, chosen)
    assert v1["by_day"] != v2["by_day"]  # the versions' scores differ
    days = [d["date"] for d in v1["by_day"]]
    assert days == sorted(days) and days[:3] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert len(days) in (4, 5)  # reviews without a date: the day (KST) they were collected
    assert {d["rating"] for d in v1["rating_vs_prediction"]} <= set(range(1, 11))
    assert v1["keywords"] == {"positive": [], "negative": []}


def test_version_fallback_uses_each_reviews_newest_prediction(db_url, tmp_path):
    built = _build(tmp_path)
    ids = built["movies"]
    with db.session_scope(db_url) as s:
        b = movie_summary(s, ids["1002"], MODEL, "2", top_k=0)  # version 2 never scored 1002
        c_any = movie_summary(s, ids["1003"], MODEL, None, top_k=0)
        c_v2 = movie_summary(s, ids["1003"], MODEL, "2", top_k=0)  # version 2 scored half of 1003: only that half
        unscored = movie_summary(s, ids["1004"], MODEL, "2")
    assert b["model"] == {"name": MODEL, "version": "1", "versions": ["1"], "requested": "2", "fallback": True}
    _check_counts(b, *_expected(db_url, ids["1002"], "2"))

    reviews, chosen = _expected(db_url, ids["1003"], None)
    assert {p.model_version for p in chosen.values()} == {"1"}  # version 1 came last for every review
    assert c_any["model"] == {"name": MODEL, "version": "1", "versions": ["1"], "requested": None, "fallback": False}
    _check_counts(c_any, reviews, chosen)

    reviews, chosen = _expected(db_url, ids["1003"], "2")
    assert len(chosen) == sum(r.id % 2 == 0 for r in reviews) < len(reviews)
    assert c_v2["model"]["versions"] == ["2"] and not c_v2["model"]["fallback"]
    _check_counts(c_v2, reviews, chosen)

    assert unscored["model"] == {"name": MODEL, "version": None, "versions": [], "requested": "2", "fallback": True}
    assert unscored["movie"]["scored"] == 0 and unscored["by_day"] == unscored["rating_vs_prediction"] == []
    assert unscored["keywords"] == {"positive": [], "negative": []}


def test_mixed_versions_are_named(db_url, tmp_path):
    built = _build(tmp_path)
    movie = built["movies"]["1003"]
    with db.session_scope(db_url) as s:  # version 2 rescored the odd reviews last
        odd = s.scalars(sa.select(Review).where(Review.movie_id == movie, Review.reject_reason.is_(None),
                                                Review.id % 2 == 1)).all()
        s.add_all([_pred(r, 0.97, "2") for r in odd])
    with db.session_scope(db_url) as s:
        summary = movie_summary(s, movie, MODEL, None, top_k=0)
    reviews, chosen = _expected(db_url, movie, None)
    assert {p.model_version for p in chosen.values()} == {"1", "2"}
    assert summary["model"] == {"name": MODEL, "version": None, "versions": ["1", "2"], "requested": None,
                                "fallback": False}
    _check_counts(summary, reviews, chosen)


def test_representative_reviews_are_the_most_confident_agreeing_ones(db_url, tmp_path):
    built = _build(tmp_path)
    with db.session_scope(db_url) as s:
        b = movie_summary(s, built["movies"]["1002"], MODEL, "1")
        a = movie_summary(s, built["movies"]["1001"], MODEL, "2", per_side=5)
    for side in ("positive", "negative"):
        assert [r["text"] for r in b["representative"][side]] == built["picked"][side]
    assert [r["score"] for r in b["representative"]["positive"]] == [0.992, 0.991, 0.990]
    assert [r["score"] for r in b["representative"]["negative"]] == [0.010, 0.011, 0.012]
    assert all(r["rating"] >= 9 for r in b["representative"]["positive"])
    assert all(r["rating"] <= 4 for r in b["representative"]["negative"])

    reviews, chosen = _expected(db_url, built["movies"]["1001"], "2")
    for side, label in (("positive", 1), ("negative", 0)):
        # never a review whose rating label says the other side; those whose label agrees first
        ranked = sorted((r for r in reviews if chosen[r.id].label == label and r.label != 1 - label),
                        key=lambda r: (r.label != label, not _fits(r),
                                       -chosen[r.id].score if label else chosen[r.id].score, r.id))
        assert a["representative"][side] == [{"text": r.text, "score": chosen[r.id].score, "rating": r.rating}
                                             for r in ranked[:5]]

    # keywords of each side: those of the side's texts that the rating does not contradict, the model's 애매함 left out
    texts = defaultdict(list)
    for r in sorted(reviews, key=lambda r: (_day(r), r.id), reverse=True):
        if r.label != 1 - chosen[r.id].label and not Band.from_settings().contains(chosen[r.id].score):
            texts[chosen[r.id].label].append(r.clean_text)
    assert a["keywords"] == {"positive": keywords(texts[1]), "negative": keywords(texts[0])}
    assert 0 < len(a["keywords"]["positive"]) <= 15


# --- keywords ---------------------------------------------------------------------------------------

HANDWRITTEN = [
    "배우들의 연기가 정말 훌륭했고 스토리도 탄탄했어요",
    "배우 연기는 좋은데 스토리가 너무 지루하다",
    "스토리 전개가 재밌고 배우들 연기가 최고였다 진짜 영화 추천",
    "음악이 아름답고 배우 연기가 자연스러웠다\n영화 보고 나서도 여운이 남네요",
    "그냥 그런 영화였다 스토리가 뻔하다",
]


def test_keywords_are_nouns_and_adjectives_without_stopwords():
    top = keywords(HANDWRITTEN, k=8)
    words = [w["word"] for w in top]
    assert words[:3] == ["배우", "스토리", "연기"]  # in 4 reviews each; ties by word
    assert [w["count"] for w in top[:3]] == [4, 4, 4]
    assert {"재밌다", "훌륭하다", "지루하다", "음악"} & set(words)  # adjectives come in dictionary form
    every = {w["word"] for w in keywords(HANDWRITTEN, k=100)}
    assert {"재밌다", "훌륭하다", "지루하다", "아름답다", "여운", "음악", "전개"} <= every
    assert not every & insights.STOPWORDS
    assert all(len(w) >= 2 for w in every)
    # a review repeating a word counts once; texts are tagged one by one as if alone
    assert keywords(["연기 연기 연기 최고", "연기 별로"], k=1) == [{"word": "연기", "count": 2}]
    assert keywords([], k=5) == [] and keywords(HANDWRITTEN, k=0) == [] and keywords(["", "   "]) == []


def test_keywords_read_at_most_2000_texts():
    texts = ["배우 연기 좋다"] * insights.MAX_KEYWORD_TEXTS + ["음악 음악 최고"] * 10
    top = keywords(texts, k=10)
    assert {"word": "배우", "count": 2000} in top and not any(w["word"] == "음악" for w in top)


def test_keywords_without_java_is_a_clear_error(monkeypatch):
    import jpype

    def missing():
        raise jpype.JVMNotFoundException("No JVM shared library file (libjvm.so) found")

    monkeypatch.setattr(jpype, "isJVMStarted", lambda: False)
    monkeypatch.setattr(jpype, "getDefaultJVMPath", missing)
    with pytest.raises(ConfigError) as exc:
        insights._start_okt()
    assert "apt-get install default-jre-headless" in str(exc.value)


def test_keywords_of_the_same_texts_are_not_tagged_again(monkeypatch):
    texts = ["배우들의 연기가 빛나는 작품", "연출이 세련되고 배우 연기도 좋다"]
    first = keywords(texts, k=3)
    monkeypatch.setattr(insights, "_tag", lambda _texts: pytest.fail("tagged again"))
    first[0]["count"] = -1  # the caller's copy: the cached result stays as it was
    assert keywords(texts, k=3) == keywords(texts, k=3) != first
    assert keywords(texts, k=3)[0] == {"word": "배우", "count": 2}


# --- the movie picker, dates, disagreements, aspects (issue 16, items 7-10) -------------------------------


def _add_movie(s, source: str, code: str, title: str | None, reviews: list[tuple]) -> int:
    """A crawled movie with kept reviews `(text, rating, label, aspects)`, in the ingest's batch."""
    from reviewops.store.models import CollectionBatch

    batch = s.scalar(sa.select(CollectionBatch.id).limit(1))
    movie = Movie(source=source, source_movie_id=code, title=title)
    s.add(movie)
    s.flush()
    for i, (text, rating, label, aspects) in enumerate(reviews):
        s.add(Review(source=source, source_review_id=f"{code}-{i}", movie_id=movie.id, text=text, clean_text=text,
                     text_key=f"{code}-{i}", rating=rating, label=label, cleaning_version="test", batch_id=batch,
                     aspects=aspects))
    s.flush()
    return movie.id


def test_picker_lists_crawled_films_first_and_finds_them_by_title(db_url, tmp_path):
    built = _build(tmp_path)
    ids = built["movies"]
    with db.session_scope(db_url) as s:
        spring = _add_movie(s, "cgv", "20036", "서울의 봄", [("긴장감 최고", 10, 1, None)])
        exhuma = _add_movie(s, "megabox", "24010", "파묘", [("무서웠다", 8, None, ["연출"]), ("별로", 2, 0, None)])
        _add_movie(s, "megabox", "24011", "봄날은 간다 100% 리마스터", [("좋다", 10, 1, None)])
    with db.session_scope(db_url) as s:
        every = list_movies(s)
        assert [m["id"] for m in every[:3]] == [exhuma, spring, every[2]["id"]]  # crawled first, fewer reviews
        assert [m["crawled"] for m in every] == [True] * 3 + [False] * 4
        assert every[3]["name"] == "NAVER 영화 #1001" and every[0]["name"] == "파묘"
        assert [m["id"] for m in list_movies(s, query="서울의봄")] == [spring]  # spacing ignored
        assert [m["title"] for m in list_movies(s, query="봄")] == ["서울의 봄", "봄날은 간다 100% 리마스터"]
        assert [m["title"] for m in list_movies(s, query="100%")] == ["봄날은 간다 100% 리마스터"]
        assert list_movies(s, query="봄%") == list_movies(s, query="1_0") == []  # % and _ are no patterns
        assert [m["id"] for m in list_movies(s, query="#1002")] == [ids["1002"]]  # a NAVER id
        assert [m["id"] for m in list_movies(s, query="NAVER 영화 #1003")] == [ids["1003"]]  # its name
        assert [m["id"] for m in list_movies(s, source="megabox")][0] == exhuma
        assert {m["source"] for m in list_movies(s, crawled=False)} == {"naver"}
        assert len(list_movies(s, crawled=True, limit=2)) == 2
        assert insights.count_movies(s, crawled=True) == 3 and insights.count_movies(s, query="봄") == 2
        assert insights.movie_sources(s) == [
            {"source": "cgv", "name": "CGV", "crawled": True, "movies": 1},
            {"source": "megabox", "name": "메가박스", "crawled": True, "movies": 2},
            {"source": "naver", "name": "NAVER", "crawled": False, "movies": 4}]


def test_days_are_korean_calendar_days_and_weeks_start_on_monday():
    from datetime import datetime

    assert insights.local_day(None, datetime(2024, 3, 1, 16, 30)) == date(2024, 3, 2)  # 01:30 KST
    assert insights.local_day(None, datetime(2024, 3, 1, 14, 59)) == date(2024, 3, 1)  # 23:59 KST
    assert insights.local_day(datetime(2024, 3, 1, 23, 50), datetime(2024, 3, 5)) == date(2024, 3, 1)  # as written
    assert insights.week_start(date(2024, 3, 3)) == date(2024, 2, 26)  # a Sunday: the Monday before
    assert insights.week_start(date(2024, 3, 4)) == date(2024, 3, 4)


def test_reviews_the_rating_contradicts_are_listed_apart_and_correctable(db_url, tmp_path):
    from reviewops.store.feedback import add_feedback

    built = _build(tmp_path)
    movie = built["movies"]["1002"]
    with db.session_scope(db_url) as s:
        summary = movie_summary(s, movie, MODEL, "1")
    reviews, chosen = _expected(db_url, movie, "1")
    contradicted = {r.id for r in reviews if r.label is not None and r.label != chosen[r.id].label}
    texts = {r.id: r.text for r in reviews}
    # the 0.9999 review rated <= 4 is the most positive prediction, yet neither shown as positive nor a keyword
    wrong_pos = next(r for r in reviews if chosen[r.id].score == 0.9999)
    assert wrong_pos.label == 0 and wrong_pos.text not in [r["text"] for r in summary["representative"]["positive"]]
    band = Band.from_settings()
    for side, label in (("positive", 1), ("negative", 0)):
        kept = [r.clean_text for r in sorted(reviews, key=lambda r: (_day(r), r.id), reverse=True)
                if chosen[r.id].label == label and r.id not in contradicted and not band.contains(chosen[r.id].score)]
        assert summary["keywords"][side] == keywords(kept)

    listed = summary["disagreements"]
    sure = {rid for rid in contradicted if not 0.35 <= chosen[rid].score <= 0.65}  # outside the 애매함 band
    assert len(contradicted) > listed["count"] == len(sure) > len(listed["reviews"]) == insights.DISAGREEMENTS_LISTED
    first, second = listed["reviews"][:2]  # the most confident predictions first
    assert {first["score"], second["score"]} == {0.9999, 0.0001}
    row = next(r for r in listed["reviews"] if r["score"] == 0.9999)
    assert row == {"review_id": wrong_pos.id, "feedback_id": f"scored-{chosen[wrong_pos.id].id}",
                   "text": texts[wrong_pos.id], "rating": wrong_pos.rating, "kind": "review", "label": 0,
                   "predicted": 1, "score": 0.9999, "feedback": None}
    assert all(r["review_id"] in contradicted for r in listed["reviews"])

    # a user says the prediction was right (the rating is the mistake): the review may now stand for its side
    with db.session_scope(db_url) as s:
        assert add_feedback(s, row["feedback_id"], 1, "평점 오류") is not None
        assert add_feedback(s, "scored-999999999", 1, None) is None and add_feedback(s, "scored-x", 1, None) is None
    with db.session_scope(db_url) as s:
        after = movie_summary(s, movie, MODEL, "1", top_k=0, disagreements=1000)
        stored = s.execute(sa.select(Prediction.review_id).where(Prediction.id == chosen[wrong_pos.id].id)).scalar()
    assert stored == wrong_pos.id
    assert after["disagreements"]["count"] == listed["count"]
    assert after["disagreements"]["reviews"][-1]["review_id"] == wrong_pos.id  # judged: listed last
    assert after["disagreements"]["reviews"][-1]["feedback"] == 1
    assert after["representative"]["positive"][0]["text"] == wrong_pos.text  # 0.9999 and now agreeing

    # a model that is never sure (everything in the band) stands for no side and contradicts no one
    with db.session_scope(db_url) as s:
        unsure = movie_summary(s, movie, MODEL, "1", top_k=0, band=Band(0.0, 1.0))
    assert unsure["representative"] == {"positive": [], "negative": []}
    assert unsure["disagreements"] == {"count": 0, "reviews": []}


def test_an_api_prediction_is_not_reachable_by_its_row_id(db_url, tmp_path):
    from reviewops.store.feedback import add_feedback, feedback_id

    _build(tmp_path)
    with db.session_scope(db_url) as s:
        api = s.scalar(sa.select(Prediction).where(Prediction.review_id.is_(None)))
        api.public_id = "ab" * 16
        s.flush()
        assert add_feedback(s, f"scored-{api.id}", 1, None) is None  # it has its own public id
        assert feedback_id(api.id, api.public_id) == api.public_id
        assert add_feedback(s, api.public_id, 1, None) is not None


def test_summary_gives_the_films_aspects(db_url, tmp_path):
    from reviewops.store import queries

    _build(tmp_path)
    with db.session_scope(db_url) as s:
        film = _add_movie(s, "megabox", "24010", "파묘", [("연출이 대단하다", 10, 1, ["연출", "배우"]),
                                                        ("배우 연기만 좋다", 2, 0, ["배우"]), ("무난", 7, None, None)])
        s.add_all([_pred(r, 0.9, "1") for r in s.scalars(sa.select(Review).where(Review.movie_id == film))])
    with db.session_scope(db_url) as s:
        summary = movie_summary(s, film, MODEL, "1", top_k=0)
        expected = queries.aspect_summary(s, film)
    assert summary["aspects"] == expected
    by_name = {a["aspect"]: a for a in summary["aspects"]}
    assert (by_name["배우"]["reviews"], by_name["배우"]["positive_share"]) == (2, 0.5)
    assert (by_name["연출"]["reviews"], by_name["연출"]["positive_share"]) == (1, 1.0)
