"""The benchmarks behind bench/README.md's headline figures run from a fresh home on a small corpus and
record sane figures (their speeds are measured by running them, not here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> None:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_the_foundation_bench_runs_the_main_job_from_an_empty_home(small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "foundation.json"
    _run([str(ROOT / "bench" / "run.py"), "--corpus", str(small_corpus), "--predict-rows", "2000", "--out", str(out)],
         tmp_path)
    res = json.loads(out.read_text())
    assert res["ingest"]["reviews"] == 6000
    assert 0.7 < res["model"]["eval_accuracy"] <= 1.0 and res["model"]["eval_n"] > 0
    assert res["model"]["fit_seconds"] > 0 and res["predict"]["reviews_per_second"] > 0


def test_the_hashing_bench_compares_both_hashers_on_the_same_matrix(tmp_path: Path) -> None:
    out = tmp_path / "hashing.json"
    _run([str(ROOT / "bench" / "hashing.py"), "--rounds", "1", "--repeats", "2", "--out", str(out)], tmp_path)
    res = json.loads(out.read_text())
    assert {"hash word block", "hash nospace block"} <= set(res)
    for step in res.values():
        assert step["numpy_ms"] > 0 and step["sklearn_ms"] > 0
        assert step["ratio"] == step["sklearn_ms"] / step["numpy_ms"]
