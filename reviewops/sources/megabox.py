"""Megabox: now playing from `selectMovieList.do`, one-line reviews from `selectOneLnList.do`, and the
review page rendered in headless Chromium as a fallback. URLs, payload fields and selectors are
settings."""

from __future__ import annotations

import logging
from collections.abc import Callable

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


class MegaboxSource(Source):
    name = "megabox"

    def __init__(self, settings, client: PoliteClient, archive: Archive,
                 browser: Callable | None = None) -> None:
        self.s = self.settings = settings
        self.client, self.archive, self.browser = client, archive, browser
        self.base = settings.megabox.base_url.rstrip("/")

    def now_playing(self) -> list[MovieRef]:
        payload = {"currentPage": "1", "recordCountPerPage": "20", "pageType": "ticketing", "ibxMovieNmSearch": "",
                   "onairYn": "Y", "specialType": "", "specialYn": "N"}
        body = self.client.post_json(self.base + self.s.megabox.list_path, payload).content
        self.archive.put("_list", "now-playing", body, "json")
        what = "megabox movie list"
        items = need(load_json(body, what), "movieList", what)
        if not isinstance(items, list) or not items:
            raise ParseError(f"{what}: 'movieList' is empty or not a list")
        return [MovieRef("megabox", str(need(m, "movieNo", f"{what}[{i}]")), str(need(m, "movieNm", f"{what}[{i}]")))
                for i, m in enumerate(items)]

    @property
    def page_size(self) -> int:
        return self.s.megabox.page_size

    def _json_page(self, movie: MovieRef, page: int) -> Page:
        payload = {"currentPage": str(page), "recordCountPerPage": str(self.s.megabox.page_size),
                   "movieNo": movie.code, "onelnEvalDivCd": "", "orderCd": ""}
        body = self.client.post_json(self.base + self.s.megabox.reviews_path, payload).content
        ref = self.archive.put(movie.code, f"reviews-p{page}", body, "json")
        what = f"megabox reviews of movie {movie.code} page {page}"
        doc = load_json(body, what)
        items = need(doc, "list", what)
        if not isinstance(items, list):
            raise ParseError(f"{what}: field 'list' should be a list")
        out = []
        for i, item in enumerate(items):
            where = f"{what}, list[{i}]"
            text = str(need(item, "onelnEvalCn", where))
            posted = parse_time(item.get("fullLstUptDt"))
            rid = item.get(self.s.megabox.id_field)
            out.append(RawReview(
                source_review_id=str(rid) if rid not in (None, "") else stable_id(movie.code, text, posted),
                source_movie_id=movie.code, movie_title=movie.title, text=text,
                rating=_rating(item.get(self.s.megabox.score_field)), posted_at=posted, raw_ref=ref, where=where))
        return Page(out, int_or_none(doc.get("totCnt")))  # `need` proved doc a dict

    def _rendered_page(self, movie: MovieRef, page: int) -> list[RawReview]:
        url = self.base + self.s.megabox.review_page_path.format(code=movie.code, page=page)
        with self.browser() as browser:
            html = browser.render(url, ".pagination, " + self.s.megabox.review_selector)
        ref = self.archive.put(movie.code, f"rendered-p{page}", html.encode("utf-8"), "html")
        return parse_review_page(html, movie, ref, self.s.megabox.review_selector)


def parse_review_page(html: str, movie: MovieRef, ref: str, selector: str) -> list[RawReview]:
    soup = BeautifulSoup(html, "lxml")
    out = []
    for i, el in enumerate(soup.select(selector)):
        where = f"megabox review page of movie {movie.code}, review {i}"
        text_el = el.select_one(".story-txt")
        if text_el is None:
            raise ParseError(f"{where}: no '.story-txt' element")
        text = text_el.get_text(" ", strip=True)
        score_el = el.select_one(".story-point span")
        holder = el.find_parent("li") or el
        date_el = holder.select_one(".story-date span")
        posted = parse_time(date_el.get_text(strip=True) if date_el else None)
        out.append(RawReview(source_review_id=el.get("data-no") or stable_id(movie.code, text, posted),
                             source_movie_id=movie.code, movie_title=movie.title, text=text,
                             rating=_rating(score_el.get_text(strip=True) if score_el else None), posted_at=posted,
                             raw_ref=ref, where=where))
    return out


def _rating(value: object) -> int | None:
    """A 1–10 score, or None when the site gives none or something else."""
    r = int_or_none(value)
    return r if r is not None and 1 <= r <= 10 else None
