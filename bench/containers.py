"""Containers: cold build time, image sizes, time from `up` to all healthy, each container's memory idle
and during a cycle, and one cycle's time, on a real Docker Engine (the same stack as
tests/test_containers.py: the real compose file, third-party images stood in for from Debian's packages).

Usage: python bench/containers.py [--warm]   (`make bench-containers`; root, a Docker Engine)
  --warm   keep the build cache (measures a rebuild instead of a cold build)
Writes bench/results/containers.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tests.containers.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
# tests/ is imported from the repository root, which a script's own folder (bench/) is not
sys.path.insert(0, str(ROOT))
UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def _bytes(text: str) -> float:
    m = re.match(r"([\d.]+)\s*([A-Za-z]+)", text.strip())
    return float(m.group(1)) * UNITS[m.group(2)] if m else 0.0


def memory(stack: Stack) -> dict[str, float]:
    """MiB of memory each running container of the stack uses now (`docker stats`)."""
    from tests.containers.stack import run

    out = run(["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}"]).stdout
    prefix = f"{stack.name}-"
    return {name.removeprefix(prefix).rsplit("-", 1)[0]: round(_bytes(usage.split("/")[0]) / 2**20, 1)
            for name, usage in (line.split("\t") for line in out.splitlines()) if name.startswith(prefix)}


def main() -> None:
    from tests.containers.stack import Airflow, Engine, Stack, run, standins, wait

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", action="store_true", help="keep the build cache")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reviewops-containers-bench-"))
    results: dict = {"machine": "the project's 2-core machine; Docker Engine 20.10, Compose v2.40"}
    with Engine(work):
        standins()
        stack = Stack(work, name="reviewops-bench")
        stack.down(volumes=True)
        if not args.warm:
            images = run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "reviewops/*"]).stdout.split()
            if images:
                run(["docker", "rmi", "-f", *images])
            run(["docker", "builder", "prune", "-af"])
        start = time.monotonic()
        stack.compose("build", timeout=3600)
        results["build_seconds"] = round(time.monotonic() - start, 1)
        results["build"] = "warm" if args.warm else "cold (no build cache, no project image)"
        sizes = run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}\t{{.Size}}", "reviewops/*"]).stdout
        results["image_sizes_mb"] = {name: round(_bytes(size) / 1e6) for name, size in
                                     (line.split("\t") for line in sizes.splitlines())}
        try:
            results["up_to_healthy_seconds"] = round(stack.up(), 1)
            time.sleep(30)  # settled
            results["memory_idle_mib"] = memory(stack)

            airflow, peak, stop = Airflow(stack), {}, threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    for name, mib in memory(stack).items():
                        peak[name] = max(peak.get(name, 0.0), mib)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            trains = len(airflow.runs("sentiment_train"))
            start = time.monotonic()
            collect = airflow.trigger("reviews_collect")
            wait("reviews_collect", lambda: airflow.run_state("reviews_collect", collect) in ("success", "failed"), 900)
            collected = time.monotonic() - start
            train = wait("sentiment_train", lambda: airflow.finished("sentiment_train", trains), 1200)
            versions = httpx.get(f"{stack.url}/api/v1/models", timeout=30).json()["versions"]
            results["cycle_seconds"] = {"collect": round(collected, 1),
                                        "collect_and_train": round(time.monotonic() - start, 1),
                                        "states": [airflow.run_state("reviews_collect", collect), train["state"]],
                                        "model_versions_after": len(versions)}
            stop.set()
            sampler.join()
            results["memory_cycle_peak_mib"] = peak
        finally:
            stack.down(volumes=True)
    out = ROOT / "bench" / "results" / "containers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
