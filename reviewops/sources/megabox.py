"""Megabox: now playing from `selectMovieList.do`, one-line reviews from `selectOneLnList.do`, and the
review page rendered in headless Chromium as a fallback. URLs, payload fields and selectors are
settings."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from html import unescape

from bs4 import BeautifulSoup

from reviewops.config import MegaboxSettings
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
from reviewops.store.models import EXPECTATION, REVIEW

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
        out = [parse_item(item, movie, ref, f"{what}, list[{i}]", self.s.megabox) for i, item in enumerate(items)]
        return Page(out, int_or_none(doc.get("totCnt")))  # `need` proved doc a dict

    def _rendered_page(self, movie: MovieRef, page: int) -> list[RawReview]:
        url = self.base + self.s.megabox.review_page_path.format(code=movie.code, page=page)
        with self.browser() as browser:
            html = browser.render(url, ".pagination, " + self.s.megabox.review_selector)
        ref = self.archive.put(movie.code, f"rendered-p{page}", html.encode("utf-8"), "html")
        return parse_review_page(html, movie, ref, self.s.megabox.review_selector)


def parse_item(item: object, movie: MovieRef, ref: str, where: str, f: MegaboxSettings) -> RawReview:
    """One item of the reviews' `list`, read as the site's own script reads it (../shared/docs/sources.md,
    "Megabox, corrected"); `f` names the fields. No id, text or kind is not the site's shape: a ParseError."""
    text = need(item, "onelnEvalCn", where)
    if not isinstance(text, str):
        raise ParseError(f"{where}: field 'onelnEvalCn' should be the review's text, got {type(text).__name__}")
    rid = need(item, f.id_field, where)
    if rid in (None, "") or isinstance(rid, bool | dict | list):
        raise ParseError(f"{where}: field {f.id_field!r} is not a review id: {rid!r}")
    kind = EXPECTATION if str(need(item, f.kind_field, where)).strip() == f.expectation_code else REVIEW
    # the site shows the last edit's date, else the first post's
    posted = next((t for t in map(parse_time, (item.get("lstUptDt"), item.get("fstRegDt"),
                                               item.get("fullLstUptDt"))) if t), None)
    return RawReview(source_review_id=str(rid), source_movie_id=movie.code, movie_title=movie.title,
                     text=text, rating=score(item.get(f.score_field), where),
                     posted_at=posted, raw_ref=ref, where=where, kind=kind,
                     aspects=_item_points(item, f.aspects_field, where))


def parse_review_page(html: str, movie: MovieRef, ref: str, selector: str) -> list[RawReview]:
    """Reviews of the comment page as the site renders them: `.story-wrap.review` a 관람평, `.preview` a 기대평,
    the id in a `data-no` (of the box or of its like button), the ticked points in `.story-recommend`."""
    soup = BeautifulSoup(html, "lxml")
    out = []
    for i, el in enumerate(soup.select(selector)):
        where = f"megabox review page of movie {movie.code}, review {i}"
        text_el = el.select_one(".story-txt")
        if text_el is None:
            raise ParseError(f"{where}: no '.story-txt' element")
        text = text_el.get_text(" ", strip=True)
        score_el = el.select_one(".story-point span")
        expectation = "preview" in (el.get("class") or [])
        holder = el.find_parent("li") or el
        date_el = (holder.select_one(".story-date .preview span" if expectation else ".story-date .review span")
                   or holder.select_one(".story-date span"))
        posted = parse_time(date_el.get_text(strip=True) if date_el else None)
        no_el = el if el.get("data-no") else el.select_one("[data-no]")
        points = points_of([p.get_text(strip=True) for p in el.select(".story-recommend em, .story-recommend span")])
        out.append(RawReview(source_review_id=(no_el.get("data-no") if no_el else None)
                             or stable_id(movie.code, text, posted),
                             source_movie_id=movie.code, movie_title=movie.title, text=text,
                             rating=score(score_el.get_text(strip=True) if score_el else None, where),
                             posted_at=posted, raw_ref=ref, where=where,
                             kind=EXPECTATION if expectation else REVIEW, aspects=points))
    return out


# --- the points a reviewer ticks ---------------------------------------------------------------------

# the site's names and codes of its points (its charts call 연출 "감독", code DIRTOR) → the store's names
POINT_NAMES = {"연출": "연출", "감독": "연출", "DIRTOR": "연출", "DIRECTOR": "연출", "스토리": "스토리",
               "STORY": "스토리", "영상미": "영상미", "VIDEO": "영상미", "배우": "배우", "ACTOR": "배우", "OST": "OST"}
# what the site sends when a review is written (1 = ticked), in case a list item carries them instead
POINT_FLAGS = {"dirtorScore": "연출", "storyScore": "스토리", "videoScore": "영상미", "actorScore": "배우",
               "ostScore": "OST"}
MAX_POINT_CHARS = 20  # a longer "name" is not a point but text the site put there


def score(value: object, where: str) -> int | None:
    """The reviewer's 1–10 score (`spointScore`, a number or a numeric string); None when none was given
    (missing, empty or 0). Anything else is not the site's scale: a ParseError."""
    if value in (None, ""):
        return None
    try:
        number = float(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number == 0:
        return None
    if number is None or not number.is_integer() or not 1 <= number <= 10:
        raise ParseError(f"{where}: score {value!r} is not on the site's 1–10 scale")
    return int(number)


def points_of(names: list[str]) -> tuple[str, ...] | None:
    """The store's names of the points named, each once, in order; None when none is. A name the site may
    add one day is kept as the site writes it (the movie page lists it after the known five); an empty or
    over-long one is skipped."""
    out: dict[str, None] = {}
    for name in names:
        name = name.strip()
        known = POINT_NAMES.get(name) or POINT_NAMES.get(name.upper())
        if known or 0 < len(name) <= MAX_POINT_CHARS:
            out[known or name] = None
    return tuple(out) or None


def _item_points(item: dict, field: str, where: str) -> tuple[str, ...] | None:
    """The points of a list item: the HTML fragment in `field` (`<span>연출</span><span>OST</span>`, possibly
    entity-escaped as the site sends it), or the write form's flags; None when it names none."""
    value = item.get(field)
    if value is None:
        return points_of([name for flag, name in POINT_FLAGS.items() if int_or_none(item.get(flag)) == 1])
    if isinstance(value, list):  # a list of names: tolerated
        return points_of([str(v) for v in value])
    if not isinstance(value, str):
        raise ParseError(f"{where}: field {field!r} should be an HTML string of points, got {type(value).__name__}")
    fragment = BeautifulSoup(unescape(value), "lxml")
    tags = [t.get_text(strip=True) for t in fragment.find_all(["span", "em", "i", "b", "strong"])]
    return points_of(tags if tags else re.split(r"[,·/|\s]+", fragment.get_text(" ")))
