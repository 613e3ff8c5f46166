"""Korean morphemes with Kiwi (kiwipiepy): each text becomes its `form/TAG` tokens joined by spaces.

Kiwi is the slow step of any model that uses morphemes (about 2–3 thousand reviews/s on one core),
so the work is shaped around it:

- one Kiwi per process, made on first use (loading its model takes about a second): single-review
  predictions in a serving process pay that once, not per call;
- large batches (training sets) are split into chunks tokenised in a pool of worker processes,
  each with its own Kiwi made once, so every core analyses at once (the workers start as
  multiprocessing's forkserver does: a script that trains needs the `if __name__ == "__main__":` guard);
- a bounded in-process cache keyed by the text: training scores the validation and evaluation
  texts more than once (fitting, then metrics, then the gate), and scoring jobs see repeated texts.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

PARALLEL_MIN_TEXTS = 20_000  # below this a pool's start-up (a Kiwi per worker) costs more than it saves
CHUNK_TEXTS = 10_000
CACHE_LIMIT = 200_000  # texts; about 60 MB of short reviews and their tokens

# Kiwi's options: part of a trained model (`analyser()` goes into its metadata), since other options
# give other morphemes. Without the typo and multi-word dictionaries Kiwi analysed reviews about 1.5× as
# fast, and the stack's held-out accuracy moved by 6 of 20,178 reviews (bench/stack_cpu.py).
KIWI_OPTIONS: dict[str, object] = {"load_typo_dict": False, "load_multi_dict": False}

_kiwi = None
_kiwi_lock = threading.Lock()
_cache: dict[str, str] = {}


def _analyser():
    """This process's Kiwi, made once (the lock keeps two serving threads from making two)."""
    global _kiwi
    if _kiwi is None:
        with _kiwi_lock:
            if _kiwi is None:
                from kiwipiepy import Kiwi

                _kiwi = Kiwi(num_workers=1, **KIWI_OPTIONS)
    return _kiwi


def analyser() -> dict:
    """What makes the morphemes: the analyser, its version and options (a model records it)."""
    from importlib.metadata import version

    return {"kiwipiepy": version("kiwipiepy"), "kiwipiepy-model": version("kiwipiepy-model"), **KIWI_OPTIONS}


def _tokenise_chunk(texts: list[str]) -> list[str]:
    # Kiwi analyses an iterable of texts faster than one call per text (about 1.5×).
    return [" ".join(f"{t.form}/{t.tag}" for t in tokens) for tokens in _analyser().tokenize(texts)]


def tokenise(texts: list[str], n_jobs: int = 1) -> list[str]:
    """Each text's morphemes as one string of `form/TAG` tokens. `n_jobs` > 1 splits a large batch over
    that many worker processes. A batch that fits the cache is looked up in it and added to it (emptied
    first when full); a larger one, a training set analysed once, passes it by."""
    cache = len(texts) <= CACHE_LIMIT
    out: list[str | None] = [_cache.get(t) for t in texts] if cache else [None] * len(texts)
    missing = [i for i, tokens in enumerate(out) if tokens is None]
    if not missing:
        return out  # type: ignore[return-value]
    todo = [texts[i] for i in missing]
    parallel = n_jobs > 1 and len(todo) >= PARALLEL_MIN_TEXTS
    done = _in_workers(todo, n_jobs) if parallel else _tokenise_chunk(todo)
    for i, tokens in zip(missing, done, strict=True):
        out[i] = tokens
    if cache:
        if len(_cache) + len(todo) > CACHE_LIMIT:
            _cache.clear()
        _cache.update(zip(todo, done, strict=True))
    return out  # type: ignore[return-value]


def _in_workers(texts: list[str], n_jobs: int) -> list[str]:
    """A pool of its own for one large batch, each worker with its Kiwi made once at start. Not joblib's
    shared pool: it takes a worker holding Kiwi's model (hundreds of MB) for a leak and restarts it, which
    loads the model again. forkserver, not fork: a process with threads (MLflow, serving) may fork locked."""
    step = min(CHUNK_TEXTS, -(-len(texts) // n_jobs))
    chunks = [texts[i : i + step] for i in range(0, len(texts), step)]
    with ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("forkserver"),
                             initializer=_start_worker, initargs=(KIWI_OPTIONS,)) as pool:
        return [tokens for part in pool.map(_tokenise_chunk, chunks) for tokens in part]


def _start_worker(options: dict) -> None:
    global KIWI_OPTIONS
    KIWI_OPTIONS = dict(options)  # the parent's, which a fresh import would not see if it was changed
    _analyser()


def clear_cache() -> None:
    _cache.clear()
