"""The model the API serves: the registry's champion, loaded once, cached on disk, swapped atomically.

`ModelManager.refresh()` asks MLflow which version holds the `champion` alias. When it moved, the new
version is downloaded into the local cache and loaded beside the old one; only then is the reference
swapped (one assignment), so requests in flight finish on the model they started with and none
fails. When MLflow is down the last good model keeps serving, and a restarted API loads the last
good model from its cache. A worker with no model yet (it started before the first champion, or
while MLflow was down) asks the registry when a request needs a model (`check_now`) instead of only at
its next poll: with several workers, each polling on its own clock, one would otherwise answer 503 for
up to `REVIEWOPS_MODEL_POLL_SECONDS` while the others serve. Which backend serves a model folder (and
how it loads) is decided in `reviewops.models.loading`; this module only caches, polls and swaps.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reviewops.config import Settings
from reviewops.models.loading import find_model_folder, load_for_serving

log = logging.getLogger(__name__)
POINTER = "current.json"
CHECK_NOW_INTERVAL_SECONDS = 1.0  # requests with no model to answer ask the registry at most this often


@dataclass
class LoadedModel:
    name: str
    version: str
    backend: str  # baseline | transformer | onnx-int8
    model: object  # anything with predict_proba(texts) -> P(positive)
    info: dict = field(default_factory=dict)  # metrics, trainer, snapshot, aliases
    loaded_at: float = field(default_factory=time.time)

    @property
    def batched(self) -> bool:
        """Transformers gain from micro-batching concurrent requests; the CPU model does not need it."""
        return self.backend != "baseline"

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.predict_proba(texts), dtype=float)

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "backend": self.backend,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)), **self.info}


class ModelManager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self.last_check: float | None = None
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._registry_client = None
        self.cache = settings.model_cache / settings.model.name

    # --- loading ------------------------------------------------------------------------------------
    def _registry(self):
        """The one registry of this manager, made on first success and checked before each use."""
        from reviewops.registry.mlflow_registry import Registry

        if self._registry_client is None:
            self._registry_client = Registry(self.settings)
        self._registry_client.check()
        return self._registry_client

    def refresh(self) -> bool:
        """Load the champion if the alias moved; True when the served model changed. Never raises:
        a registry or artifact problem is logged and the current model keeps serving."""
        with self._refresh_lock:
            self.last_check = time.time()
            try:
                from reviewops.registry.mlflow_registry import CHAMPION

                registry = self._registry()
                champion = registry.by_alias(CHAMPION)
                if champion is None:
                    self.last_error = "the registry has no champion yet"
                    return False
                if self.current is not None and self.current.version == champion.version:
                    self.last_error = None
                    return False
                loaded = self._load_version(registry, champion)
            except Exception as exc:  # noqa: BLE001 - the API must outlive a broken registry or artifact
                from reviewops.config import redact_text

                message = redact_text(f"{type(exc).__name__}: {exc}", self.settings)
                self.last_error = message.splitlines()[0][:500]
                log.warning("champion not (re)loaded, still serving %s: %s",
                            f"v{self.current.version}" if self.current else "nothing", self.last_error)
                if self.current is None:
                    self._load_cached()
                return False
            self._swap(loaded)
            self.last_error = None
            return True

    def check_now(self) -> LoadedModel | None:
        """The served model; with none yet, the registry is asked now (at most once a second; a request
        arriving during a check waits for it), so a request does not wait for the next poll."""
        if self.current is None and (self._refresh_lock.locked() or self.last_check is None
                                     or time.time() - self.last_check >= CHECK_NOW_INTERVAL_SECONDS):
            self.refresh()
        return self.current

    def _load_version(self, registry, champion) -> LoadedModel:
        """Load `champion` from the cache, downloading it first when missing. A cached copy that does not
        load (fails its checksum, lost a file) is discarded and downloaded again: the registry's copy is
        the truth, and a damaged cache must not keep the API down. The caller keeps serving meanwhile."""
        target = self.cache / champion.version
        if (target / "MLmodel").is_file():
            try:
                return self._load_from(target, registry, champion)
            except Exception as exc:  # noqa: BLE001 - any damage to the cache is repaired the same way
                log.warning("cached v%s does not load (%s): downloading it again", champion.version,
                            str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
                self._discard(target)
        self._download(registry, champion, target)
        try:
            return self._load_from(target, registry, champion)
        except BaseException:
            self._discard(target)  # the registry's copy itself is broken: nothing bad stays cached
            raise

    def _download(self, registry, champion, target: Path) -> None:
        """Download into a temporary folder renamed into place: a crash never leaves a partial cache."""
        tmp = self.cache / f".{champion.version}.{time.time_ns()}"
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            registry.download(champion.uri, str(tmp))
            self._discard(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _discard(self, folder: Path) -> None:
        pointer = self.cache / POINTER
        try:  # the fallback for a down registry must not point at a folder that is gone
            if pointer.is_file() and Path(json.loads(pointer.read_text())["folder"]).is_relative_to(folder):
                pointer.unlink()
        except (OSError, ValueError, KeyError, TypeError):
            pointer.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)

    def _load_from(self, target: Path, registry, champion) -> LoadedModel:
        folder = find_model_folder(target)
        backend, model = load_for_serving(folder, self.settings.serve.prefer_onnx)
        info = {"aliases": champion.aliases, "trainer": champion.tags.get("trainer", ""),
                "snapshot_id": champion.tags.get("snapshot_id", ""),
                "metrics": registry.run_metrics(champion.run_id)}
        (self.cache / POINTER).write_text(json.dumps({"version": champion.version, "folder": str(folder),
                                                      "info": info}))
        return LoadedModel(self.settings.model.name, champion.version, backend, model, info)

    def _load_cached(self) -> None:
        pointer = self.cache / POINTER
        if not pointer.is_file():
            return
        try:
            data = json.loads(pointer.read_text())
            backend, model = load_for_serving(Path(data["folder"]), self.settings.serve.prefer_onnx)
        except Exception as exc:  # noqa: BLE001
            log.warning("the cached model cannot be loaded either: %s", exc)
            return
        self._swap(LoadedModel(self.settings.model.name, data["version"], backend, model,
                               data.get("info", {}) | {"from_cache": True}))
        log.warning("MLflow unreachable: serving the cached v%s", data["version"])

    def _swap(self, loaded: LoadedModel) -> None:
        import gc

        old = self.current
        self.current = loaded  # one reference assignment: requests in flight keep the old object
        # the model's hundreds of thousands of long-lived objects would make every full garbage
        # collection pause the server for 0.2-0.4 s: collect once now and exempt them from later ones
        log.info("serving %s v%s (%s)%s", loaded.name, loaded.version, loaded.backend,
                 f", was v{old.version}" if old else "")
        old = None
        gc.collect()
        gc.freeze()

    # --- polling ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="model-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.model.poll_seconds):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
