"""Megabox as the site really answers (../shared/docs/sources.md, "Megabox, corrected"): the adapter's
fields, 기대평 kept without a training label, the ticked points stored as aspects and summed per film."""

from __future__ import annotations

from datetime import datetime

import pytest

from reviewops.config import MegaboxSettings
from reviewops.sources.base import MovieRef, ParseError
from reviewops.sources.megabox import parse_item, parse_review_page
from reviewops.store import db
from reviewops.store.models import EXPECTATION, CollectionBatch, Movie, Prediction, Review
from reviewops.store.queries import aspect_summary


def _review(n: int, movie: int, batch: int, aspects: list[str] | None, label: int | None = None,
            kind: str = "review", reject: str | None = None) -> Review:
    return Review(source="megabox", source_review_id=str(n), movie_id=movie, text=f"리뷰 {n}",
                  clean_text=f"리뷰 {n}", text_key=f"k{n}", label=label, cleaning_version="t", batch_id=batch,
                  kind=kind, aspects=aspects, reject_reason=reject)


def test_aspect_summary_counts_points_and_their_sentiment(db_url):
    with db.session_scope(db_url) as s:
        film, other = Movie(source="megabox", source_movie_id="1"), Movie(source="cgv", source_movie_id="2")
        batch = CollectionBatch(kind="crawl", source="megabox", cleaning_version="t")
        s.add_all([film, other, batch])
        s.flush()
        m, b = film.id, batch.id
        reviews = [
            _review(1, m, b, ["연출", "스토리"], label=1),
            _review(2, m, b, ["연출"], label=0),
            _review(3, m, b, ["연출", "배우"]),  # no label: its newest prediction counts
            _review(4, m, b, ["배우", "배우"]),  # no label, no prediction: named, no sentiment
            _review(5, m, b, None, label=1),
            _review(6, m, b, ["사운드"], label=1),  # a name the site may add one day: kept
            _review(7, m, b, ["연출"], label=0, kind=EXPECTATION),  # a 기대평: not about the film
            _review(8, m, b, ["연출"], label=0, reject="duplicate"),
            _review(9, other.id, b, None, label=1),
        ]
        s.add_all(reviews)
        s.flush()
        three = reviews[2].id
        s.add(Prediction(review_id=three, text="x", label=0, score=0.1, model_name="m", model_version="1"))
        s.flush()
        s.add(Prediction(review_id=three, text="x", label=1, score=0.9, model_name="m", model_version="2"))
        other_id = other.id

    with db.session_scope(db_url) as s:
        got = {row["aspect"]: row for row in aspect_summary(s, m)}
        order = [row["aspect"] for row in aspect_summary(s, m)]
        assert aspect_summary(s, other_id) == []
        assert aspect_summary(s, 999_999) == []
    assert order == ["연출", "스토리", "영상미", "배우", "OST", "사운드"]
    # six kept 관람평: the rejected review and the 기대평 do not count
    assert got["연출"] == {"aspect": "연출", "reviews": 3, "share": pytest.approx(3 / 6),
                         "positive_share": pytest.approx(2 / 3)}
    assert got["스토리"] == {"aspect": "스토리", "reviews": 1, "share": pytest.approx(1 / 6), "positive_share": 1.0}
    assert got["영상미"] == {"aspect": "영상미", "reviews": 0, "share": 0.0, "positive_share": None}
    assert got["배우"]["reviews"] == 2 and got["배우"]["positive_share"] == 1.0  # review 4 has no sentiment
    assert got["사운드"]["reviews"] == 1


# --- the adapter on the site's shape -----------------------------------------------------------------

MOVIE = MovieRef("megabox", "24036800", "테스트 영화")


def _item(**fields) -> dict:
    """A list item as Megabox's selectOneLnList.do answers (the fields its page script reads)."""
    item = {"onelnEvalNo": "ONELN0000123", "onelnEvalCn": "배우들 연기가 좋았어요", "spointScore": 9,
            "onelnEvalDivCd": "PREV", "onelnEvalDivNm": "관람평",
            "topScorePoint": "&lt;span&gt;연출&lt;/span&gt;&lt;span&gt;배우&lt;/span&gt;", "rcmmCnt": 3,
            "fstRegDt": "2026.11.18 12:05", "lstUptDt": "", "movieNo": "24036800", "movieNm": "테스트 영화",
            "viewType": "TYPE01", "loginId": "mb**"}
    item.update(fields)
    return {k: v for k, v in item.items() if v is not ...}


def _parse(**fields):
    return parse_item(_item(**fields), MOVIE, "ref", "where", MegaboxSettings())


def test_a_review_as_the_site_sends_it():
    r = _parse()
    assert (r.source_review_id, r.text, r.rating, r.kind, r.aspects, r.posted_at) == (
        "ONELN0000123", "배우들 연기가 좋았어요", 9, "review", ("연출", "배우"), datetime(2026, 11, 18, 12, 5))
    assert _parse(lstUptDt="2026.11.19 08:00").posted_at == datetime(2026, 11, 19, 8)  # the site shows the edit's
    assert _parse(onelnEvalNo=20241118123).source_review_id == "20241118123"  # an id sent as a number


