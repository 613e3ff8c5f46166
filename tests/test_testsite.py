"""The local CGV/Megabox imitation: endpoint shapes, clock, pages, fault modes, request log.

Everything runs over real HTTP (httpx) against one `TestSite` started on a free port.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from datetime import date, datetime

import httpx
import pytest
from bs4 import BeautifulSoup

from reviewops.devtools import testsite as ts
from reviewops.devtools.testsite import TestSite

RPD = 5  # reviews per day; the sample has 15-17 reviews for each chosen movie, so days 0-2 fill up
CGV_BODY = {"pageIndex": 1, "pageSize": 6, "orderType": 0, "filterType": 1, "isTotalCount": True,
            "isMyPoint": "false"}
MB_BODY = {"currentPage": "1", "recordCountPerPage": "10", "onelnEvalDivCd": "", "orderCd": ""}
MB_LIST_BODY = {"currentPage": "1", "recordCountPerPage": "20", "pageType": "ticketing", "ibxMovieNmSearch": "",
                "onairYn": "Y", "specialType": "", "specialYn": "N"}
HANGUL = re.compile(r"[가-힣]")


@pytest.fixture(scope="module")
def site():
    s = TestSite(reviews_per_day=RPD)
    s.start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _reset(request):
    if "site" in request.fixturenames:
        s = request.getfixturevalue("site")
        s.set_day(0)
        s.clear_faults()
        s.slow_seconds = 5.0


@pytest.fixture
def client(site):
    with httpx.Client(base_url=site.base_url, timeout=5) as c:
        yield c


def cgv_page(client, code, page=1, size=6) -> dict:
    r = client.post(ts.CGV_POINTS, json={**CGV_BODY, "movieIdx": int(code), "pageIndex": page, "pageSize": size})
    assert r.status_code == 200
    outer = r.json()
    assert set(outer) == {"d"} and isinstance(outer["d"], str)
    return json.loads(outer["d"])


def mb_page(client, code, page=1) -> dict:
    r = client.post(ts.MEGABOX_REVIEWS, json={**MB_BODY, "movieNo": code, "currentPage": str(page)})
    assert r.status_code == 200
    return r.json()


def cgv_code(site) -> str:
    return site.movies("cgv")[0]["code"]


def mb_code(site) -> str:
    return site.movies("megabox")[0]["code"]


# --- construction -------------------------------------------------------------------------------------


def test_construction_is_fast_deterministic_and_picks_top_movies():
    ts._select.cache_clear()
    t0 = time.perf_counter()
    a = TestSite()
    assert time.perf_counter() - t0 < 2.0
    b = TestSite()
    for source, digits in (("cgv", 5), ("megabox", 8)):
        movies = a.movies(source)
        assert movies == b.movies(source)
        assert len(movies) == 4
        assert len({m["code"] for m in movies}) == 4
        assert all(re.fullmatch(rf"\d{{{digits}}}", m["code"]) for m in movies)
        assert all(HANGUL.search(m["title"]) for m in movies)
    assert a.movies("cgv")[0]["code"] == "88381" and a.movies("megabox")[0]["code"] == "24036800"
    # defaults: 15 reviews a day; day 0 shows 15 for every movie, all on the start date
    for source in ts.SOURCES:
        for m in a.movies(source):
            shown = a.visible_reviews(source, m["code"])
            assert len(shown) == 15
            assert {r["posted"].date() for r in shown} == {date(2026, 11, 1)}
    with pytest.raises(ValueError):
        a.movies("lottecinema")
    assert a.visible_reviews("cgv", "00000") == []


def test_movies_per_source_and_days_limit():
    s = TestSite(movies_per_source=2, days=2, reviews_per_day=3)
    assert len(s.movies("cgv")) == 2 and len(s.movies("megabox")) == 2
    s.set_day(50)
    assert all(len(s.visible_reviews("cgv", m["code"])) == 6 for m in s.movies("cgv"))
    with pytest.raises(ValueError):
        s.set_day(-1)


# --- robots and HTML pages ----------------------------------------------------------------------------


def test_robots_and_private(client):
    r = client.get("/robots.txt")
    assert r.status_code == 200
    assert "User-agent: *" in r.text and "Disallow: /private/" in r.text
    assert client.get("/private/anything").status_code == 403


def test_cgv_now_playing_html(site, client):
    r = client.get(ts.CGV_NOW_PLAYING, params={"lt": 1, "ft": 1})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    soup = BeautifulSoup(r.text, "lxml")
    items = soup.select("div.sect-movie-chart ol li")
    codes = [re.search(r"midx=(\d+)", li.select_one("div.box-image a[href]")["href"]).group(1) for li in items]
    titles = [li.select_one("div.box-contents strong.title").get_text(strip=True) for li in items]
    assert [{"code": c, "title": t} for c, t in zip(codes, titles, strict=True)] == site.movies("cgv")


def test_cgv_detail_page_renders_reviews_only_by_script(site, client):
    movie = site.movies("cgv")[0]
    r = client.get(ts.CGV_DETAIL, params={"midx": movie["code"]})
    assert r.status_code == 200
    soup = BeautifulSoup(r.text, "lxml")
    assert soup.select_one("div.title strong").get_text() == movie["title"]
    assert HANGUL.search(soup.select_one("div.sect-story-movie").get_text())
    container = soup.select_one("ul#movie_point_list_container")
    assert container is not None and not container.find_all(True)
    assert soup.select_one("#paging_point") is not None
    assert not soup.select(".box-comment")
    script = soup.find_all("script")[-1].string
    assert "fetch(" in script and "render-done" in script and "textContent" in script
    assert "innerHTML" not in script
    config = json.loads(soup.select_one("script#point-config").string)
    assert config["endpoint"] == ts.CGV_POINTS and config["midx"] == int(movie["code"])
    assert client.get(ts.CGV_DETAIL, params={"midx": "99999"}).status_code == 404


def test_megabox_comment_html(site, client):
    site.set_day(2)
    code = mb_code(site)
    expected = site.visible_reviews("megabox", code)
    seen = []
    for page in (1, 2):
        r = client.get(ts.MEGABOX_COMMENT, params={"rpstMovieNo": code, "page": page})
        assert r.status_code == 200
        soup = BeautifulSoup(r.text, "lxml")
        for li in soup.select("div.movie-idv-story ul li.oneContentTag"):
            wrap = li.select_one(".story-box .story-wrap")
            # as the real page: a 기대평's box has class preview, the id sits on the like button
            seen.append({
                "id": wrap.select_one("button.oneLikeBtn")["data-no"],
                "text": wrap.select_one(".story-txt").get_text(),
                "score": int(wrap.select_one(".story-point span").get_text()),
                "date": li.select_one(".story-date span").get_text(),
                "kind": "expectation" if "preview" in wrap["class"] else "review",
                "aspects": [em.get_text() for em in wrap.select(".story-recommend em")] or None,
            })
        nav = soup.select_one("nav.pagination")
        assert nav.select_one("strong.active").get_text() == str(page)
        assert [a["pagenum"] for a in nav.select("a[pagenum]")] == ["2" if page == 1 else "1"]
    assert seen == [
        {"id": e["id"], "text": e["text"], "score": e["rating"], "date": e["posted"].strftime("%Y.%m.%d %H:%M"),
         "kind": e["kind"], "aspects": e["aspects"]}
        for e in expected
    ]
    assert {e["kind"] for e in expected} == {"review", "expectation"} and any(e["aspects"] for e in expected)
    assert client.get(ts.MEGABOX_COMMENT, params={"rpstMovieNo": "11111111"}).status_code == 404


# --- JSON endpoints -----------------------------------------------------------------------------------


def test_cgv_reviews_json_shape(site, client):
    code = cgv_code(site)
    doc = cgv_page(client, code)
    assert set(doc) >= {"List", "TotalCount", "PageIndex"}
    assert doc["TotalCount"] == RPD and doc["PageIndex"] == 1 and len(doc["List"]) == RPD
    expected = site.visible_reviews("cgv", code)
    for item, exp in zip(doc["List"], expected, strict=True):
        assert set(item) >= {"CommentIdx", "CommentText", "EggPoint", "WriterNickName", "RegistDate", "MovieIdx"}
        assert isinstance(item["CommentIdx"], int) and str(item["CommentIdx"]) == exp["id"]
        assert item["CommentText"] == exp["text"] and item["WriterNickName"] == exp["author"]
        assert item["EggPoint"] == (2 if exp["rating"] >= 6 else 1) == exp["score"]
        assert datetime.strptime(item["RegistDate"], "%Y-%m-%d %H:%M:%S") == exp["posted"]
        assert item["MovieIdx"] == int(code)
    # the code may come as a string; unknown movies have an empty list
    r = client.post(ts.CGV_POINTS, json={**CGV_BODY, "movieIdx": code})
    assert json.loads(r.json()["d"])["List"] == doc["List"]
    assert cgv_page(client, "12345")["List"] == []


def test_clock_newest_first_and_pages(site, client):
    code = cgv_code(site)
    assert len(site.visible_reviews("cgv", code)) == RPD
    site.set_day(2)
    expected = site.visible_reviews("cgv", code)
    assert len(expected) == 3 * RPD
    assert [e["day"] for e in expected] == sorted((e["day"] for e in expected), reverse=True)
    pages, page = [], 1
    while True:
        doc = cgv_page(client, code, page)
        assert doc["TotalCount"] == 3 * RPD and doc["PageIndex"] == page
        if not doc["List"]:
            break
        assert len(doc["List"]) <= 6
        pages.extend(doc["List"])
        page += 1
    assert page == 4  # 15 reviews in pages of 6: 6, 6, 3, then an empty page past the end
    assert [str(i["CommentIdx"]) for i in pages] == [e["id"] for e in expected]
    dates = [i["RegistDate"] for i in pages]
    assert dates == sorted(dates, reverse=True) and len(set(dates)) == len(dates)
    # the newest reviews are dated on the clock's day
    assert dates[0].startswith("2026-11-03")
    # the same through the control API
    r = client.post("/_control/clock", json={"day": 1})
    assert r.status_code == 200 and r.json()["day"] == 1 and r.json()["date"] == "2026-11-02"
    assert cgv_page(client, code)["TotalCount"] == 2 * RPD
    assert client.post("/_control/clock", json={"day": -3}).status_code == 400
    state = client.get("/_control/state").json()
    assert state["day"] == 1 and state["faults"] == []


def test_megabox_json_endpoints(site, client):
    r = client.post(ts.MEGABOX_MOVIES, json=MB_LIST_BODY)
    assert r.status_code == 200
    doc = r.json()
    assert doc["totCnt"] == 4
    assert [{"code": m["movieNo"], "title": m["movieNm"]} for m in doc["movieList"]] == site.movies("megabox")
    assert all(m["onairYn"] == "Y" for m in doc["movieList"])

    site.set_day(2)
    code = mb_code(site)
    expected = site.visible_reviews("megabox", code)
    first, second, past = mb_page(client, code, 1), mb_page(client, code, 2), mb_page(client, code, 3)
    assert first["totCnt"] == second["totCnt"] == past["totCnt"] == 3 * RPD
    assert len(first["list"]) == 10 and len(second["list"]) == 5 and past["list"] == []
    items = first["list"] + second["list"]
    for item, exp in zip(items, expected, strict=True):
        # the fields Megabox's own review script reads (../shared/docs/sources.md, "Megabox, corrected")
        assert set(item) >= {"onelnEvalNo", "onelnEvalCn", "spointScore", "onelnEvalDivCd", "topScorePoint",
                             "rcmmCnt", "fstRegDt", "lstUptDt", "movieNo", "movieNm"}
        assert isinstance(item["onelnEvalNo"], str) and item["onelnEvalNo"] == exp["id"]
        assert item["onelnEvalCn"] == exp["text"]
        assert int(item["spointScore"]) == exp["rating"] == exp["score"] and 1 <= exp["score"] <= 10
        assert item["onelnEvalDivCd"] == ("EXPE" if exp["kind"] == "expectation" else "PREV")
        points = BeautifulSoup(html.unescape(item["topScorePoint"]), "lxml").select("span")
        assert [p.get_text() for p in points] == (exp["aspects"] or [])
        assert isinstance(item["rcmmCnt"], int) and item["movieNo"] == code
        assert datetime.strptime(item["fstRegDt"], "%Y.%m.%d %H:%M") == exp["posted"].replace(second=0)
    # some of each: 기대평 and 관람평, scores as numbers and as strings, none, one and two points ticked
    assert {i["onelnEvalDivCd"] for i in items} == {"EXPE", "PREV"}
    assert {type(i["spointScore"]) for i in items} == {int, str}
    assert {len(e["aspects"] or []) for e in expected} == {0, 1, 2}
    # numbers as ints work too; unknown movie is empty
    r = client.post(ts.MEGABOX_REVIEWS, json={**MB_BODY, "movieNo": code, "currentPage": 2, "recordCountPerPage": 10})
    assert r.json()["list"] == second["list"]
    assert mb_page(client, "99999999") == {"list": [], "totCnt": 0}


# --- faults -------------------------------------------------------------------------------------------


def test_http500_count_then_normal(site, client):
    site.set_fault("http500", count=2)
    assert [client.get("/movies/").status_code for _ in range(3)] == [500, 500, 200]
    assert site.state()["faults"] == []


def test_http429_has_retry_after(site, client):
    site.set_fault("http429", path=ts.MEGABOX_REVIEWS, count=1)
    r = client.post(ts.MEGABOX_REVIEWS, json={**MB_BODY, "movieNo": mb_code(site)})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert mb_page(client, mb_code(site))["totCnt"] == RPD


def test_slow_times_out_a_short_client_then_answers_normally(site, client):
    site.set_fault("slow", path=ts.CGV_POINTS, count=1)
    with pytest.raises(httpx.ReadTimeout):
        client.post(ts.CGV_POINTS, json={**CGV_BODY, "movieIdx": cgv_code(site)}, timeout=0.5)
    assert cgv_page(client, cgv_code(site))["TotalCount"] == RPD  # count used up: fast again
    site.slow_seconds = 0.3
    site.set_fault("slow", count=1)
    t0 = time.monotonic()
    assert cgv_page(client, cgv_code(site))["TotalCount"] == RPD
    assert time.monotonic() - t0 >= 0.3


def test_renamed_field(site, client):
    site.set_fault("renamed_field")
    item = cgv_page(client, cgv_code(site))["List"][0]
    assert "Comment_Text" in item and "CommentText" not in item
    item = mb_page(client, mb_code(site))["list"][0]
    assert "onelnEvalCntt" in item and "onelnEvalCn" not in item
    movie = client.post(ts.MEGABOX_MOVIES, json=MB_LIST_BODY).json()["movieList"][0]
    assert "movieName" in movie and "movieNm" not in movie
    soup = BeautifulSoup(client.get(ts.CGV_NOW_PLAYING).text, "lxml")
    assert not soup.select("div.box-image") and soup.select("strong.title")
    soup = BeautifulSoup(client.get(ts.MEGABOX_COMMENT, params={"rpstMovieNo": mb_code(site)}).text, "lxml")
    assert not soup.select(".story-txt") and soup.select(".story-wrap.review")
    detail = client.get(ts.CGV_DETAIL, params={"midx": cgv_code(site)}).text
    assert json.loads(BeautifulSoup(detail, "lxml").select_one("#point-config").string)["commentClass"] != "box-comment"


def test_truncated_json(site, client):
    site.set_fault("truncated_json", path=ts.CGV_POINTS, count=1)
    body = {**CGV_BODY, "movieIdx": cgv_code(site)}
    bad = client.post(ts.CGV_POINTS, json=body)
    good = client.post(ts.CGV_POINTS, json=body)
    assert bad.status_code == 200 and bad.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad.text)
    assert bad.text == good.text[: len(good.text) // 2]
    assert json.loads(good.json()["d"])["TotalCount"] == RPD


def test_garbage_html_on_every_path(site, client):
    site.set_fault("garbage_html")
    for r in (
        client.get(ts.CGV_NOW_PLAYING),
        client.post(ts.CGV_POINTS, json={**CGV_BODY, "movieIdx": cgv_code(site)}),
        client.post(ts.MEGABOX_REVIEWS, json={**MB_BODY, "movieNo": mb_code(site)}),
        client.get("/no/such/page"),
    ):
        assert r.status_code == 200 and r.text == ts.GARBAGE
        assert r.headers["content-type"].startswith("text/html")


def test_empty_page(site, client):
    site.set_fault("empty_page")
    r = client.post(ts.CGV_POINTS, json={**CGV_BODY, "movieIdx": cgv_code(site)})
    assert r.json() == {"d": json.dumps({"List": [], "TotalCount": 0})}
    assert json.loads(r.json()["d"]) == {"List": [], "TotalCount": 0}
    assert mb_page(client, mb_code(site)) == {"list": [], "totCnt": 0}
    assert client.post(ts.MEGABOX_MOVIES, json=MB_LIST_BODY).json() == {"movieList": []}
    soup = BeautifulSoup(client.get(ts.CGV_NOW_PLAYING).text, "lxml")
    assert soup.select_one("div.sect-movie-chart") is not None and not soup.select("div.box-image")
    soup = BeautifulSoup(client.get(ts.MEGABOX_COMMENT, params={"rpstMovieNo": mb_code(site)}).text, "lxml")
    assert soup.select_one("div.movie-idv-story") is not None and not soup.select(".story-wrap")


def test_path_prefix_targets_only_matching_paths(site, client):
    site.set_fault("http500", path="/on/")
    assert client.post(ts.MEGABOX_MOVIES, json=MB_LIST_BODY).status_code == 500
    assert client.post(ts.MEGABOX_REVIEWS, json=MB_BODY).status_code == 500
    assert client.get(ts.CGV_NOW_PLAYING).status_code == 200
    assert client.post(ts.CGV_POINTS, json={**CGV_BODY, "movieIdx": cgv_code(site)}).status_code == 200
    # the longest matching prefix wins
    site.set_fault("http429", path=ts.MEGABOX_REVIEWS)
    assert client.post(ts.MEGABOX_REVIEWS, json=MB_BODY).status_code == 429
    assert client.post(ts.MEGABOX_MOVIES, json=MB_LIST_BODY).status_code == 500


def test_control_and_robots_are_spared(site, client):
    site.set_fault("http500")
    assert client.get("/robots.txt").status_code == 200  # path=None spares robots.txt
    assert client.get("/_control/state").status_code == 200  # control paths are never faulted
    site.set_fault("http500", path="/")
    assert client.get("/robots.txt").status_code == 500
    assert client.post("/_control/clock", json={"day": 1}).status_code == 200


def test_fault_control_api(site, client):
    r = client.post("/_control/faults", json={"mode": "http500", "path": "/movies/", "count": 3})
    assert r.status_code == 200
    assert r.json()["faults"] == [{"mode": "http500", "path": "/movies/", "count": 3}]
    assert client.get(ts.CGV_NOW_PLAYING).status_code == 500
    assert client.get("/_control/state").json()["faults"][0]["count"] == 2
    assert client.delete("/_control/faults").json()["faults"] == []
    assert client.get(ts.CGV_NOW_PLAYING).status_code == 200
    assert client.post("/_control/faults", json={"mode": "explode"}).status_code == 400
    assert client.post("/_control/faults", json={"mode": "slow", "count": 0}).status_code == 400
    with pytest.raises(ValueError):
        site.set_fault("nope")


def test_faults_are_counted_atomically_under_concurrency(site):
    site.set_fault("http500", path=ts.CGV_POINTS, count=5)
    statuses: list[int] = []
    lock = threading.Lock()

    def hit() -> None:
        with httpx.Client(base_url=site.base_url, timeout=5) as c:
            r = c.post(ts.CGV_POINTS, json={**CGV_BODY, "movieIdx": cgv_code(site)})
        with lock:
            statuses.append(r.status_code)

    threads = [threading.Thread(target=hit) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 15 + [500] * 5


# --- request log --------------------------------------------------------------------------------------


def test_request_log_records_requests(site, client):
    before = len(site.request_log)
    t0 = time.monotonic()
    client.get("/robots.txt")
    client.post(ts.MEGABOX_REVIEWS, json={**MB_BODY, "movieNo": mb_code(site)})
    client.get(ts.CGV_NOW_PLAYING, params={"lt": 1, "ft": 1})
    new = site.request_log[before:]
    assert [(m, p) for _, m, p in new] == [
        ("GET", "/robots.txt"), ("POST", ts.MEGABOX_REVIEWS), ("GET", ts.CGV_NOW_PLAYING),
    ]
    times = [t for t, _, _ in new]
    assert times == sorted(times) and times[0] >= t0 and times[-1] <= time.monotonic()
    assert site.max_in_flight >= 1
