"""What runs beside the request path: micro-batching for transformer models, and the prediction log
written by a background thread (a request never waits for the database)."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time

import numpy as np

from reviewops.serving.models import LoadedModel, ModelManager

log = logging.getLogger(__name__)


class MicroBatcher:
    """Collects the texts of concurrent requests into one model call, so a transformer runs full batches
    instead of one text at a time.

    One model call runs at a time, in a worker thread. While it runs, the texts that arrive queue up and
    become the next batch, which starts the moment the model is free: under load the batch size follows
    the traffic and the event loop parses and answers requests while the model computes. Only when the
    model is idle does the batcher wait, up to `max_wait` seconds, for more texts (up to `max_size`)."""

    def __init__(self, manager: ModelManager, max_size: int, max_wait: float, on_batch=None) -> None:
        self.manager, self.max_size, self.max_wait = manager, max_size, max_wait
        self.on_batch = on_batch
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._calls: set[asyncio.Task] = set()

    async def predict(self, texts: list[str]) -> tuple[np.ndarray, LoadedModel]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((texts, future))
        return await future

    def _drain(self, items: list, size: int) -> int:
        while size < self.max_size and not self._queue.empty():
            items.append(self._queue.get_nowait())
            size += len(items[-1][0])
        return size

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        free = asyncio.Semaphore(1)  # one model call at a time: it already uses every core
        while True:
            items = [await self._queue.get()]
            idle = not free.locked()
            await free.acquire()  # while the model is busy, arriving texts queue up for this batch
            size = self._drain(items, len(items[0][0]))
            if idle:  # nothing was computing: wait a little for company
                deadline = loop.time() + self.max_wait
                while size < self.max_size:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        items.append(await asyncio.wait_for(self._queue.get(), remaining))
                    except TimeoutError:
                        break
                    size = self._drain(items, size + len(items[-1][0]))
            call = asyncio.create_task(self._call(loop, items, free))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _call(self, loop, items: list, free: asyncio.Semaphore) -> None:
        try:
            model = self.manager.current
            texts = [t for ts, _ in items for t in ts]
            try:
                if model is None:
                    raise LookupError("no model loaded")
                scores = await loop.run_in_executor(None, model.predict_proba, texts)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
                return
        finally:
            free.release()
        if self.on_batch:
            self.on_batch(len(texts))
        start = 0
        for ts, fut in items:
            if not fut.done():
                fut.set_result((scores[start:start + len(ts)], model))
            start += len(ts)

    async def close(self) -> None:
        for task in (self._task, *self._calls):
            if task is not None:
                task.cancel()


class PredictionLog:
    """Prediction rows queued by requests and inserted by one background thread in batches (rows of another
    table with `table`: the answered requests of `metrics.Metrics`)."""

    def __init__(self, session_factory, flush_every: float = 0.5, max_rows: int = 2000, table=None) -> None:
        self.sessions, self.table = session_factory, table
        self.flush_every, self.max_rows = flush_every, max_rows
        # one item per request (its list of rows): a put per row cost more than the insert itself
        self._queue: queue.Queue = queue.Queue()
        self.max_pending = 100_000  # rows; beyond that the database is far behind and rows are dropped
        self._written = threading.Condition()
        self._pending = 0
        self.dropped = 0
        self.last_error: str | None = None  # why the last write failed; None once a write succeeds
        self._stop = threading.Event()
        self._flush_now = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def add(self, rows: list[dict]) -> None:
        with self._written:
            if self._pending + len(rows) > self.max_pending:  # serving matters more than the log
                self.dropped += len(rows)
                return
            self._pending += len(rows)
        self._queue.put_nowait(rows)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written."""
        deadline = time.monotonic() + timeout
        self._flush_now.set()
        try:
            with self._written:
                while self._pending > 0:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._written.wait(left)
        finally:
            self._flush_now.clear()
        return True

    def _run(self) -> None:
        while not self._stop.is_set() or not self._queue.empty():
            batch = []
            try:  # the first rows, then whatever else arrives within flush_every: one insert, not one per request
                batch.extend(self._queue.get(timeout=self.flush_every))
                deadline = time.monotonic() + self.flush_every
                while len(batch) < self.max_rows:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._flush_now.is_set():
                        break
                    batch.extend(self._queue.get(timeout=min(left, 0.05)))
            except queue.Empty:
                pass
            if not batch:
                continue
            self._write(batch)
            with self._written:
                self._pending -= len(batch)
                self._written.notify_all()

    def _write(self, batch: list[dict]) -> None:
        """One insert for the batch; a row the database refuses is left out alone, and a database that
        fails is tried three times before the batch is counted as dropped."""
        from sqlalchemy.exc import DataError, IntegrityError

        for attempt in range(3):
            try:
                self._insert(batch)
                self.last_error = None
                return
            except (DataError, IntegrityError):
                self._insert_each(batch)
                return
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not kill the writer
                self.last_error = _first_line(exc)
                log.warning("prediction log: %d rows not written yet (%s)", len(batch), self.last_error)
                time.sleep(0.5 * (attempt + 1))
        self.dropped += len(batch)

    def _insert(self, rows: list[dict]) -> None:
        from sqlalchemy import insert

        from reviewops.store.models import Prediction

        # a Core insert of the table: the ORM's bulk insert took about a fifth longer (bench/README.md, Serving)
        with self.sessions() as s:
            s.execute(insert((self.table or Prediction).__table__), rows)

    def _insert_each(self, rows: list[dict]) -> None:
        """Rare path: the rows one transaction each, so that only the refused ones are lost."""
        for row in rows:
            try:
                self._insert([row])
            except Exception as exc:  # noqa: BLE001 - the writer thread must live on
                self.dropped += 1
                log.warning("prediction log: prediction %s refused by the database, left out (%s)",
                            row.get("public_id"), _first_line(exc))

    def close(self) -> None:
        self.flush()
        self._stop.set()
        self._thread.join(timeout=5)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__

