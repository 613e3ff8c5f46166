"""A candidate's serving cost on CPU: batch throughput and single-review latency, measured at gate time.

Pure: it takes a `predict_proba(texts) -> scores` callable (the model as loaded for serving) and texts,
and spends a bounded time on them, so gating a slow model stays bounded too.

- Batch throughput (reviews/s) is the best of repeated batches. Interference from other processes on a
  shared machine only ever slows a batch down, so the fastest batch is the closest to what the model
  costs by itself; a median would charge the candidate for its neighbours.
- Single-review latency is p50 and p99 over one-text calls, as the API's single-review path makes them.
  Within one measurement a tail is what it is; across measurements (`ServingCost.best`, used by the gate
  to confirm a breach) the lower tail wins, for the same reason as the fastest batch.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

# the version tags (and run metrics) the figures are recorded under
BATCH_RPS, SINGLE_P50_MS, SINGLE_P99_MS = "cost.batch_rps", "cost.single_p50_ms", "cost.single_p99_ms"
COST_TAGS = frozenset({BATCH_RPS, SINGLE_P50_MS, SINGLE_P99_MS, "cost.batch_size"})

WARMUP_TEXTS = 32  # one small call first: lazy initialisation is not serving cost, and it sizes the batches


@dataclass(frozen=True)
class ServingCost:
    batch_rps: float
    single_p50_ms: float
    single_p99_ms: float
    batch_size: int  # the batch measured (smaller than asked only for a model too slow for the time budget)
    batches: int
    single_calls: int

    def tags(self) -> dict[str, str]:
        return {BATCH_RPS: f"{self.batch_rps:.1f}", SINGLE_P50_MS: f"{self.single_p50_ms:.3f}",
                SINGLE_P99_MS: f"{self.single_p99_ms:.3f}", "cost.batch_size": str(self.batch_size)}

    def metrics(self) -> dict[str, float]:
        return {BATCH_RPS: self.batch_rps, SINGLE_P50_MS: self.single_p50_ms, SINGLE_P99_MS: self.single_p99_ms}

    def as_dict(self) -> dict:
        return asdict(self)

    def best(self, other: ServingCost) -> ServingCost:
        """The better of two measurements of the same model: the faster batches and the single-review
        figures of the measurement with the lower tail."""
        batch = self if self.batch_rps >= other.batch_rps else other
        single = self if self.single_p99_ms <= other.single_p99_ms else other
        return ServingCost(batch.batch_rps, single.single_p50_ms, single.single_p99_ms, batch.batch_size,
                           batch.batches, single.single_calls)

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> ServingCost | None:
        """The cost recorded on a version, None for a version gated before costs were measured."""
        try:
            return cls(float(tags[BATCH_RPS]), float(tags[SINGLE_P50_MS]), float(tags[SINGLE_P99_MS]),
                       int(tags.get("cost.batch_size", "0")), 0, 0)
        except (KeyError, ValueError):
            return None


def measure(
    predict_proba: Callable[[list[str]], object],
    texts: Sequence[str],
    seconds: float = 4.0,
    batch_size: int = 500,
    max_batches: int = 20,
    single_calls: int = 200,
) -> ServingCost:
    """Measure `predict_proba` on `texts` in about `seconds` (half on batches, half on single reviews),
    stopping early once `max_batches` batches and `single_calls` calls are done."""
    texts = [t for t in texts if t] or ["재밌어요"]
    half = seconds / 2
    batch_size = _fitting_batch(predict_proba, texts, min(batch_size, len(texts)), half)
    batches = _batches(texts, batch_size)
    rates, deadline = [], time.perf_counter() + half
    while not rates or (len(rates) < max_batches and time.perf_counter() < deadline):
        batch = next(batches)
        t0 = time.perf_counter()
        predict_proba(batch)
        rates.append(len(batch) / max(time.perf_counter() - t0, 1e-9))
    latencies, deadline = [], time.perf_counter() + half
    for text in itertools.islice(itertools.cycle(texts), single_calls):
        t0 = time.perf_counter()
        predict_proba([text])
        latencies.append((time.perf_counter() - t0) * 1000)
        if time.perf_counter() >= deadline:
            break
    p50, p99 = np.percentile(latencies, [50, 99])
    return ServingCost(max(rates), float(p50), float(p99), batch_size, len(rates), len(latencies))


def _fitting_batch(predict_proba, texts: list[str], batch_size: int, seconds: float) -> int:
    """`batch_size`, or for a model so slow that one such batch would not fit a third of `seconds`, the
    batch that does (at least one text): the warm-up call's rate says which."""
    warmup = texts[:WARMUP_TEXTS]
    t0 = time.perf_counter()
    predict_proba(warmup)
    rate = len(warmup) / max(time.perf_counter() - t0, 1e-9)
    return max(1, min(batch_size, int(rate * seconds / 3)))


def _batches(texts: list[str], size: int):
    """Consecutive batches of `size` texts, wrapping around the texts as often as needed."""
    stream = itertools.cycle(texts)
    while True:
        yield list(itertools.islice(stream, size))