def test_a_expectation_is_kept_as_one():
    assert _parse(onelnEvalDivCd="EXPE").kind == "expectation"
    assert _parse(onelnEvalDivCd="PREV").kind == _parse(onelnEvalDivCd="ANY").kind == "review"


@pytest.mark.parametrize(("sent", "rating"), [(9, 9), ("9", 9), (" 10 ", 10), ("7.0", 7), (1, 1), (0, None),
                                              ("0", None), ("", None), (None, None), (..., None)])
def test_scores_as_numbers_strings_or_none(sent, rating):
    assert _parse(spointScore=sent).rating == rating


@pytest.mark.parametrize("sent", [11, "-1", "8.5", "아홉", True, [9]])
def test_a_score_off_the_sites_scale_fails_loudly(sent):
    with pytest.raises(ParseError, match="1–10 scale"):
        _parse(spointScore=sent)


@pytest.mark.parametrize(("sent", "aspects"), [
    ("<span>스토리</span><span>OST</span>", ("스토리", "OST")),  # not escaped
    ("&lt;em&gt;영상미&lt;/em&gt;", ("영상미",)),
    ("<span>감독</span><span>연출</span>", ("연출",)),  # the site's charts call 연출 감독: one point
    ("DIRTOR, actor", ("연출", "배우")),  # codes as plain text
    ("<span>사운드</span><span>배우</span>", ("사운드", "배우")),  # an unknown name is kept as written
    ("<span>" + "가" * 30 + "</span>", None),  # too long for a point's name: skipped
    ("", None), (None, None), (..., None),
    (["배우", "OST"], ("배우", "OST")),
])
def test_ticked_points_become_the_stores_names(sent, aspects):
    assert _parse(topScorePoint=sent).aspects == aspects


def test_the_write_forms_flags_are_read_when_the_html_is_absent():
    r = _parse(topScorePoint=..., dirtorScore="1", storyScore=0, videoScore=1, actorScore="0", ostScore=None)
    assert r.aspects == ("연출", "영상미")


@pytest.mark.parametrize(("fields", "message"), [
    ({"onelnEvalNo": ...}, "missing field 'onelnEvalNo'"),
    ({"onelnEvalNo": ""}, "not a review id"),
    ({"onelnEvalCn": ...}, "missing field 'onelnEvalCn'"),
    ({"onelnEvalCn": 5}, "should be the review's text"),
    ({"onelnEvalDivCd": ...}, "missing field 'onelnEvalDivCd'"),
    ({"topScorePoint": 3}, "should be an HTML string of points"),
])
def test_a_shape_that_is_not_the_sites_fails_loudly(fields, message):
    with pytest.raises(ParseError, match=message):
        _parse(**fields)
    with pytest.raises(ParseError, match="expected a JSON object"):
        parse_item(["not", "an", "object"], MOVIE, "ref", "where", MegaboxSettings())


def test_the_old_guessed_fields_are_not_the_sites():
    """The defaults before the site's own scripts were read: every review got a made-up id and no score."""
    old = _item(onelnEvalNo=..., spointScore=..., oneLnEvalNo="X1", evalPoint=9)
    with pytest.raises(ParseError, match="onelnEvalNo"):
        parse_item(old, MOVIE, "ref", "where", MegaboxSettings())


def test_the_rendered_page_gives_kind_points_and_the_buttons_id():
    html = """<ul><li class="type02 oneContentTag"><div class="story-area"><div class="story-box">
      <div class="story-wrap preview"><div class="tit">기대평</div><div class="story-cont">
        <div class="story-point"><span>8</span></div><div class="story-recommend"><em>배우</em></div>
        <div class="story-txt">예고편이 좋아요</div>
        <div class="story-like"><button class="oneLikeBtn" data-no="E1">1</button></div></div></div>
      <div class="story-wrap review"><div class="tit">관람평</div><div class="story-cont">
        <div class="story-point"><span>0</span></div><div class="story-recommend"><em>감독</em><em>OST</em></div>
        <div class="story-txt">음악이 좋아요</div>
        <div class="story-like"><button class="oneLikeBtn" data-no="P1">2</button></div></div></div></div>
      <div class="story-date"><div class="preview"><span>2026.11.01 10:00</span></div>
        <div class="review on"><span>2026.11.18 12:05</span></div></div></div></li></ul>"""
    expe, prev = parse_review_page(html, MOVIE, "ref", MegaboxSettings().review_selector)
    assert (expe.source_review_id, expe.kind, expe.aspects, expe.rating, expe.posted_at) == (
        "E1", "expectation", ("배우",), 8, datetime(2026, 11, 1, 10))
    assert (prev.source_review_id, prev.kind, prev.aspects, prev.rating, prev.posted_at) == (
        "P1", "review", ("연출", "OST"), None, datetime(2026, 11, 18, 12, 5))
