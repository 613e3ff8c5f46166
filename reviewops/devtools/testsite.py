"""A local test web site that imitates the CGV and Megabox review sites.

The site serves real Korean reviews from the bundled sample corpus under the same URL paths,
request payloads and response shapes as the real sites (the endpoints below; the crawlers that read
them are ``reviewops/sources/cgv.py`` and ``megabox.py``, README "Adding a source"), so crawlers can be
tested end to end without the internet:

* a settable clock: day 0 is ``start``; each day every movie gains ``reviews_per_day`` reviews;
* switchable fault modes (HTTP errors, slowness, renamed fields, truncated JSON, garbage, empty
  pages), each limited to a path prefix and a number of requests;
* a request log, for tests of crawl politeness.

Endpoints (all on one host):

=========================================================  =========================================
``GET  /robots.txt``                                        ``Disallow: /private/`` (403 under it)
``GET  /movies/?lt=1&ft=1``                                 CGV now playing (HTML)
``GET  /movies/detail-view/?midx=CODE[&page=N]``            CGV movie page; reviews via JavaScript
``POST /common/ajax/point.aspx/GetMoviePointVariableList``  CGV reviews, ``{"d": "<JSON string>"}``
``POST /on/oh/oha/Movie/selectMovieList.do``                Megabox now playing (JSON)
``POST /on/oh/oha/Movie/selectOneLnList.do``                Megabox reviews (JSON), 10 a page
``GET  /movie-detail/comment?rpstMovieNo=CODE[&page=N]``    Megabox reviews (server HTML), 10 a page
``GET  /_control/state``                                    clock, faults and movies (JSON)
``POST /_control/clock`` ``{"day": N}``                     set the clock
``POST /_control/faults`` ``{"mode", "path", "count"}``     switch a fault on (optional ``after``)
``DELETE /_control/faults``                                 clear all faults
=========================================================  =========================================

Use it from tests with ``TestSite().start()`` (a daemon thread on a free port) or from a shell with
``serve()`` (``reviewops testsite --port N``). Its pages and the CGV page's script are files under
``templates/`` (``string.Template``: values are escaped before they are filled in). By default it serves
the bundled sample corpus (``reviewops.resources``); ``corpus=`` names another.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import re
import socket
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from reviewops.devtools.render import asset, escape, render
from reviewops.resources import sample_corpus
from reviewops.store.models import ASPECTS, EXPECTATION, REVIEW

__all__ = ["FAULT_MODES", "SOURCES", "TestSite", "serve"]

SOURCES = ("cgv", "megabox")
FAULT_MODES = ("http500", "http429", "slow", "renamed_field", "truncated_json", "garbage_html", "empty_page")

# URL paths, exactly as on the real sites.
CGV_NOW_PLAYING = "/movies/"
CGV_DETAIL = "/movies/detail-view/"
CGV_POINTS = "/common/ajax/point.aspx/GetMoviePointVariableList"
MEGABOX_MOVIES = "/on/oh/oha/Movie/selectMovieList.do"
MEGABOX_REVIEWS = "/on/oh/oha/Movie/selectOneLnList.do"
MEGABOX_COMMENT = "/movie-detail/comment"
CONTROL_PREFIX = "/_control"
ROBOTS = "/robots.txt"

# Site codes: codes of the real sites' form (the first of each seen on them), then made-up ones.
CGV_CODES = ("88381", "88076", "89075", "88459")
MEGABOX_CODES = ("24036800", "24010200", "24073500", "24043900")

CGV_PAGE_SIZE = 6
MEGABOX_PAGE_SIZE = 10
PAGER_BLOCK = 10  # page-number links per pager block, as on both sites
GARBAGE = "<html><body>점검 중입니다 <<<>>> &&&</body></html>"

# What the renamed_field fault renames.
RENAMED_KEYS = {"CommentText": "Comment_Text", "onelnEvalCn": "onelnEvalCntt", "movieNm": "movieName"}
RENAMED_CLASSES = {"box-image": "boxImage", "story-txt": "storyTxt", "box-comment": "boxComment"}

_PLOTS = (
    "평범한 하루를 보내던 주인공이 뜻밖의 사건에 휘말리며 모든 것이 달라지기 시작한다.",
    "오래전 헤어진 가족을 찾아 떠난 여정에서 그는 잊고 지낸 자신의 과거와 마주하게 된다.",
    "작은 바닷가 마을에 낯선 손님이 찾아오면서 조용하던 마을에 이상한 일들이 벌어진다.",
    "서로 다른 꿈을 가진 두 친구가 마지막 기회를 잡기 위해 함께 무대에 오르기로 결심한다.",
)

_MOVIE_ID_RE = re.compile(rb'"movie_id"\s*:\s*"?(-?\d+)')


# --- corpus ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Review:
    """One review as both sites show it; ``index`` is its position in the movie (0 = oldest)."""

    index: int
    review_id: int
    rating: int
    text: str
    author: str
    day: int
    posted: datetime

    @property
    def cgv_idx(self) -> int:
        """CGV's integer ``CommentIdx``: stable, derived from the Naver review id."""
        return 50_000_000 + self.review_id

    @property
    def megabox_no(self) -> str:
        """Megabox's string ``onelnEvalNo``: stable, derived from the Naver review id."""
        return f"{self.review_id:010d}"

    @property
    def megabox_kind(self) -> str:
        """Megabox's ``onelnEvalDivCd``: every fifth review (by Naver id) is a 기대평 (``EXPE``), the rest
        관람평 (``PREV``)."""
        return "EXPE" if self.review_id % 5 == 0 else "PREV"

    @property
    def megabox_points(self) -> tuple[str, ...]:
        """The zero to two points (of 연출, 스토리, 영상미, 배우, OST) the reviewer ticked: deterministic."""
        h = (self.review_id * 2654435761) % 2**32
        first, second = h % len(ASPECTS), (h // 7) % len(ASPECTS)
        return {0: (), 1: (ASPECTS[first],)}.get(h % 3, tuple(dict.fromkeys((ASPECTS[first], ASPECTS[second]))))

    @property
    def megabox_score(self) -> int | str:
        """Megabox's ``spointScore``: the 1-10 rating, for every third review (by Naver id) a numeric string,
        as the site's numbers sometimes are."""
        return str(self.rating) if self.review_id % 3 == 0 else self.rating

    @property
    def egg_point(self) -> int:
        """CGV's Golden Egg: 2 (thumbs up) when the 1-10 rating is 6 or more, else 1."""
        return 2 if self.rating >= 6 else 1

    @property
    def likes(self) -> int:
        """Megabox's ``rcmmCnt``: a small deterministic number of likes."""
        return (self.review_id * 7919) % 13


@dataclass(frozen=True)
class _Movie:
    source: str
    code: str
    title: str
    plot: str
    naver_id: int
    reviews: tuple[_Review, ...]  # oldest first


def _read_lines(path: Path) -> list[bytes]:
    """All lines of a JSONL file, gzip-compressed or not."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.splitlines()


@lru_cache(maxsize=8)
def _select(path: str, mtime_ns: int, size: int, n_movies: int) -> tuple[tuple[int, tuple[dict, ...]], ...]:
    """The ``n_movies`` movies with the most reviews (ties: smaller movie id first), with their records.

    Only the ``movie_id`` of every line is looked at; only the chosen movies' lines are parsed.
    The result is cached by file identity (path, mtime, size), so building many sites is cheap.
    """
    lines = _read_lines(Path(path))
    ids: list[int | None] = []
    for line in lines:
        m = _MOVIE_ID_RE.search(line)
        ids.append(int(m.group(1)) if m else None)
    counts = Counter(i for i in ids if i is not None)
    if len(counts) < n_movies:
        raise ValueError(f"corpus {path} has reviews of {len(counts)} movies; the test site needs {n_movies}")
    chosen = [mid for mid, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n_movies]]
    wanted = set(chosen)
    records: dict[int, list[dict]] = {mid: [] for mid in chosen}
    for line, mid in zip(lines, ids, strict=True):
        if mid in wanted:
            rec = json.loads(line)
            records[int(rec["movie_id"])].append(rec)
    return tuple((mid, tuple(sorted(records[mid], key=lambda r: int(r["review_id"])))) for mid in chosen)


# --- small helpers ----------------------------------------------------------------------------------


def _int(value: Any, default: int, field: str) -> int:
    """``value`` as an int (the sites send numbers as ints or strings); ``default`` when absent."""
    if value is None or value == "":
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{field} must be an integer, got {value!r}") from None


def _page_of(items: list, page: int, size: int) -> list:
    return items[(page - 1) * size : page * size]


def _html_page(title: str, body: str) -> str:
    return render("page.html", title=escape(title), body=body) + "\n"


def _pager_numbers(page: int, total_pages: int) -> range:
    """The page numbers of the pager block (of 10) that holds ``page``."""
    first = (page - 1) // PAGER_BLOCK * PAGER_BLOCK + 1
    return range(first, min(first + PAGER_BLOCK, max(total_pages, page) + 1))


def _megabox_pager(code: str, page: int, total_pages: int) -> str:
    """The Megabox comment page's pager: the block of ``page``, then "다음" when more pages follow."""
    numbers = _pager_numbers(page, total_pages)
    links = [render("megabox_pager_current.html" if n == page else "megabox_pager_link.html", n=n, code=code)
             for n in numbers]
    if numbers[-1] < total_pages:
        links.append(render("megabox_pager_next.html", n=numbers[-1] + 1, code=code))
    return "".join(links)


class _BadRequest(ValueError):
    """A request the site answers with 400."""


async def _body(request: Request) -> dict:
    """The request's JSON object body (form-encoded bodies are accepted too); {} when empty."""
    raw = await request.body()
    if not raw.strip():
        return {}
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8")).items()}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise _BadRequest("the request body must be a JSON object")
    return data


def _bad_request(exc: Exception) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=400)


