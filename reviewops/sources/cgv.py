"""CGV: now playing from the movie-list page, reviews from the JSON endpoint (its answer wraps a JSON
document in the string `d`), and the JavaScript-rendered movie page through headless Chromium as a
fallback for reviews and for movie details (title, plot). URLs, payload and selectors are settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import parse_qs, urljoin, urlsplit

from bs4 import BeautifulSoup

from reviewops.data.ingest import RawReview
from reviewops.sources.base import (
    Archive,
    MovieRef,
    Page,
    ParseError,
    Source,
    int_or_none,
    load_json,
    need,
    parse_time,
    stable_id,
)
from reviewops.sources.http import PoliteClient

log = logging.getLogger(__name__)


class CgvSource(Source):
    name = "cgv"

    def __init__(self, settings, client: PoliteClient, archive: Archive,
                 browser: Callable | None = None) -> None:
        self.s = self.settings = settings
        self.client, self.archive = client, archive
        self.browser = browser  # a factory of reviewops.sources.browser.Browser, or None
        self.base = settings.cgv.base_url.rstrip("/")

    # --- now playing ------------------------------------------------------------------------
    def now_playing(self) -> list[MovieRef]:
        url = self.base + self.s.cgv.list_path
        body = self.client.get(url).content
        self.archive.put("_list", "now-playing", body, "html")
        return parse_movie_list(body.decode("utf-8", "replace"), self.s.cgv.movie_selector, self.s.cgv.title_selector)

    # --- reviews ------------------------------------------------------------------------------
    @property
    def page_size(self) -> int:
        return self.s.cgv.page_size

    def _json_page(self, movie: MovieRef, page: int) -> Page:
        payload = {"movieIdx": int(movie.code) if movie.code.isdigit() else movie.code, "pageIndex": page,
                   "pageSize": self.s.cgv.page_size, "orderType": 0, "filterType": 1, "isTotalCount": True,
                   "isMyPoint": "false"}
        body = self.client.post_json(self.base + self.s.cgv.reviews_path, payload).content
        ref = self.archive.put(movie.code, f"reviews-p{page}", body, "json")
        return parse_reviews_page(body, movie, ref, f"cgv reviews of movie {movie.code} page {page}")

    def _render(self, url: str, wait_css: str) -> tuple[str, str]:
        with self.browser() as browser:
            html = browser.render(url, wait_css)
        return html, self.archive_html(url, html)

    def archive_html(self, url: str, html: str) -> str:
        code = parse_qs(urlsplit(url).query).get("midx", ["_"])[0]
        return self.archive.put(code, "rendered", html.encode("utf-8"), "html")

    def _rendered_page(self, movie: MovieRef, page: int) -> list[RawReview]:
        url = self.base + self.s.cgv.detail_path.format(code=movie.code) + f"&page={page}"
        html, ref = self._render(url, "#render-done")
        return parse_rendered_reviews(html, movie, ref, self.s.cgv.review_selector)

    def details(self, movie: MovieRef) -> dict[str, str]:
        if not self.browser:
            return {}
        html, _ = self._render(self.base + self.s.cgv.detail_path.format(code=movie.code), self.s.cgv.plot_selector)
        soup = BeautifulSoup(html, "lxml")
        plot = soup.select_one(self.s.cgv.plot_selector)
        title = soup.select_one("div.title strong")
        out = {}
        if plot:
            out["plot"] = plot.get_text(" ", strip=True)
        if title:
            out["title"] = title.get_text(" ", strip=True)
        return out


def parse_movie_list(html: str, movie_selector: str, title_selector: str) -> list[MovieRef]:
    soup = BeautifulSoup(html, "lxml")
    links = soup.select(movie_selector)
    if not links:
        raise ParseError(f"cgv now-playing page: no element matches {movie_selector!r}")
    movies: dict[str, MovieRef] = {}
    for a in links:
        query = parse_qs(urlsplit(urljoin("http://x/", a.get("href", ""))).query)
        code = (query.get("midx") or [""])[0]
        if not code:
            raise ParseError(f"cgv now-playing page: link {a.get('href')!r} has no midx")
        item = a.find_parent("li") or a.parent
        title_el = item.select_one(title_selector) if item else None
        movies.setdefault(code, MovieRef("cgv", code, title_el.get_text(strip=True) if title_el else None))
    return list(movies.values())


def parse_reviews_json(body: bytes, movie: MovieRef, ref: str, what: str) -> list[RawReview]:
    return parse_reviews_page(body, movie, ref, what).reviews


def parse_reviews_page(body: bytes, movie: MovieRef, ref: str, what: str) -> Page:
    """The reviews of one JSON answer, and the movie's review count (`TotalCount`) when it has one."""
    outer = load_json(body, what)
    inner_text = need(outer, "d", what)
    if not isinstance(inner_text, str):
        raise ParseError(f"{what}: field 'd' should be a JSON string, got {type(inner_text).__name__}")
    inner = load_json(inner_text.encode("utf-8"), f"{what} (inner 'd' document)")
    items = need(inner, "List", what)
    if not isinstance(items, list):
        raise ParseError(f"{what}: field 'List' should be a list")
    out = []
    for i, item in enumerate(items):
        where = f"{what}, List[{i}]"
        text = need(item, "CommentText", where)
        posted = parse_time(item.get("RegistDate"))
        rid = item.get("CommentIdx")
        out.append(RawReview(
            source_review_id=str(rid) if rid not in (None, "") else stable_id(movie.code, text, posted),
            source_movie_id=movie.code, movie_title=movie.title, text=str(text),
            egg=int_or_none(item.get("EggPoint")), posted_at=posted,
            author=item.get("WriterNickName") or None, raw_ref=ref, where=where))
    return Page(out, int_or_none(inner.get("TotalCount")))  # `need` proved inner a dict


def parse_rendered_reviews(html: str, movie: MovieRef, ref: str, selector: str) -> list[RawReview]:
    soup = BeautifulSoup(html, "lxml")
    out = []
    for i, el in enumerate(soup.select(selector)):
        text_el = el.select_one("div.box-comment p") or el.select_one("p")
        if text_el is None:
            raise ParseError(f"cgv rendered page of movie {movie.code}: review {i} has no text element")
        text = text_el.get_text(" ", strip=True)
        day = el.select_one(".day span") or el.select_one(".day")
        posted = parse_time(day.get_text(strip=True) if day else None)
        egg_el = el.select_one("[class*='egg-']")
        egg = None
        if egg_el:
            for cls in egg_el.get("class", []):
                if cls.startswith("egg-") and cls[4:].isdigit():
                    egg = int(cls[4:])
        rid = el.get("data-idx")
        out.append(RawReview(source_review_id=rid or stable_id(movie.code, text, posted), source_movie_id=movie.code,
                             movie_title=movie.title, text=text, egg=egg, posted_at=posted, raw_ref=ref,
                             where=f"cgv rendered page of movie {movie.code}, review {i}"))
    return out
