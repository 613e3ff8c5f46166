"""The API's micro-batcher: concurrent requests share model calls, a busy model's queue becomes the next
batch at once, and results and errors reach the right requests."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from reviewops.serving.models import LoadedModel
from reviewops.serving.runtime import MicroBatcher


class Recorder:
    """A model whose score is a function of the text, taking `seconds` per call, recording each call."""

    def __init__(self, seconds: float = 0.0, fail_on: str | None = None) -> None:
        self.seconds, self.fail_on = seconds, fail_on
        self.calls: list[list[str]] = []
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            self.calls.append(list(texts))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            time.sleep(self.seconds)
            if self.fail_on in texts:
                raise RuntimeError("model exploded")
            return np.array([len(t) / 100 for t in texts])
        finally:
            with self._lock:
                self.running -= 1


def _batcher(model: Recorder, max_size: int = 64, max_wait: float = 0.0):
    sizes: list[int] = []
    manager = SimpleNamespace(current=LoadedModel("m", "1", "onnx-int8", model))
    return MicroBatcher(manager, max_size, max_wait, on_batch=sizes.append), sizes


def test_requests_arriving_during_a_call_form_the_next_batch():
    model = Recorder(seconds=0.2)

    async def scenario():
        batcher, sizes = _batcher(model)
        first = asyncio.create_task(batcher.predict(["a"]))
        await asyncio.sleep(0.05)  # the model is busy with "a" now
        rest = [asyncio.create_task(batcher.predict(["b" * i])) for i in range(1, 11)]
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        return results, sizes

    results, sizes = asyncio.run(scenario())
    assert model.calls[0] == ["a"]
    assert sorted(model.calls[1]) == sorted("b" * i for i in range(1, 11))  # all ten in one call
    assert sizes == [1, 10]
    assert model.most_running == 1  # one model call at a time
    for i, (scores, loaded) in enumerate(results[1:], 1):  # each request gets its own text's score
        assert scores.tolist() == [pytest.approx(i / 100)]
        assert loaded.version == "1"


def test_an_idle_model_waits_up_to_max_wait_for_company():
    async def scenario(max_wait: float):
        model = Recorder()
        batcher, _ = _batcher(model, max_wait=max_wait)
        first = asyncio.create_task(batcher.predict(["x"]))
        await asyncio.sleep(0.03)
        second = asyncio.create_task(batcher.predict(["yy"]))
        await asyncio.gather(first, second)
        await batcher.close()
        return model.calls

    assert asyncio.run(scenario(0.5)) == [["x", "yy"]]
    assert asyncio.run(scenario(0.0)) == [["x"], ["yy"]]


def test_batches_respect_max_size_and_keep_every_text():
    model = Recorder(seconds=0.05)

    async def scenario():
        batcher, sizes = _batcher(model, max_size=4)
        tasks = [asyncio.create_task(batcher.predict([f"t{i}"])) for i in range(11)]
        out = await asyncio.gather(*tasks)
        await batcher.close()
        return out, sizes

    out, sizes = asyncio.run(scenario())
    assert max(sizes) <= 4 and sum(sizes) == 11
    assert sorted(t for call in model.calls for t in call) == sorted(f"t{i}" for i in range(11))
    assert [float(s[0]) for s, _ in out] == [pytest.approx(len(f"t{i}") / 100) for i in range(11)]


def test_a_failing_call_fails_its_requests_only_and_the_batcher_goes_on():
    model = Recorder(seconds=0.1, fail_on="bad")

    async def scenario():
        batcher, _ = _batcher(model)
        first = asyncio.create_task(batcher.predict(["bad"]))
        await asyncio.sleep(0.02)
        later = asyncio.create_task(batcher.predict(["good"]))
        res = await asyncio.gather(first, later, return_exceptions=True)
        again = await batcher.predict(["fine"])
        await batcher.close()
        return res, again

    (failed, ok), again = asyncio.run(scenario())
    assert isinstance(failed, RuntimeError) and "exploded" in str(failed)
    assert ok[0].tolist() == [pytest.approx(0.04)]
    assert again[0].tolist() == [pytest.approx(0.04)]


def test_no_model_loaded_is_an_error_for_the_waiting_request():
    async def scenario():
        batcher = MicroBatcher(SimpleNamespace(current=None), 8, 0.0)
        try:
            with pytest.raises(LookupError):
                await batcher.predict(["x"])
        finally:
            await batcher.close()

    asyncio.run(scenario())
