"""The small interface every review source implements, the raw-response archive, and the parsing
helpers (dates, ids, numbers, JSON fields) the adapters share.

A source lists the movies now playing and gives a movie's reviews page by page, newest first,
each review already in the store's shape (`RawReview`) with a reference to the archived raw
response it came from. The crawl runner decides which pages to read (reviewops.sources.crawl) and
writes what is new.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime

from reviewops.data.ingest import RawReview
from reviewops.errors import SourceError
from reviewops.store.objects import ObjectStore

log = logging.getLogger(__name__)


class ParseError(SourceError):
    """A response no longer has the shape the adapter expects; the message names what is missing."""


@dataclass(frozen=True)
class MovieRef:
    source: str
    code: str
    title: str | None = None


@dataclass(frozen=True)
class Page:
    """One page of a movie's reviews, newest first, and the site's count of all of them when it gives one."""

    reviews: list[RawReview]
    total: int | None = None


class Archive:
    """Raw responses, stored immutably under raw/{source}/{YYYY-MM-DD}/{movie}/.

    The key ends with a hash of the content: the same response fetched twice the same day is
    stored once, a different one gets a new key, and nothing is ever overwritten.
    """

    def __init__(self, store: ObjectStore, source: str, day: date) -> None:
        self.store, self.source, self.day = store, source, day

    def put(self, movie: str, name: str, body: bytes, ext: str) -> str:
        digest = hashlib.sha256(body).hexdigest()[:16]
        key = f"raw/{self.source}/{self.day.isoformat()}/{movie}/{name}-{digest}.{ext}"
        self.store.put(key, body, overwrite=False)
        return self.store.uri(key)


# --- parsing helpers every adapter uses --------------------------------------------------------


def parse_time(value: object) -> datetime | None:
    """Dates as the sites write them: 2026-11-20 09:30:00, 2026.11.20 09:30, 2026-11-20."""
    if not value:
        return None
    text = str(value).strip().replace(".", "-")
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def stable_id(*parts: object) -> str:
    """An id for a review the site gives none: a hash of what identifies it."""
    return "h" + hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:20]


def int_or_none(v: object) -> int | None:
    """A count or score as the sites send it (a number, a numeric string, or nothing)."""
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def load_json(body: bytes, what: str) -> object:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ParseError(f"{what}: response is not valid JSON ({exc}); truncated or not JSON") from None


def need(obj: object, key: str, what: str) -> object:
    """`obj[key]`, or a ParseError naming the missing field."""
    if not isinstance(obj, dict):
        raise ParseError(f"{what}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise ParseError(f"{what}: missing field {key!r} (has: {', '.join(sorted(obj)[:12])})")
    return obj[key]


class Source:
    name: str

    def now_playing(self) -> list[MovieRef]:
        raise NotImplementedError

    settings = None
    browser = None  # a factory of reviewops.sources.browser.Browser, or None

    @property
    def page_size(self) -> int:
        """Reviews on a full page: a shorter page is the last one."""
        raise NotImplementedError

    def review_page(self, movie: MovieRef, page: int) -> Page:
        """Page `page` (from 1) of a movie's reviews, newest first: from the JSON endpoint, or from the
        page rendered in headless Chromium when the JSON no longer makes sense."""
        try:
            return self._json_page(movie, page)
        except ParseError as exc:
            if not (self.browser and self.settings.selenium_fallback):
                raise
            log.warning("%s; falling back to the rendered page", exc)
            return Page(self._rendered_page(movie, page))  # the rendered page gives no count

    def _json_page(self, movie: MovieRef, page: int) -> Page:
        raise NotImplementedError

    def _rendered_page(self, movie: MovieRef, page: int) -> list[RawReview]:
        raise NotImplementedError

    def details(self, movie: MovieRef) -> dict[str, str]:
        """Extra movie details (title, plot) where the source has them; {} otherwise."""
        return {}