# --- the site ---------------------------------------------------------------------------------------


class TestSite:
    """An in-memory imitation of CGV and Megabox with a clock and fault modes.

    Movies: the ``2 * movies_per_source`` movies of the corpus with the most reviews; the first half
    play at CGV, the second at Megabox. Review ``i`` of a movie (by Naver review id) is posted on day
    ``i // reviews_per_day``; at most ``days * reviews_per_day`` reviews per movie are used. At clock
    day ``d`` a movie shows its reviews of days ``0..d``, newest first.

    All state sits in memory behind one lock; the ASGI app is ``self.app``.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        corpus: Path | None = None,
        movies_per_source: int = 4,
        days: int = 10,
        start: date = date(2026, 11, 1),
        reviews_per_day: int = 15,
    ) -> None:
        if movies_per_source < 1 or days < 1 or reviews_per_day < 1:
            raise ValueError("movies_per_source, days and reviews_per_day must be at least 1")
        self.corpus = Path(corpus) if corpus is not None else sample_corpus()
        self.movies_per_source = movies_per_source
        self.days = days
        self.start_date = start
        self.reviews_per_day = reviews_per_day
        self.slow_seconds = 5.0  # how long the `slow` fault waits before answering
        self.request_log: list[tuple[float, str, str]] = []
        self.max_in_flight = 0  # most site (non-control) requests ever handled at once
        self._in_flight = 0
        self._lock = threading.Lock()
        self._day = 0
        self._faults: list[dict[str, Any]] = []
        self._movies: dict[str, dict[str, _Movie]] = {s: {} for s in SOURCES}
        self._load()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.base_url: str | None = None
        self.app = self._build_app()

    # -- corpus -> movies ---------------------------------------------------------------------

    def _load(self) -> None:
        st = self.corpus.stat()
        chosen = _select(str(self.corpus.resolve()), st.st_mtime_ns, st.st_size, 2 * self.movies_per_source)
        limit = self.days * self.reviews_per_day
        step = max(1, 15 * 3600 // self.reviews_per_day)  # spread a day's reviews over 09:00-24:00
        for n, (naver_id, records) in enumerate(chosen):
            source = "cgv" if n < self.movies_per_source else "megabox"
            k = n % self.movies_per_source
            if source == "cgv":
                code = CGV_CODES[k] if k < len(CGV_CODES) else str(89100 + k)
            else:
                code = MEGABOX_CODES[k] if k < len(MEGABOX_CODES) else str(24100000 + 100 * k)
            reviews = []
            for i, rec in enumerate(records[:limit]):
                day, slot = divmod(i, self.reviews_per_day)
                posted = datetime.combine(self.start_date + timedelta(days=day), datetime.min.time())
                posted += timedelta(hours=9, seconds=min(slot * step, 15 * 3600 - 1))
                reviews.append(
                    _Review(
                        index=i,
                        review_id=int(rec["review_id"]),
                        rating=int(rec["rating"]),
                        text=str(rec["text"]),
                        author=str(rec.get("author") or "익명"),
                        day=day,
                        posted=posted,
                    )
                )
            self._movies[source][code] = _Movie(
                source=source,
                code=code,
                title=f"테스트 영화 {n + 1}",
                plot=_PLOTS[n % len(_PLOTS)],
                naver_id=naver_id,
                reviews=tuple(reviews),
            )

    # -- clock and faults -----------------------------------------------------------------------

    @property
    def day(self) -> int:
        """The clock's day (0 = the start date)."""
        return self._day

    @property
    def today(self) -> date:
        """The clock's date."""
        return self.start_date + timedelta(days=self._day)

    def set_day(self, day: int) -> None:
        """Set the clock; day 0 is the start date. Same as ``POST /_control/clock {"day": N}``."""
        if isinstance(day, bool) or not isinstance(day, int) or day < 0:
            raise ValueError(f"day must be an integer >= 0, got {day!r}")
        with self._lock:
            self._day = day

    def set_fault(self, mode: str, path: str | None = None, count: int = -1, after: int = 0) -> None:
        """Switch a fault on. Same as ``POST /_control/faults``.

        ``path``: a path prefix (e.g. ``"/on/"``); ``None`` means every site path except
        ``/robots.txt`` (target it explicitly, e.g. with ``"/robots.txt"`` or ``"/"``).
        ``count``: how many matching requests get the fault before the site is normal again;
        -1 is forever. ``after``: how many matching requests pass untouched first (``after=1`` on
        the reviews path of a one-movie crawl faults its page 2). A fault set for the same ``path``
        replaces the earlier one; when several match a request, the one with the longest path
        prefix applies. Paths under ``/_control`` are never faulted.
        """
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; known: {', '.join(FAULT_MODES)}")
        if isinstance(count, bool) or not isinstance(count, int) or (count < 1 and count != -1):
            raise ValueError(f"count must be -1 (forever) or >= 1, got {count!r}")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ValueError(f"after must be an integer >= 0, got {after!r}")
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise ValueError(f"path must be null or a path prefix starting with '/', got {path!r}")
        with self._lock:
            self._faults = [f for f in self._faults if f["path"] != path]
            fault = {"mode": mode, "path": path, "count": count, **({"after": after} if after else {})}
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Switch all faults off. Same as ``DELETE /_control/faults``."""
        with self._lock:
            self._faults = []

    def _take_fault(self, path: str) -> str | None:
        """The fault mode for a request to ``path``, counting it; call with the lock held."""
        best = None
        for fault in self._faults:
            prefix = fault["path"]
            matches = path != ROBOTS if prefix is None else path.startswith(prefix)
            if matches and (best is None or len(prefix or "") > len(best["path"] or "")):
                best = fault
        if best is None:
            return None
        if best.get("after"):
            best["after"] -= 1
            return None
        if best["count"] > 0:
            best["count"] -= 1
            if best["count"] == 0:
                self._faults.remove(best)
        return best["mode"]

    def state(self) -> dict[str, Any]:
        """The clock, the active faults and the movies, as ``GET /_control/state`` answers."""
        with self._lock:
            return {
                "day": self._day,
                "date": self.today.isoformat(),
                "start": self.start_date.isoformat(),
                "days": self.days,
                "reviews_per_day": self.reviews_per_day,
                "faults": [dict(f) for f in self._faults],
                "movies": {s: self.movies(s) for s in SOURCES},
            }

    # -- what the site shows ---------------------------------------------------------------------

    def _movie_map(self, source: str) -> dict[str, _Movie]:
        if source not in self._movies:
            raise ValueError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
        return self._movies[source]

    def movies(self, source: str) -> list[dict]:
        """The movies now playing at ``source`` ("cgv" or "megabox"): ``[{"code", "title"}]``."""
        return [{"code": m.code, "title": m.title} for m in self._movie_map(source).values()]

    def _visible(self, movie: _Movie) -> list[_Review]:
        """The reviews shown at the clock's day, newest first."""
        shown = min(len(movie.reviews), (self._day + 1) * self.reviews_per_day)
        return list(reversed(movie.reviews[:shown]))

    def visible_reviews(self, source: str, code: str) -> list[dict]:
        """What the site shows now for one movie, newest first ([] for an unknown code).

        Each review: ``id`` (CGV ``CommentIdx`` as a string / Megabox ``onelnEvalNo``), ``review_id``
        (the Naver id), ``text``, ``rating`` (1-10), ``score`` (CGV ``EggPoint`` / Megabox
        ``spointScore``, as an int), ``author``, ``posted`` (``datetime``), ``day``, ``likes`` (Megabox
        ``rcmmCnt``), ``kind`` (``"review"``, or ``"expectation"`` for a Megabox 기대평) and ``aspects``
        (the Megabox points ticked, a list, or None: none ticked, and always at CGV).
        """
        movie = self._movie_map(source).get(str(code))
        if movie is None:
            return []
        with self._lock:
            shown = self._visible(movie)
        out = []
        for r in shown:
            cgv = source == "cgv"
            out.append(
                {
                    "id": str(r.cgv_idx) if cgv else r.megabox_no,
                    "review_id": r.review_id,
                    "text": r.text,
                    "rating": r.rating,
                    "score": r.egg_point if cgv else r.rating,
                    "author": r.author,
                    "posted": r.posted,
                    "day": r.day,
                    "likes": r.likes,
                    "kind": EXPECTATION if not cgv and r.megabox_kind == "EXPE" else REVIEW,
                    "aspects": None if cgv else list(r.megabox_points) or None,
                }
            )
        return out

    # -- server ----------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the site with uvicorn in a daemon thread; return its base URL once it answers.

        ``port=0`` picks a free port.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"the test site is already running at {self.base_url}")
        sock = _bind(host, port)
        server = uvicorn.Server(_uvicorn_config(self.app, host))
        url = _base_url(host, sock.getsockname()[1])
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="testsite", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(url + CONTROL_PREFIX + "/state", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError(f"the test site did not start at {url}")
            time.sleep(0.02)
        self._server, self._thread, self.base_url = server, thread, url
        return url

    def stop(self) -> None:
        """Stop the server started by :meth:`start`; requests held by the ``slow`` fault get a 503."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.should_exit = True
        thread.join(timeout=5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        self._server = self._thread = None
        self.base_url = None
        self._stopping.clear()

    # -- the ASGI app ------------------------------------------------------------------------------

    def _build_app(self) -> Any:
        routes = [
            Route("/", self._index, methods=["GET"]),
            Route(ROBOTS, self._robots, methods=["GET"]),
            Route("/private/{rest:path}", self._private, methods=["GET", "POST"]),
            Route(CGV_NOW_PLAYING, self._cgv_now_playing, methods=["GET"]),
            Route(CGV_DETAIL, self._cgv_detail, methods=["GET"]),
            Route(CGV_POINTS, self._cgv_points, methods=["POST"]),
            Route(MEGABOX_MOVIES, self._megabox_movies, methods=["POST"]),
            Route(MEGABOX_REVIEWS, self._megabox_reviews, methods=["POST"]),
            Route(MEGABOX_COMMENT, self._megabox_comment, methods=["GET"]),
            Route(CONTROL_PREFIX + "/state", self._control_state, methods=["GET"]),
            Route(CONTROL_PREFIX + "/clock", self._control_clock, methods=["POST"]),
            Route(CONTROL_PREFIX + "/faults", self._control_faults, methods=["POST", "DELETE"]),
        ]
        return _FaultLayer(Starlette(routes=routes), self)

    @staticmethod
    def _variant(request: Request) -> str:
        """The page variant a fault asks for: normal, renamed (renamed_field) or empty (empty_page)."""
        return request.scope.get("testsite.variant", "normal")

    # pages shared by both sites

    async def _index(self, request: Request) -> Response:
        links = [render("index_megabox_link.html", href=f"{MEGABOX_COMMENT}?rpstMovieNo={m['code']}",
                         title=escape(m["title"])) for m in self.movies("megabox")]
        body = render("index.html", cgv_now_playing=CGV_NOW_PLAYING, megabox_links="\n".join(links),
                       control_state=f"{CONTROL_PREFIX}/state")
        return HTMLResponse(_html_page("ReviewOps test site", body))

    async def _robots(self, request: Request) -> Response:
        if self._variant(request) == "empty":
            return PlainTextResponse("")
        return PlainTextResponse("User-agent: *\nDisallow: /private/\n")

    async def _private(self, request: Request) -> Response:
        return PlainTextResponse("Forbidden", status_code=403)

    # CGV

    async def _cgv_now_playing(self, request: Request) -> Response:
        variant = self._variant(request)
        image_cls = RENAMED_CLASSES["box-image"] if variant == "renamed" else "box-image"
        items = [
            render("cgv_movie.html", image_class=image_cls, rank=rank, href=f"{CGV_DETAIL}?midx={m['code']}",
                    title=escape(m["title"]), code=m["code"])
            for rank, m in enumerate(self.movies("cgv") if variant != "empty" else [], start=1)
        ]
        body = render("cgv_now_playing.html", items="\n".join(items))
        return HTMLResponse(_html_page("무비차트 | CGV", body))

    async def _cgv_detail(self, request: Request) -> Response:
        variant = self._variant(request)
        movie = self._movies["cgv"].get(request.query_params.get("midx", "").strip())
        if movie is None:
            return HTMLResponse(_html_page("CGV", render("no_movie.html")), status_code=404)
        config = {
            "midx": int(movie.code),
            "endpoint": CGV_POINTS,
            "pageSize": CGV_PAGE_SIZE,
            "commentClass": RENAMED_CLASSES["box-comment"] if variant == "renamed" else "box-comment",
            "empty": variant == "empty",
        }
        config_json = json.dumps(config).replace("<", "\\u003c")
        body = render("cgv_detail.html", title=escape(movie.title), plot=escape(movie.plot),
                      config_json=config_json, script=asset("cgv_detail.js"))
        return HTMLResponse(_html_page(f"{movie.title} | CGV", body))

    async def _cgv_points(self, request: Request) -> Response:
        try:
            data = await _body(request)
            page = max(1, _int(data.get("pageIndex"), 1, "pageIndex"))
            size = min(100, max(1, _int(data.get("pageSize"), CGV_PAGE_SIZE, "pageSize")))
        except ValueError as exc:
            return _bad_request(exc)
        variant = self._variant(request)
        if variant == "empty":
            return JSONResponse({"d": json.dumps({"List": [], "TotalCount": 0})})
        code = str(data.get("movieIdx", "")).strip()
        movie = self._movies["cgv"].get(code)
        with self._lock:
            shown = self._visible(movie) if movie else []
        text_key = RENAMED_KEYS["CommentText"] if variant == "renamed" else "CommentText"
        items = [
            {
                "CommentIdx": r.cgv_idx,
                text_key: r.text,
                "EggPoint": r.egg_point,
                "WriterNickName": r.author,
                "RegistDate": r.posted.strftime("%Y-%m-%d %H:%M:%S"),
                "MovieIdx": int(movie.code),
            }
            for r in _page_of(shown, page, size)
        ]
        inner = {"List": items, "TotalCount": len(shown), "PageIndex": page}
        return JSONResponse({"d": json.dumps(inner, ensure_ascii=False)})

    # Megabox

    async def _megabox_movies(self, request: Request) -> Response:
        try:
            data = await _body(request)
            page = max(1, _int(data.get("currentPage"), 1, "currentPage"))
            size = min(100, max(1, _int(data.get("recordCountPerPage"), 20, "recordCountPerPage")))
        except ValueError as exc:
            return _bad_request(exc)
        variant = self._variant(request)
        if variant == "empty":
            return JSONResponse({"movieList": []})
        name_key = RENAMED_KEYS["movieNm"] if variant == "renamed" else "movieNm"
        movies = self.movies("megabox")
        items = [{"movieNo": m["code"], name_key: m["title"], "onairYn": "Y"}
                 for m in _page_of(movies, page, size)]
        return JSONResponse({"movieList": items, "totCnt": len(movies)})

    def _megabox_page(self, code: str, page: int, size: int) -> tuple[_Movie | None, list[_Review], int]:
        """(movie, the page's reviews, total visible) for a Megabox movie code."""
        movie = self._movies["megabox"].get(code)
        with self._lock:
            shown = self._visible(movie) if movie else []
        return movie, _page_of(shown, page, size), len(shown)

    async def _megabox_reviews(self, request: Request) -> Response:
        try:
            data = await _body(request)
            page = max(1, _int(data.get("currentPage"), 1, "currentPage"))
            per_page = _int(data.get("recordCountPerPage"), MEGABOX_PAGE_SIZE, "recordCountPerPage")
            size = min(100, max(1, per_page))
        except ValueError as exc:
            return _bad_request(exc)
        variant = self._variant(request)
        if variant == "empty":
            return JSONResponse({"list": [], "totCnt": 0})
        code = str(data.get("movieNo", "")).strip()
        movie, reviews, total = self._megabox_page(code, page, size)
        text_key = RENAMED_KEYS["onelnEvalCn"] if variant == "renamed" else "onelnEvalCn"
        # the fields the site's own review script reads (../shared/docs/sources.md, "Megabox, corrected")
        items = [
            {
                "onelnEvalNo": r.megabox_no,
                text_key: r.text,
                "spointScore": r.megabox_score,
                "onelnEvalDivCd": r.megabox_kind,
                "onelnEvalDivNm": "기대평" if r.megabox_kind == "EXPE" else "관람평",
                # an HTML fragment, entity-escaped; the site's script unescapes it and shows each span as an em
                "topScorePoint": escape("".join(f"<span>{p}</span>" for p in r.megabox_points)),
                "rcmmCnt": r.likes,
                "fstRegDt": r.posted.strftime("%Y.%m.%d %H:%M"),
                "lstUptDt": "",
                "loginId": r.author,
                "viewType": "TYPE01",
                "movieNo": code,
                "movieNm": movie.title if movie else "",
            }
            for r in reviews
        ]
        return JSONResponse({"list": items, "totCnt": total})

    async def _megabox_comment(self, request: Request) -> Response:
        variant = self._variant(request)
        code = request.query_params.get("rpstMovieNo", "").strip()
        try:
            page = max(1, _int(request.query_params.get("page"), 1, "page"))
        except ValueError as exc:
            return _bad_request(exc)
        movie, reviews, total = self._megabox_page(code, page, MEGABOX_PAGE_SIZE)
        if movie is None:
            return HTMLResponse(_html_page("메가박스", render("no_movie.html")), status_code=404)
        if variant == "empty":
            reviews, total = [], 0
        txt_cls = RENAMED_CLASSES["story-txt"] if variant == "renamed" else "story-txt"
        items = [
            render("megabox_review.html", author=escape(r.author), no=r.megabox_no, rating=r.rating,
                   text_class=txt_cls, text=escape(r.text), posted=r.posted.strftime("%Y.%m.%d %H:%M"),
                   kind=escape(r.megabox_kind), kind_class="preview" if r.megabox_kind == "EXPE" else "review",
                   kind_name="기대평" if r.megabox_kind == "EXPE" else "관람평",
                   points="".join(f"<em>{escape(p)}</em>" for p in r.megabox_points))
            for r in reviews
        ]
        body = render("megabox_comment.html", title=escape(movie.title), items="\n".join(items),
                       pager=_megabox_pager(code, page, math.ceil(total / MEGABOX_PAGE_SIZE)))
        return HTMLResponse(_html_page(f"{movie.title} 관람평 | 메가박스", body))

    # control

    async def _control_state(self, request: Request) -> Response:
        return JSONResponse(self.state())

    async def _control_clock(self, request: Request) -> Response:
        try:
            data = await _body(request)
            if "day" not in data:
                raise ValueError('the body must be {"day": N}')
            self.set_day(_int(data["day"], 0, "day"))
        except ValueError as exc:
            return _bad_request(exc)
        return JSONResponse(self.state())

    async def _control_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear_faults()
            return JSONResponse(self.state())
        try:
            data = await _body(request)
            self.set_fault(str(data.get("mode")), data.get("path"), _int(data.get("count"), -1, "count"),
                           _int(data.get("after"), 0, "after"))
        except ValueError as exc:
            return _bad_request(exc)
        return JSONResponse(self.state())


# --- fault layer ------------------------------------------------------------------------------------


class _FaultLayer:
    """ASGI middleware: logs every request and applies the site's fault modes."""

    def __init__(self, app: Any, site: TestSite) -> None:
        self.app = app
        self.site = site

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        site, path = self.site, scope["path"]
        control = path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")
        with site._lock:
            site.request_log.append((time.monotonic(), scope["method"], path))
            mode = None if control else site._take_fault(path)
            if not control:
                site._in_flight += 1
                site.max_in_flight = max(site.max_in_flight, site._in_flight)
        try:
            await self._answer(scope, receive, send, mode)
        finally:
            if not control:
                with site._lock:
                    site._in_flight -= 1

    async def _answer(self, scope: dict, receive: Any, send: Any, mode: str | None) -> None:
        if mode == "slow":
            # Sleep in small steps so that stop() need not wait for (or cancel) a slow answer.
            deadline = time.monotonic() + self.site.slow_seconds
            while time.monotonic() < deadline:
                if self.site._stopping.is_set():
                    await PlainTextResponse("Shutting down", status_code=503)(scope, receive, send)
                    return
                await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            mode = None
        fixed: Response | None = None
        if mode == "http500":
            fixed = PlainTextResponse("Internal Server Error", status_code=500)
        elif mode == "http429":
            fixed = PlainTextResponse("Too Many Requests", status_code=429, headers={"Retry-After": "1"})
        elif mode == "garbage_html":
            fixed = HTMLResponse(GARBAGE)
        if fixed is not None:
            await fixed(scope, receive, send)
            return
        if mode in ("renamed_field", "empty_page"):
            scope = dict(scope, **{"testsite.variant": "renamed" if mode == "renamed_field" else "empty"})
        if mode == "truncated_json":
            send = _truncating(send)
        await self.app(scope, receive, send)


def _truncating(send: Any) -> Any:
    """A ``send`` that buffers the response and sends only the first half of its body (status 200)."""
    start: dict = {}
    chunks: list[bytes] = []

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        text = b"".join(chunks).decode("utf-8", errors="replace")
        body = text[: len(text) // 2].encode("utf-8")
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


# --- serving ----------------------------------------------------------------------------------------


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def _base_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _uvicorn_config(app: Any, host: str) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )


def serve(host: str = "127.0.0.1", port: int = 8800, **kwargs: Any) -> None:
    """Serve a :class:`TestSite` in the foreground until interrupted; prints the base URL first.

    ``kwargs`` go to :class:`TestSite` (``corpus``, ``movies_per_source``, ``days``, ``start``,
    ``reviews_per_day``).
    """
    site = TestSite(**kwargs)
    sock = _bind(host, port)
    print(_base_url(host, sock.getsockname()[1]), flush=True)
    try:
        uvicorn.Server(_uvicorn_config(site.app, host)).run(sockets=[sock])
    finally:
        sock.close()
