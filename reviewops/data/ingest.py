"""Corpus ingest: review files → cleaned, labelled rows in the review store.

Two formats are read:
- the shared JSONL(.gz) corpus: one object a line with review_id, movie_id, date, rating, text
  (and optionally author);
- NSMC's TSV: a header `id<TAB>document<TAB>label` with label 0 or 1.

An ingest is one collection batch in one transaction: a bad line anywhere (malformed JSON, a
missing field, an unknown rating, bytes that are not UTF-8) aborts it with an error naming the file
and line, and nothing of it is stored. A second ingest of the same file adds nothing.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import null, select, update
from sqlalchemy.orm import Session

from reviewops.data.labels import LabelPolicy, gets_label
from reviewops.errors import InputError
from reviewops.progress import progress
from reviewops.store.batches import close_orphaned
from reviewops.store.db import insert_new
from reviewops.store.models import REVIEW, CollectionBatch, Movie, Review, utcnow
from reviewops.text.clean import Cleaner, CleanResult, dedup_key

CHUNK = 5_000
UNKNOWN_MOVIE = "unknown"


@dataclass(frozen=True)
class RawReview:
    """One review as a source gave it, before cleaning."""

    source_review_id: str
    source_movie_id: str
    text: str
    rating: int | None = None
    egg: int | None = None
    label: int | None = None  # a label given by the source itself (NSMC)
    posted_at: datetime | None = None
    author: str | None = None
    movie_title: str | None = None
    raw_ref: str | None = None
    where: str = ""  # file:line, for error messages
    kind: str = REVIEW  # or EXPECTATION: a Megabox 기대평, written before the film was seen
    aspects: tuple[str, ...] | None = None  # the points the reviewer ticked (Megabox), Korean names


@dataclass
class IngestSummary:
    batch_id: int
    source: str
    location: str
    read: int = 0
    new: int = 0
    already_stored: int = 0
    labels: dict[str, int] = field(default_factory=lambda: {"positive": 0, "negative": 0, "unlabelled": 0})
    cleaning: dict[str, int] = field(default_factory=dict)
    cleaning_version: str = ""

    def as_dict(self) -> dict:
        return {
            "batch_id": self.batch_id,
            "source": self.source,
            "location": self.location,
            "read": self.read,
            "new": self.new,
            "already_stored": self.already_stored,
            "labels": self.labels,
            "cleaning": self.cleaning,
            "cleaning_version": self.cleaning_version,
        }


# --- readers -------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
        return "jsonl"
    if name.endswith((".tsv", ".txt", ".tsv.gz", ".txt.gz")):
        return "nsmc"
    raise InputError(f"{path}: unknown corpus format (expected .jsonl[.gz] or NSMC .tsv/.txt)")


class _Counted(io.RawIOBase):
    """Counts the bytes read from the file underneath, for a progress bar over compressed input."""

    def __init__(self, raw: io.BufferedReader) -> None:
        self.raw, self.pos = raw, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.raw.readinto(b)
        self.pos += n or 0
        return n


def open_lines(path: Path, counter: _Counted | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of a plain or gzip file, with clear errors for bad bytes. `counter`, when
    given, wraps a file the caller opened (to follow progress through compressed input)."""
    if counter is None:
        try:
            fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        with fh:
            yield from open_lines(path, _Counted(fh))  # type: ignore[arg-type]
        return
    stream: io.IOBase = io.BufferedReader(counter, buffer_size=1 << 20)
    if path.name.endswith(".gz"):
        stream = gzip.GzipFile(fileobj=stream)
    lineno = 0
    try:
        for lineno, raw in enumerate(stream, start=1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: unreadable after line {lineno}: {exc}") from None


def _int_field(obj: dict, key: str, where: str, optional: bool = False) -> int | None:
    value = obj.get(key)
    if value is None or value == "":
        if optional:
            return None
        raise InputError(f"{where}: missing field {key!r}")
    if isinstance(value, bool):
        raise InputError(f"{where}: field {key!r} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: field {key!r} must be an integer, got {value!r}") from None


def _date_field(value: object, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"{where}: field 'date' is not a date: {value!r}") from None


def json_object(line: str, where: str) -> dict:
    """One JSONL line as an object, or an InputError naming the file and line."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def text_field(obj: dict, where: str) -> str:
    text = obj.get("text")
    if text is None:
        raise InputError(f"{where}: missing field 'text'")
    if not isinstance(text, str):
        raise InputError(f"{where}: field 'text' must be a string")
    return text


def read_jsonl(path: Path, counter: _Counted) -> Iterator[RawReview]:
    for lineno, line in open_lines(path, counter):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        obj = json_object(line, where)
        text = text_field(obj, where)
        rating = _int_field(obj, "rating", where, optional="label" in obj)
        if rating is not None and not 1 <= rating <= 10:
            raise InputError(f"{where}: unknown rating {rating} (expected 1–10)")
        yield RawReview(
            source_review_id=str(_int_field(obj, "review_id", where)),
            source_movie_id=str(obj.get("movie_id") if obj.get("movie_id") not in (None, "") else UNKNOWN_MOVIE),
            text=text,
            rating=rating,
            label=_int_field(obj, "label", where, optional=True),
            posted_at=_date_field(obj.get("date"), where),
            author=obj.get("author") or None,
            where=where,
        )


def read_nsmc(path: Path, counter: _Counted) -> Iterator[RawReview]:
    lines = open_lines(path, counter)
    first = next(lines, None)
    if first is None:
        raise InputError(f"{path}: file is empty")
    header = first[1].rstrip("\r\n").lstrip("\ufeff").split("\t")
    missing = [c for c in ("id", "document", "label") if c not in header]
    if missing:
        raise InputError(f"{path}:1: missing column(s) {', '.join(missing)} (NSMC TSV needs id, document, label)")
    idx = {name: header.index(name) for name in ("id", "document", "label")}
    for lineno, line in lines:
        line = line.rstrip("\r\n")
        if not line:
            continue
        where = f"{path}:{lineno}"
        cells = next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE))
        if len(cells) < len(header):
            raise InputError(f"{where}: expected {len(header)} tab-separated columns, got {len(cells)}")
        label = cells[idx["label"]].strip()
        if label not in ("0", "1"):
            raise InputError(f"{where}: unknown label {label!r} (expected 0 or 1)")
        yield RawReview(
            source_review_id=cells[idx["id"]].strip(),
            source_movie_id=UNKNOWN_MOVIE,
            text=cells[idx["document"]],
            label=int(label),
            where=where,
        )


# --- writing ---------------------------------------------------------------------------------


class ReviewWriter:
    """Cleans, labels, deduplicates and inserts reviews of one batch, a chunk at a time.

    Shared by corpus ingest and the crawlers: what a review becomes in the store is decided here.
    `label_expectations`: label a 기대평 from its score too (data.labels.gets_label).
    """

    def __init__(self, session: Session, batch: CollectionBatch, cleaner: Cleaner, policy: LabelPolicy,
                 label_expectations: bool = False) -> None:
        self.session, self.batch, self.cleaner, self.policy = session, batch, cleaner, policy
        self.label_expectations = label_expectations
        self.read = self.new = self.already_stored = 0
        self.labels = {"positive": 0, "negative": 0, "unlabelled": 0}
        self._movies: dict[str, int] = {}
        self._seen_keys: set[tuple[int, str]] = set()

    def add(self, records: Iterable[RawReview]) -> None:
        chunk: list[RawReview] = []
        for rec in records:
            chunk.append(rec)
            if len(chunk) >= CHUNK:
                self._flush(chunk)
                chunk = []
        if chunk:
            self._flush(chunk)

    def _movie_ids(self, recs: list[RawReview]) -> None:
        source = self.batch.source
        wanted = {r.source_movie_id: r.movie_title for r in recs if r.source_movie_id not in self._movies}
        if not wanted:
            return
        rows = self.session.execute(
            select(Movie.source_movie_id, Movie.id).where(
                Movie.source == source, Movie.source_movie_id.in_(list(wanted))
            )
        )
        self._movies.update(dict(rows.all()))
        missing = [m for m in wanted if m not in self._movies]
        if missing:
            # another run (a second crawl, a parallel Airflow task) may insert the same movie meanwhile: keep its row
            self.session.execute(
                insert_new(self.session, Movie.__table__, ("source", "source_movie_id")),
                [{"source": source, "source_movie_id": m, "title": wanted[m], "created_at": utcnow()} for m in missing],
            )
            rows = self.session.execute(
                select(Movie.source_movie_id, Movie.id).where(
                    Movie.source == source, Movie.source_movie_id.in_(missing)
                )
            )
            self._movies.update(dict(rows.all()))

    def _flush(self, recs: list[RawReview]) -> None:
        self.read += len(recs)
        fresh = self._fresh(recs)
        if not fresh:
            return
        self._movie_ids(fresh)
        cleaned = self._clean(fresh)
        self._load_seen_keys(cleaned)
        now = utcnow()
        self._insert([self._row(r, res, movie, key, now) for r, res, movie, key in cleaned])

    def _fresh(self, recs: list[RawReview]) -> list[RawReview]:
        """The reviews of `recs` not in the store yet, each id once; the others count as already stored."""
        stored = set(
            self.session.scalars(
                select(Review.source_review_id).where(
                    Review.source == self.batch.source,
                    Review.source_review_id.in_([r.source_review_id for r in recs]),
                )
            )
        )
        fresh: dict[str, RawReview] = {}
        for r in recs:
            if r.source_review_id in stored or r.source_review_id in fresh:
                self.already_stored += 1
            else:
                fresh[r.source_review_id] = r
        return list(fresh.values())

    def _clean(self, recs: list[RawReview]) -> list[tuple[RawReview, CleanResult, int, str]]:
        """Each review with its cleaning, its movie's row id and its dedup key ("" when rejected)."""
        cleaned = []
        for r in recs:
            res = self.cleaner.clean(r.text)
            movie = self._movies[r.source_movie_id]
            cleaned.append((r, res, movie, dedup_key(res.text) if not res.rejected else ""))
        return cleaned

    def _load_seen_keys(self, cleaned: list[tuple[RawReview, CleanResult, int, str]]) -> None:
        """Remember the stored (movie, key) pairs of these reviews' keys: a duplicate is the same normalised
        text already kept for the same movie."""
        keys = {k for *_, k in cleaned if k}
        movies = {m for _, _, m, k in cleaned if k}
        if not keys:
            return
        # filter movies here: an IN on both columns makes SQLite probe every pair
        for movie, key in self.session.execute(
            select(Review.movie_id, Review.text_key).where(
                Review.text_key.in_(keys), Review.reject_reason.is_(None)
            )
        ):
            if movie in movies:
                self._seen_keys.add((movie, key))

    def _row(self, r: RawReview, res: CleanResult, movie: int, key: str, now: datetime) -> dict:
        """The review's row; counts its label when it is kept."""
        reject = self._reject(res, movie, key)
        label = self._label(r)
        if not reject:
            self.labels[{1: "positive", 0: "negative", None: "unlabelled"}[label]] += 1
        return {
            "source": self.batch.source,
            "source_review_id": r.source_review_id,
            "movie_id": movie,
            "text": r.text,
            "clean_text": res.text,
            "text_key": key or dedup_key(res.text),
            "rating": r.rating,
            "egg": r.egg,
            "label": label,
            "reject_reason": reject,
            "cleaning_version": self.cleaner.version,
            "author": r.author,
            "raw_ref": r.raw_ref,
            "posted_at": r.posted_at,
            "collected_at": now,
            "batch_id": self.batch.id,
            "kind": r.kind,
            "aspects": list(r.aspects) if r.aspects else null(),  # SQL NULL: JSON's None would store 'null'
        }

    def _reject(self, res: CleanResult, movie: int, key: str) -> str | None:
        """The cleaner's rejection, else "duplicate" when the movie already has this text (else it has it now)."""
        if res.rejected:
            return res.rejected
        if (movie, key) in self._seen_keys:
            self.cleaner.count_duplicate()
            return "duplicate"
        self._seen_keys.add((movie, key))
        return None

    def _insert(self, rows: list[dict]) -> None:
        # a review another run stored since the check in _fresh is skipped, not an error
        inserted = len(self.session.execute(
            insert_new(self.session, Review.__table__, ("source", "source_review_id")).returning(Review.id), rows
        ).all())
        self.new += inserted
        self.already_stored += len(rows) - inserted

    def _label(self, r: RawReview) -> int | None:
        if not gets_label(r.kind, self.label_expectations):
            return None
        if r.label is not None:
            if r.label not in (0, 1):
                raise InputError(f"{r.where}: unknown label {r.label!r} (expected 0 or 1)")
            return r.label
        if r.rating is not None:
            try:
                return self.policy.from_rating(r.rating)
            except InputError as exc:
                raise InputError(f"{r.where}: {exc}") from None
        return self.policy.from_egg(r.egg)

    def counts(self) -> dict:
        return {
            "read": self.read,
            "new": self.new,
            "already_stored": self.already_stored,
            "labels": dict(self.labels),
            "cleaning": self.cleaner.summary(),
        }


def ingest(
    path: str | Path, session_factory, cleaner: Cleaner, policy: LabelPolicy, source: str | None = None
) -> IngestSummary:
    """Ingest one corpus file as one batch. `session_factory()` gives a transactional scope."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a corpus file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    fmt = detect_format(path)
    source = source or ("naver" if fmt == "jsonl" else "nsmc")
    reader = read_jsonl if fmt == "jsonl" else read_nsmc

    close_orphaned(session_factory)  # batches of runs that died, before this one opens its own
    with open(path, "rb", buffering=0) as fh:
        counter = _Counted(fh)  # type: ignore[arg-type]
        try:
            with session_factory() as session:
                batch = CollectionBatch(
                    kind="ingest", source=source, location=str(path), cleaning_version=cleaner.version, counts={}
                )
                session.add(batch)
                session.flush()
                writer = ReviewWriter(session, batch, cleaner, policy)
                total = path.stat().st_size
                with progress(f"ingest {path.name}", total=total) as bar:

                    def tracked() -> Iterator[RawReview]:
                        for i, rec in enumerate(reader(path, counter)):
                            if i % 2000 == 0:
                                bar.update(counter.pos)
                            yield rec
                        bar.update(total)

                    writer.add(tracked())
                if writer.read == 0:
                    raise InputError(f"{path}: no reviews in the file")
                counts = writer.counts()
                session.execute(
                    update(CollectionBatch)
                    .where(CollectionBatch.id == batch.id)
                    .values(status="succeeded", counts=counts, finished_at=utcnow())
                )
                batch_id = batch.id
        except InputError as exc:
            _record_failed_batch(session_factory, source, path, cleaner.version, str(exc))
            raise
    return IngestSummary(
        batch_id=batch_id,
        source=source,
        location=str(path),
        read=counts["read"],
        new=counts["new"],
        already_stored=counts["already_stored"],
        labels=counts["labels"],
        cleaning=counts["cleaning"],
        cleaning_version=cleaner.version,
    )


def _record_failed_batch(session_factory, source: str, path: Path, version: str, error: str) -> None:
    """Keep a trace of a failed ingest (no reviews: its transaction was rolled back)."""
    with session_factory() as session:
        session.add(
            CollectionBatch(
                kind="ingest",
                source=source,
                location=str(path),
                status="failed",
                cleaning_version=version,
                counts={},
                error=error[:2000],
                finished_at=utcnow(),
            )
        )
