"""Parsing of each response shape the adapters know, and clear errors when a shape changed."""

import json
from datetime import datetime

import pytest

from reviewops.config import MegaboxSettings
from reviewops.sources.base import MovieRef, ParseError, parse_time
from reviewops.sources.cgv import parse_movie_list, parse_rendered_reviews, parse_reviews_json
from reviewops.sources.megabox import parse_review_page

CGV_LIST = """<div class="sect-movie-chart"><ol>
<li><div class="box-image"><a href="/movies/detail-view/?midx=88381"><img></a></div>
    <div class="box-contents"><a href="#"><strong class="title">글래디에이터 Ⅱ</strong></a></div></li>
<li><div class="box-image"><a href="/movies/detail-view/?midx=88076&amp;x=1"><img></a></div>
    <div class="box-contents"><strong class="title">위키드</strong></div></li>
</ol></div>"""


def cgv_json(items, **extra):
    inner = json.dumps({"List": items, "TotalCount": len(items), **extra}, ensure_ascii=False)
    return json.dumps({"d": inner}).encode()


MOVIE = MovieRef("cgv", "88381", "글래디에이터 Ⅱ")


def test_cgv_movie_list():
    movies = parse_movie_list(CGV_LIST, "div.box-image a[href*='midx=']", "div.box-contents strong.title")
    assert movies == [MovieRef("cgv", "88381", "글래디에이터 Ⅱ"), MovieRef("cgv", "88076", "위키드")]


def test_cgv_movie_list_that_lost_its_shape_names_the_selector():
    with pytest.raises(ParseError, match="div.box-image"):
        parse_movie_list("<html><body>점검 중</body></html>", "div.box-image a[href*='midx=']", "strong.title")


def test_cgv_reviews_unwrap_the_d_string():
    body = cgv_json([{"CommentIdx": 501, "CommentText": "배우들 연기 최고", "EggPoint": 2,
                      "RegistDate": "2026-11-20 09:30:00", "WriterNickName": "영화광"},
                     {"CommentIdx": 502, "CommentText": "지루했다", "EggPoint": 1, "RegistDate": "2026-11-20"}])
    reviews = parse_reviews_json(body, MOVIE, "raw/ref", "cgv page 1")
    assert [(r.source_review_id, r.text, r.egg) for r in reviews] == [("501", "배우들 연기 최고", 2),
                                                                      ("502", "지루했다", 1)]
    assert reviews[0].posted_at == datetime(2026, 11, 20, 9, 30) and reviews[0].raw_ref == "raw/ref"
    assert reviews[0].source_movie_id == "88381" and reviews[0].movie_title == "글래디에이터 Ⅱ"


def test_cgv_review_without_an_id_gets_a_stable_hash():
    body = cgv_json([{"CommentText": "재밌어요", "RegistDate": "2026-11-20 10:00:00"}])
    a = parse_reviews_json(body, MOVIE, "r", "p")[0].source_review_id
    b = parse_reviews_json(body, MOVIE, "r2", "p")[0].source_review_id
    assert a == b and a.startswith("h")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (cgv_json([{"CommentIdx": 1, "Comment_Text": "x"}]), "missing field 'CommentText'"),
        (json.dumps({"e": "{}"}).encode(), "missing field 'd'"),
        (json.dumps({"d": {"List": []}}).encode(), "'d' should be a JSON string"),
        (json.dumps({"d": "{\"List\": [1"}).encode(), "inner 'd' document"),
        (cgv_json([])[: len(cgv_json([])) // 2], "not valid JSON"),
        (b"<html>garbage</html>", "not valid JSON"),
    ],
)
def test_cgv_broken_responses_name_what_is_wrong(body, message):
    with pytest.raises(ParseError) as exc:
        parse_reviews_json(body, MOVIE, "r", "cgv reviews of movie 88381 page 1")
    assert message in str(exc.value) and "88381" in str(exc.value)


def test_cgv_rendered_page():
    html = """<ul><li class="box-comment" data-idx="77"><div class="box-contents">
      <ul class="writerinfo"><li class="day"><span>2026-11-19 21:00:00</span></li></ul>
      <div class="box-comment"><p>두 번 봤어요</p></div><span class="egg-icon egg-2"></span></div></li></ul>"""
    (r,) = parse_rendered_reviews(html, MOVIE, "ref", "li.box-comment")
    assert (r.source_review_id, r.text, r.egg, r.posted_at) == ("77", "두 번 봤어요", 2, datetime(2026, 11, 19, 21))


def test_megabox_review_page():
    html = """<ul><li class="type01 oneContentTag"><div class="story-area"><div class="story-box">
      <div class="story-wrap review" data-no="ML1"><div class="story-cont">
      <div class="story-point"><span>9</span></div><div class="story-txt">음악이 좋아요</div></div></div></div>
      <div class="story-date"><span>2026.11.18 12:05</span></div></div></li></ul>"""
    (r,) = parse_review_page(html, MovieRef("megabox", "24036800"), "ref", MegaboxSettings().review_selector)
    assert (r.source_review_id, r.text, r.rating, r.posted_at, r.kind, r.aspects) == (
        "ML1", "음악이 좋아요", 9, datetime(2026, 11, 18, 12, 5), "review", None)


def test_time_formats():
    assert parse_time("2026.11.18 12:05") == datetime(2026, 11, 18, 12, 5)
    assert parse_time("2026-11-18") == datetime(2026, 11, 18)
    assert parse_time("어제") is None and parse_time(None) is None
