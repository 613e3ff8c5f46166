"""Serving benchmarks: the real API, served by uvicorn in its own process, under load generated here
(aiohttp, asyncio, keep-alive connections), side by side in one run on this machine.

1. CPU model, `POST /v1/predict` with 1,000 real reviews per request from a few concurrent clients:
   reviews/s (target >= 5,000).
2. CPU model, one review per request at a fixed open-loop rate (default 200 requests/s for 15 s): sends
   are scheduled at fixed intervals whatever the responses do, and each latency is taken from the
   request's scheduled send time (no coordinated omission): achieved rate, p50/p95/p99 (target p99 <= 20 ms).
3. Transformer: a BERT-shaped classifier (4 layers x 256, WordPiece vocabulary trained on the corpus)
   fine-tuned briefly with `TransformerTrainer` through `train_and_register` (registered as champion
   with its ONNX export), then single-review requests from 16 and from 64 concurrent clients against
   (a) a naive FastAPI service calling a `transformers.pipeline("text-classification")` per request,
   (b) our API (micro-batching + ONNX int8), (c) our API with REVIEWOPS_SERVE_PREFER_ONNX=false
   (PyTorch + micro-batching): requests/s of each and (b)/(a) (target >= 10x). A service's throughput
   is its rate at the load that saturates it, so each is measured at every level and its best level
   counts; the ratio at each level (same clients for both) is reported too.

   The three services are up at once and measured in turns, `--rounds` times; the best round of each
   service at each level is kept (all are in the JSON).
4. (before 3 in the run) CPU model against MLflow's own scoring server (`mlflow models serve -m
   models:/review-sentiment@champion --env-manager local`), both with `--mlflow-workers` processes (MLflow's
   default, one per core), up at once, in alternating rounds: reviews/s on batches of `--mlflow-batch-texts`
   reviews, server CPU per 1,000 reviews, single-review p50/p99, and ours / MLflow (target >= 1.5x).

Every server runs with the same thread settings (OMP_NUM_THREADS = torch threads = onnxruntime intra-op
threads = the machine's core count) on the same cores as the load generator, whose CPU time per request
is reported beside the server's. Everything lives in a temporary REVIEWOPS_HOME, removed at the end
(--keep to keep it).

Usage: python bench/serve.py [--corpus PATH] [--batch-clients 4] [--rate 200] [--seconds 15]
                             [--concurrency 16,64] [--requests 2000] [--rounds 2] [--max-steps 50] [--keep]
                             [--no-mlflow] [--mlflow-rounds 4] [--mlflow-seconds 8] [--no-transformer]
Writes bench/results/serve.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Self

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "reviews.sample.jsonl.gz"
BERT_NAME = "review-sentiment-bert"
# settings that would point the benchmark at real stores instead of its temporary home
STORE_VARS = ("REVIEWOPS_DATABASE_URL", "REVIEWOPS_ARTIFACT_URI", "REVIEWOPS_MLFLOW_TRACKING_URI",
              "REVIEWOPS_MLFLOW_ARTIFACT_ROOT", "REVIEWOPS_S3_ENDPOINT_URL", "REVIEWOPS_MODEL_NAME",
              "MLFLOW_TRACKING_URI")


# --- the naive service (runs in its own process: python bench/serve.py --naive-hf-dir DIR --port P) ---------


class NaiveIn(BaseModel):  # at module level: FastAPI resolves the endpoint's (string) annotations here
    texts: list[str]


def naive_server(hf_dir: str, port: int, threads: int) -> None:
    """The usual first implementation: a pipeline built once at start-up, called once per request from a
    plain (threadpool) endpoint; no batching across requests, PyTorch fp32."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from transformers import pipeline

    torch.set_num_threads(threads)
    clf = pipeline("text-classification", model=hf_dir, tokenizer=hf_dir, device=-1)
    app = FastAPI()

    @app.post("/v1/predict")
    def predict(body: NaiveIn) -> dict:
        out = clf(body.texts, truncation=True)
        return {"predictions": [{"label": o["label"], "score": float(o["score"])} for o in out]}

    @app.get("/readyz")
    def readyz() -> dict:
        return {"status": "ready"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- servers --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on a free port, ready (GET `health` is 200) when the `with` block starts."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path, logs: Path,
                 port: int, timeout: float = 240.0, health: str = "/readyz") -> None:
        self.name, self.cmd, self.env, self.cwd, self.port, self.timeout = name, cmd, env, cwd, port, timeout
        self.health = health
        self.log_path = logs / f"{name}.log"
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.start_seconds = 0.0

    def __enter__(self) -> Self:
        import httpx

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.proc.returncode} before it was ready:\n"
                                 + self.log_tail())
            try:
                if httpx.get(self.url + self.health, timeout=2).status_code == 200:
                    self.start_seconds = time.perf_counter() - t
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise SystemExit(f"{self.name} not ready after {self.timeout:.0f} s:\n" + self.log_tail())

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.is_file() else ""

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process and its worker processes have used so far."""
        return sum(self.process_cpu_seconds().values())

    def process_cpu_seconds(self) -> dict[int, float]:
        """User + system CPU time so far of the server process and of each worker process, by pid."""
        import psutil

        procs = [psutil.Process(self.proc.pid)]
        procs += procs[0].children(recursive=True)
        used = {}
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                t = proc.cpu_times()
                used[proc.pid] = t.user + t.system
        return used

    def wait_idle(self, limit: float = 120.0, below: float = 0.1) -> float:
        """Seconds until the server uses less than `below` of a core over half a second (background work
        of the last test done, e.g. the prediction log written), at most `limit`."""
        t = time.perf_counter()
        while time.perf_counter() - t < limit:
            c0 = self.cpu_seconds()
            time.sleep(0.5)
            if self.cpu_seconds() - c0 < below * 0.5:
                break
        return time.perf_counter() - t

    def get(self, path: str) -> dict:
        import httpx

        return httpx.get(self.url + path, timeout=30).json()

    def mean_batch(self) -> dict:
        """Texts per model call so far, from /metrics (the micro-batcher's histogram)."""
        import httpx

        text = httpx.get(self.url + "/metrics", timeout=30).text
        vals = {}
        for line in text.splitlines():
            for key in ("reviewops_api_batch_size_sum", "reviewops_api_batch_size_count"):
                if line.startswith(key + " "):
                    vals[key] = float(line.split()[1])
        n = vals.get("reviewops_api_batch_size_count", 0.0)
        return {"calls": n, "texts": vals.get("reviewops_api_batch_size_sum", 0.0)}


# --- load generation ------------------------------------------------------------------------------------


def _client(connections: int):
    """An aiohttp session with up to `connections` keep-alive connections. aiohttp costs the sender about
    0.1 ms of CPU per request here, httpx about 0.5 ms: the sender shares the cores with the server, so a
    cheaper one measures the server instead of the load generator."""
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections, force_close=False),
                                 timeout=aiohttp.ClientTimeout(total=60), headers={"content-type": "application/json"})


async def _post(client, url: str, data: bytes) -> tuple[int, bytes]:
    async with client.post(url, data=data) as r:
        return r.status, await r.read()


def body(texts: list[str]) -> bytes:
    return json.dumps({"texts": texts}, ensure_ascii=False).encode()


def percentiles(seconds: list[float]) -> dict[str, float | None]:
    import numpy as np

    if not seconds:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    arr = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max())}


async def closed_loop(url: str, bodies: list[bytes], texts_per_body: int, clients: int, *,
                      seconds: float | None = None, requests: int | None = None, warmup: int = 0) -> dict:
    """`clients` workers, each with its own keep-alive connection, sending its next request as soon as the
    last one is answered, for `seconds` or until `requests` requests were sent in all (after `warmup`
    requests per worker, not counted). One client session per worker: a shared pool costs the sender
    CPU in proportion to the requests queued on it, and the sender shares the cores with the server."""
    pool = [_client(1) for _ in range(clients)]
    latencies: list[float] = []
    sent = 0

    async def one(client, i: int) -> float:
        t = time.perf_counter()
        status, content = await _post(client, url, bodies[i % len(bodies)])
        if status != 200:
            raise RuntimeError(f"POST {url}: {status} {content[:300]!r}")
        return time.perf_counter() - t

    async def worker(w: int, stop_at: float | None) -> None:
        nonlocal sent
        while True:
            if requests is not None and sent >= requests:
                return
            if stop_at is not None and time.perf_counter() >= stop_at:
                return
            sent += 1
            latencies.append(await one(pool[w], sent + w))

    try:
        async def warm(w: int) -> None:
            for i in range(warmup):
                await one(pool[w], w + i)

        await asyncio.gather(*(warm(w) for w in range(clients)))
        start = time.perf_counter()
        cpu0 = time.process_time()
        await asyncio.gather(*(worker(w, start + seconds if seconds else None) for w in range(clients)))
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu0
    finally:
        for c in pool:
            await c.close()
    n = len(latencies)
    return {"requests": n, "texts": n * texts_per_body, "seconds": elapsed, "requests_per_second": n / elapsed,
            "texts_per_second": n * texts_per_body / elapsed, "latency": percentiles(latencies),
            "client_cpu_seconds": cpu}


async def open_loop(url: str, bodies: list[bytes], rate: float, seconds: float, warmup: int = 200,
                    pools: int = 8) -> dict:
    """Requests sent at fixed intervals (1/rate) whatever the responses do; each latency counts from the
    request's scheduled send time, so a stalled server shows in the tail instead of slowing the sender.
    Requests go round-robin over `pools` client sessions, so that no single connection pool's queue
    handling grows with a backlog and slows the sender too."""
    import numpy as np

    n = int(rate * seconds)
    clients = [_client(64) for _ in range(pools)]
    try:
        for i in range(warmup):  # connections opened, first-request costs paid
            await _post(clients[i % pools], url, bodies[i % len(bodies)])
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        lags: list[float] = []
        errors: list[str] = []
        done_at: list[float] = []

        async def one(i: int) -> float | None:
            scheduled = start + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(loop.time() - scheduled)
            try:
                status, content = await _post(clients[i % pools], url, bodies[i % len(bodies)])
                ok = status == 200
                if not ok:
                    errors.append(f"{status} {content[:200]!r}")
            except Exception as exc:  # noqa: BLE001 - counted, not fatal
                errors.append(f"{type(exc).__name__}: {exc}")
                ok = False
            now = loop.time()
            done_at.append(now)
            return now - scheduled if ok else None

        cpu0 = time.process_time()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        cpu = time.process_time() - cpu0
    finally:
        for c in clients:
            await c.close()
    latencies = [x for x in results if x is not None]
    span = max(done_at) - start
    return {"target_rate": rate, "scheduled": n, "ok": len(latencies), "errors": len(errors),
            "error_examples": errors[:3], "seconds": span, "achieved_rate": len(latencies) / span,
            "latency_from_schedule": percentiles(latencies),
            "send_lag_ms": {"p99": float(np.percentile(np.asarray(lags) * 1000, 99)),
                            "max": float(max(lags) * 1000)},
            "client_cpu_seconds": cpu, "latencies": latencies}


def drive(coro) -> dict:
    """Run one load test from this process, its heap frozen first: the process holds the training data
    and several large libraries, and one full collection of that heap (~0.2-0.3 s here) stalls every
    request in flight, the load generator's pause, not the server's. The pauses that still happen are
    reported."""
    pauses: list[float] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses.append(time.perf_counter() - started.pop())

    gc.collect()
    gc.freeze()
    gc.callbacks.append(on_gc)
    try:
        result = asyncio.run(coro)
    finally:
        gc.callbacks.remove(on_gc)
        gc.unfreeze()
    result["client_gc"] = {"collections": len(pauses), "max_ms": max(pauses, default=0.0) * 1000,
                           "total_ms": sum(pauses) * 1000}
    return result


# --- the benchmark --------------------------------------------------------------------------------------


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def build_bert(folder: Path, corpus: Path) -> dict:
    """A BERT-shaped sequence classifier (the shape `reviewops.models.pretrain` builds by default: 4 x 256,
    4 heads, 1,024 wide feed-forward, 128 positions) with a WordPiece tokenizer trained on the corpus.
    Random weights: fine-tuning follows; serving speed does not depend on what the weights learnt."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from reviewops.models.pretrain import PretrainConfig, read_texts, train_tokenizer

    cfg = PretrainConfig()
    tok = train_tokenizer(read_texts(corpus), cfg.vocab_size, folder, max_length=cfg.max_length)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.layers,
                        num_attention_heads=cfg.heads, intermediate_size=cfg.intermediate,
                        max_position_embeddings=cfg.max_length, num_labels=2, pad_token_id=tok.pad_token_id)
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    return {"vocab_size": len(tok), "hidden_size": cfg.hidden_size, "layers": cfg.layers, "heads": cfg.heads,
            "intermediate": cfg.intermediate, "max_length": cfg.max_length,
            "parameters": sum(p.numel() for p in model.parameters())}


def scores_of(server: Server, texts: list[str], naive: bool = False) -> list[float]:
    """P(positive) for `texts` from one server (the naive one gives the top label and its score)."""
    import httpx

    out = []
    for s in range(0, len(texts), 100):
        r = httpx.post(server.url + "/v1/predict", json={"texts": texts[s:s + 100]}, timeout=60)
        r.raise_for_status()
        for p in r.json()["predictions"]:
            if naive:
                out.append(p["score"] if p["label"].endswith("1") else 1 - p["score"])
            else:
                out.append(p["score"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=SAMPLE)
    ap.add_argument("--batch-clients", type=int, default=4, help="concurrent clients of the batch test")
    ap.add_argument("--batch-texts", type=int, default=1000, help="reviews per request of the batch test")
    ap.add_argument("--batch-seconds", type=float, default=12.0)
    ap.add_argument("--rate", type=float, default=200.0, help="open-loop requests/s of the latency test")
    ap.add_argument("--seconds", type=float, default=15.0, help="duration of the latency test")
    ap.add_argument("--latency-rounds", type=int, default=2, help="windows of the latency test (each must pass)")
    ap.add_argument("--concurrency", type=lambda v: [int(x) for x in v.split(",")], default=[16, 64],
                    help="concurrent clients of the transformer test, comma-separated: each service is measured at "
                         "each, and its throughput is its best")
    ap.add_argument("--requests", type=int, default=2000, help="requests per service in the transformer test")
    ap.add_argument("--rounds", type=int, default=2, help="turns of the three transformer services (best is kept)")
    ap.add_argument("--max-steps", type=int, default=50, help="fine-tuning steps of the transformer")
    ap.add_argument("--mlflow", action=argparse.BooleanOptionalAction, default=True,
                    help="compare the CPU champion served by our API with `mlflow models serve`")
    ap.add_argument("--mlflow-rounds", type=int, default=4, help="alternating rounds of the MLflow comparison")
    ap.add_argument("--mlflow-batch-texts", type=int, default=500, help="reviews per batch of the MLflow comparison")
    ap.add_argument("--mlflow-seconds", type=float, default=8.0, help="batch duration per service and round")
    ap.add_argument("--mlflow-singles", type=int, default=500, help="single-review requests per service and round")
    ap.add_argument("--mlflow-workers", type=int, default=os.cpu_count() or 1,
                    help="worker processes of each service (MLflow's default: one per core)")
    ap.add_argument("--transformer", action=argparse.BooleanOptionalAction, default=True,
                    help="the transformer test (step 3)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary home (its path is printed)")
    ap.add_argument("--naive-hf-dir", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive_hf_dir:
        naive_server(args.naive_hf_dir, args.port, args.threads)
        return
    args.corpus = args.corpus.resolve()

    work = Path(tempfile.mkdtemp(prefix="reviewops-serve-bench-"))
    try:
        run(args, work)
    finally:
        os.chdir(ROOT)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    import onnxruntime
    import torch
    import transformers
    from rich.console import Console
    from rich.table import Table

    console = Console()
    threads = os.cpu_count() or 1
    env = isolate(work, threads)
    logs = work / "logs"
    reviewops_cmd = [str(Path(sys.executable).with_name("reviewops")), "serve"]

    from reviewops.config import Settings, reset_settings
    from reviewops.jobs.train import run_ingest, run_snapshot, train_and_register
    from reviewops.store import db

    reset_settings()
    settings = Settings()
    db.upgrade(settings.db_url)  # the temporary home's empty review store, as `reviewops init` does
    res: dict = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
                    "platform": platform.platform(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__,
                    "loadavg_at_start": loadavg()},
        "settings": {"threads": threads, "corpus": str(args.corpus),
                     "serve_batch_max_size": settings.serve.batch_max_size,
                     "serve_batch_max_wait_ms": settings.serve.batch_max_wait_ms,
                     "uvicorn_workers": 1, "client": "aiohttp in the benchmark process, keep-alive: one session per "
                               "closed-loop worker, 8 round-robin for the open loop; heap frozen during tests"},
    }

    # --- the CPU model -------------------------------------------------------------------------------
    console.print("[bold]CPU model[/bold]: ingest, snapshot, train and register ...")
    t = time.perf_counter()
    ingested = run_ingest(settings, args.corpus)
    snap, parts = run_snapshot(settings)
    cpu_result = train_and_register(settings, snap, parts)
    res["cpu_model"] = {"reviews": ingested.read, "train_rows": len(parts["train"]), "version": cpu_result.version,
                        "champion": cpu_result.decision.promote, "eval_accuracy": cpu_result.metrics["accuracy"],
                        "prepare_seconds": time.perf_counter() - t}
    big_bodies, singles, single_bodies = request_bodies(args, parts, res["settings"])

    port = free_port()
    with Server("api-cpu", reviewops_cmd + ["--port", str(port)], env, work, logs, port) as api:
        res["cpu_model"]["server_start_seconds"] = api.start_seconds
        res["cpu_model"]["backend"] = api.get("/v1/model")["backend"]
        res["batch_throughput"] = batch_throughput(console, args, api, big_bodies)
        res["latency"] = open_loop_latency(console, args, api, single_bodies)

    if args.mlflow:
        peers = peer_services(settings, env, reviewops_cmd, args.mlflow_workers)
        res["vs_mlflow"] = serve_vs_mlflow(console, args, peers, work, logs, singles, singles)

    # --- the transformer -----------------------------------------------------------------------------
    if args.transformer:
        hf_dir, res["transformer_model"] = prepare_transformer(console, args, work, threads, snap, parts)
        services = transformer_services(hf_dir, threads, env, reviewops_cmd)
        serving, scores = serve_transformer(console, args, services, work, logs, singles[:200], single_bodies)
        res["transformer_serving"] = serving
        best_levels(serving["runs"])
        compare_with_naive(serving, scores)
    res["machine"]["loadavg_at_end"] = loadavg()

    out = ROOT / "bench" / "results" / "serve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str, ensure_ascii=False))
    report(console, Table, res, args)
    console.print(f"written to {out}")


def isolate(work: Path, threads: int) -> dict[str, str]:
    """Point this process at a temporary home under `work` (no real store, no download, no progress bars)
    and make `work` the current folder; return the servers' environment."""
    import transformers

    home = work / "home"
    for var in STORE_VARS:
        os.environ.pop(var, None)
    os.environ.update({"REVIEWOPS_HOME": str(home), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                       "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    transformers.utils.logging.disable_progress_bar()
    os.chdir(work)  # no .env of the caller's folder is read, here or by the servers
    return {**os.environ, "OMP_NUM_THREADS": str(threads)}


def request_bodies(args: argparse.Namespace, parts: dict, settings: dict) -> tuple[list[bytes], list[str], list[bytes]]:
    """The batch test's bodies (`--batch-texts` test reviews each), the single reviews and their bodies;
    their sizes go to `settings`."""
    import numpy as np

    rng = np.random.default_rng(0)
    pool = parts["test"]["text"].tolist()
    rng.shuffle(pool)
    big_bodies = [body([pool[(b * args.batch_texts + i) % len(pool)] for i in range(args.batch_texts)])
                  for b in range(8)]
    singles = parts["eval"]["text"].tolist()  # NSMC-style: real reviews under 140 characters
    rng.shuffle(singles)
    single_bodies = [body([t]) for t in singles]
    settings["batch_body_kb"] = round(float(np.mean([len(b) for b in big_bodies])) / 1024, 1)
    settings["single_text_chars_mean"] = round(float(np.mean([len(t) for t in singles])), 1)
    return big_bodies, singles, single_bodies


def batch_throughput(console, args: argparse.Namespace, api: Server, big_bodies: list[bytes]) -> dict:
    """Reviews/s of the CPU model with `--batch-clients` clients sending `--batch-texts` reviews per request."""
    url = api.url + "/v1/predict"
    console.print(f"batch throughput: {args.batch_clients} clients x {args.batch_texts} reviews per request ...")
    cpu0, load0 = api.cpu_seconds(), loadavg()
    batch = drive(closed_loop(url, big_bodies, args.batch_texts, args.batch_clients,
                              seconds=args.batch_seconds, warmup=2))
    batch["server_cpu_seconds"] = api.cpu_seconds() - cpu0
    batch["loadavg_before"] = load0
    batch["clients"], batch["texts_per_request"] = args.batch_clients, args.batch_texts
    batch["target_reviews_per_second"] = 5000
    batch["met"] = batch["texts_per_second"] >= 5000
    # the prediction log of the batch test is still being written: measure latency on an idle server
    batch["server_busy_after_seconds"] = api.wait_idle()
    return batch


def open_loop_latency(console, args: argparse.Namespace, api: Server, single_bodies: list[bytes]) -> dict:
    """Latency of the CPU model, one review per request at `--rate` requests/s, in `--latency-rounds` windows."""
    url = api.url + "/v1/predict"
    windows = []
    for w in range(args.latency_rounds):
        console.print(f"open-loop latency, window {w + 1}/{args.latency_rounds}: {args.rate:.0f} requests/s "
                      f"for {args.seconds:.0f} s ...")
        api.wait_idle()
        cpu0, load0 = api.cpu_seconds(), loadavg()
        win = drive(open_loop(url, single_bodies, args.rate, args.seconds))
        win["server_cpu_seconds"] = api.cpu_seconds() - cpu0
        win["loadavg_before"] = load0
        win["met"] = (win["errors"] == 0 and win["latency_from_schedule"]["p99_ms"] <= 20
                      and win["achieved_rate"] >= 0.97 * args.rate)
        windows.append(win)
    pooled = [x for win in windows for x in win.pop("latencies")]
    return {
        "target_rate": args.rate, "window_seconds": args.seconds, "windows": windows,
        "achieved_rate": min(win["achieved_rate"] for win in windows),
        "errors": sum(win["errors"] for win in windows),
        "latency_from_schedule": percentiles(pooled),
        "worst_window_p99_ms": max(win["latency_from_schedule"]["p99_ms"] for win in windows),
        "server_cpu_ms_per_request": sum(win["server_cpu_seconds"] for win in windows) / len(pooled) * 1000,
        "target_p99_ms": 20,
        "met": all(win["met"] for win in windows),  # every window: one lucky window proves nothing
    }


def prepare_transformer(console, args: argparse.Namespace, work: Path, threads: int, snap,
                        parts: dict) -> tuple[Path, dict]:
    """Build the BERT-shaped classifier, fine-tune and register it as champion with its ONNX export, and
    download it: its Hugging Face folder (for the naive service) and its description."""
    import mlflow
    import torch

    from reviewops.config import Settings
    from reviewops.jobs.train import train_and_register
    from reviewops.models.trainers import TransformerTrainer
    from reviewops.registry.mlflow_registry import CHAMPION, Registry

    console.print("[bold]transformer[/bold]: build, fine-tune, export, register ...")
    t = time.perf_counter()
    ckpt = work / "bert-init"
    shape = build_bert(ckpt, args.corpus)
    build_seconds = time.perf_counter() - t
    # its own registered model in the same home; the gate's floor and serving budget are off: a 50-step
    # fine-tune from random weights is a serving benchmark's model, not one that would pass the accuracy
    # floor, and a BERT on CPU is outside the CPU model's budget by design
    bert_settings = Settings(model={"name": BERT_NAME},
                             gate={"floor": 0.0, "min_batch_reviews_per_second": 0.0, "max_single_p99_ms": 0.0})
    torch.set_num_threads(threads)
    trainer = TransformerTrainer(bert_settings, {"checkpoint": str(ckpt), "max_steps": args.max_steps, "epochs": 1,
                                                 "batch_size": 32, "num_workers": 0, "max_length": 128})
    tparts = {"train": parts["train"], "valid": parts["valid"].head(1000), "eval": parts["eval"]}
    t = time.perf_counter()
    bert_result = train_and_register(bert_settings, snap, tparts, trainer=trainer)
    train_seconds = time.perf_counter() - t
    champion = Registry(bert_settings).by_alias(CHAMPION)
    if champion is None:
        raise SystemExit(f"the benchmark's transformer was not promoted: {bert_result.decision.reason}")

    downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=champion.uri, dst_path=str(work / "bert")))
    folder = min(downloaded.rglob("meta.json"), key=lambda p: len(p.parts)).parent
    onnx_files = {p.name: p.stat().st_size for p in (folder / "onnx").glob("*.onnx")}
    model = {**shape, "build_seconds": build_seconds, "fine_tune_steps": args.max_steps,
             "train_register_seconds": train_seconds, "version": bert_result.version,
             "champion": bert_result.decision.promote,
             "eval_accuracy": bert_result.metrics["accuracy"],
             "onnx_int8_agreement": bert_result.metrics.get("onnx.int8.label_agreement"),
             "onnx_files_bytes": onnx_files}
    return folder / "hf", model


def transformer_services(hf_dir: Path, threads: int, env: dict[str, str],
                         reviewops_cmd: list[str]) -> list[tuple[str, str, list[str], dict[str, str]]]:
    """The three services of the transformer test: key, label, command (less its port) and environment."""
    bert_env = {**env, "REVIEWOPS_MODEL_NAME": BERT_NAME}
    return [
        ("naive", "naive FastAPI + transformers.pipeline, per request (torch fp32)",
         [sys.executable, str(Path(__file__).resolve()), "--naive-hf-dir", str(hf_dir), "--threads", str(threads)],
         env),
        ("ours-onnx", "our API: micro-batching + ONNX int8", reviewops_cmd,
         {**bert_env, "REVIEWOPS_SERVE_PREFER_ONNX": "true"}),
        ("ours-torch", "our API, REVIEWOPS_SERVE_PREFER_ONNX=false: micro-batching + torch fp32", reviewops_cmd,
         {**bert_env, "REVIEWOPS_SERVE_PREFER_ONNX": "false"}),
    ]


def serve_transformer(console, args: argparse.Namespace, services: list, work: Path, logs: Path,
                      check_texts: list[str], single_bodies: list[bytes]) -> tuple[dict, dict[str, list[float]]]:
    """Every service's rounds at every level of `--concurrency`, and its scores of `check_texts`."""
    scores: dict[str, list[float]] = {}
    serving = {"concurrency": args.concurrency, "requests": args.requests, "rounds": args.rounds,
               "texts_per_request": 1, "runs": {}}
    with contextlib.ExitStack() as stack:
        servers = {}
        for key, label, cmd, senv in services:  # all three up at once, measured in turns, round after round
            port = free_port()
            servers[key] = stack.enter_context(Server(key, cmd + ["--port", str(port)], senv, work, logs, port))
            scores[key] = scores_of(servers[key], check_texts, naive=key == "naive")
            backend = "transformers.pipeline" if key == "naive" else servers[key].get("/v1/model")["backend"]
            serving["runs"][key] = {
                "label": label, "backend": backend, "server_start_seconds": servers[key].start_seconds,
                "by_concurrency": {str(c): {"rounds": []} for c in args.concurrency}}
        for rnd in range(args.rounds):
            for clients in args.concurrency:
                for key, label, _, _ in services:
                    console.print(f"round {rnd + 1}/{args.rounds}, {label}: {clients} clients, "
                                  f"{args.requests:,} requests ...")
                    r = service_round(servers[key], key == "naive", clients, args.requests, single_bodies)
                    serving["runs"][key]["by_concurrency"][str(clients)]["rounds"].append(r)
    return serving, scores


def service_round(srv: Server, naive: bool, clients: int, requests: int, single_bodies: list[bytes]) -> dict:
    """One round of one service: `requests` single-review requests from `clients` concurrent clients."""
    srv.wait_idle()
    before = srv.mean_batch() if not naive else None
    cpu0, load0 = srv.cpu_seconds(), loadavg()
    r = drive(closed_loop(srv.url + "/v1/predict", single_bodies, 1, clients, requests=requests, warmup=2))
    r["server_cpu_seconds"] = srv.cpu_seconds() - cpu0
    r["server_cpu_ms_per_request"] = r["server_cpu_seconds"] / r["requests"] * 1000
    r["client_cpu_ms_per_request"] = r["client_cpu_seconds"] / r["requests"] * 1000
    r["loadavg_before"] = load0
    if before is not None:
        after = srv.mean_batch()
        calls = after["calls"] - before["calls"]
        r["model_calls"] = calls
        r["mean_texts_per_model_call"] = (after["texts"] - before["texts"]) / calls if calls else None
    return r


def best_levels(runs: dict) -> None:
    """Each service's best round at each level (the least disturbed), and its throughput: its best level
    (the load that saturates it)."""
    for run_ in runs.values():
        for level in run_["by_concurrency"].values():
            level.update(max(level["rounds"], key=lambda r: r["requests_per_second"]))
        best = max(run_["by_concurrency"], key=lambda c: run_["by_concurrency"][c]["requests_per_second"])
        run_["best_concurrency"] = int(best)
        run_.update({k: v for k, v in run_["by_concurrency"][best].items() if k != "rounds"})


def compare_with_naive(serving: dict, scores: dict[str, list[float]]) -> None:
    """Each service's throughput as a multiple of the naive service's (best levels and level by level), and
    how far its scores are from the naive service's."""
    import numpy as np

    runs = serving["runs"]
    base = runs["naive"]["requests_per_second"]
    for r in runs.values():
        r["x_naive"] = r["requests_per_second"] / base
        for c, level in r["by_concurrency"].items():
            level["x_naive_same_clients"] = (level["requests_per_second"]
                                             / runs["naive"]["by_concurrency"][c]["requests_per_second"])
    naive = np.asarray(scores["naive"])
    ratio = runs["ours-onnx"]["x_naive"]
    serving.update({
        "ratio_ours_onnx_vs_naive": ratio, "ratio_ours_torch_vs_naive": runs["ours-torch"]["x_naive"],
        "target_ratio": 10, "met": ratio >= 10,
        "agreement": {f"{k} vs naive": float(np.mean((np.asarray(v) >= 0.5) == (naive >= 0.5)))
                      for k, v in scores.items() if k != "naive"},
        "max_abs_score_diff": {f"{k} vs naive": float(np.abs(np.asarray(v) - naive).max())
                               for k, v in scores.items() if k != "naive"},
    })


# --- ours against MLflow's own model server ------------------------------------------------------------


def mlflow_body(texts: list[str]) -> bytes:
    """MLflow's scoring-server input for `texts`: a one-column DataFrame, split orient."""
    return json.dumps({"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}},
                      ensure_ascii=False).encode()


def peer_services(settings, env: dict[str, str], reviewops_cmd: list[str], workers: int) -> list[dict]:
    """Our API and `mlflow models serve` for the same champion, each with `workers` processes (MLflow's
    default is one per core; ours gets the same, `reviewops serve --workers`)."""
    venv_bin = str(Path(sys.executable).parent)
    mlflow_env = {**env, "MLFLOW_TRACKING_URI": settings.tracking_uri, "MLFLOW_MODELS_WORKERS": str(workers),
                  "PATH": venv_bin + os.pathsep + env.get("PATH", "")}  # it starts `uvicorn` by name
    mlflow_cmd = [str(Path(venv_bin) / "mlflow"), "models", "serve", "-m",
                  f"models:/{settings.model.name}@champion", "--env-manager", "local", "-h", "127.0.0.1", "-p"]
    return [
        {"key": "ours", "label": f"our API (reviewops serve --workers {workers})",
         "cmd": reviewops_cmd + ["--workers", str(workers), "--port"], "env": env, "health": "/readyz",
         "path": "/v1/predict", "body": body},
        {"key": "mlflow", "label": f"mlflow models serve ({workers} workers)", "cmd": mlflow_cmd,
         "env": mlflow_env, "health": "/ping", "path": "/invocations", "body": mlflow_body},
    ]


def serve_vs_mlflow(console, args: argparse.Namespace, services: list[dict], work: Path, logs: Path,
                    pool: list[str], singles: list[str]) -> dict:
    """Both services up at once, measured in alternating rounds (who goes first alternates too): batches
    of `--mlflow-batch-texts` reviews from `--batch-clients` clients, then single reviews one at a time."""
    n = args.mlflow_batch_texts
    batches = [pool[(b * n + i) % len(pool)] for b in range(8) for i in range(n)]
    for svc in services:
        svc["batch_bodies"] = [svc["body"](batches[b * n:(b + 1) * n]) for b in range(8)]
        svc["single_bodies"] = [svc["body"]([t]) for t in singles]
    res = {"workers": args.mlflow_workers, "batch_texts": n, "batch_clients": args.batch_clients,
           "batch_seconds": args.mlflow_seconds, "single_requests": args.mlflow_singles,
           "services": {svc["key"]: svc["label"] for svc in services}, "rounds": []}
    with contextlib.ExitStack() as stack:
        servers = {}
        for svc in services:
            port = free_port()
            servers[svc["key"]] = stack.enter_context(Server(svc["key"], svc["cmd"] + [str(port)], svc["env"], work,
                                                             logs, port, health=svc["health"]))
        res["max_abs_score_diff"] = peer_score_diff(servers, singles[:200])
        for rnd in range(args.mlflow_rounds):
            row = {}
            for svc in services if rnd % 2 == 0 else services[::-1]:
                console.print(f"vs MLflow, round {rnd + 1}/{args.mlflow_rounds}: {svc['label']} ...")
                row[svc["key"]] = peer_round(servers[svc["key"]], svc, args)
            res["rounds"].append(row)
    summarise_peer(res)
    return res


def peer_round(srv: Server, svc: dict, args: argparse.Namespace) -> dict:
    """One service's round: reviews/s on batches (and server CPU per 1,000 reviews, which the other
    helpers' load on the cores disturbs less), then single-review latency on the idle server."""
    url = srv.url + svc["path"]
    srv.wait_idle()
    cpu0, load0 = srv.process_cpu_seconds(), loadavg()
    batch = drive(closed_loop(url, svc["batch_bodies"], args.mlflow_batch_texts, args.batch_clients,
                              seconds=args.mlflow_seconds, warmup=2))
    used = [t - cpu0.get(pid, 0.0) for pid, t in srv.process_cpu_seconds().items()]
    cpu = sum(used)
    srv.wait_idle()  # ours is still writing the batch's prediction log
    single = drive(closed_loop(url, svc["single_bodies"], 1, 1, requests=args.mlflow_singles, warmup=5))
    return {"reviews_per_second": batch["texts_per_second"], "batch_requests": batch["requests"],
            "server_cpu_ms_per_1000_reviews": cpu / batch["texts"] * 1e6,
            # 1/workers when the work is spread evenly, 1.0 when one process did all of it
            "busiest_process_cpu_share": max(used) / cpu if cpu > 0 else None,
            "batch_latency_p50_ms": batch["latency"]["p50_ms"],
            "single_p50_ms": single["latency"]["p50_ms"], "single_p99_ms": single["latency"]["p99_ms"],
            "loadavg_before": load0}


def peer_score_diff(servers: dict[str, Server], texts: list[str]) -> float:
    """Largest |P(positive) difference| between the two services on `texts` (the same model: ~0)."""
    import httpx

    ours = httpx.post(servers["ours"].url + "/v1/predict", content=body(texts), timeout=60,
                      headers={"content-type": "application/json"}).json()["predictions"]
    theirs = httpx.post(servers["mlflow"].url + "/invocations", content=mlflow_body(texts), timeout=60,
                        headers={"content-type": "application/json"}).json()["predictions"]
    return max(abs(a["score"] - b["score"]) for a, b in zip(ours, theirs, strict=True))


def summarise_peer(res: dict) -> None:
    """Per round: ours / MLflow reviews/s, and MLflow / ours CPU per review; then the medians, the worst
    round, and whether ours is >= 1.5x on batches with single-review p50 and p99 ahead."""
    import numpy as np

    for row in res["rounds"]:
        row["ratio_reviews_per_second"] = row["ours"]["reviews_per_second"] / row["mlflow"]["reviews_per_second"]
        row["ratio_cpu_per_review"] = (row["mlflow"]["server_cpu_ms_per_1000_reviews"]
                                       / row["ours"]["server_cpu_ms_per_1000_reviews"])
    ratios = [row["ratio_reviews_per_second"] for row in res["rounds"]]

    def median(key: str, measure: str) -> float:
        return float(np.median([row[key][measure] for row in res["rounds"]]))

    res["summary"] = {
        "ratio_median": float(np.median(ratios)), "ratio_min": min(ratios),
        "ratio_cpu_median": float(np.median([row["ratio_cpu_per_review"] for row in res["rounds"]])),
        **{f"{k}_{m}_median": median(k, m) for k in ("ours", "mlflow")
           for m in ("reviews_per_second", "single_p50_ms", "single_p99_ms")},
        "target_ratio": 1.5,
    }
    sm = res["summary"]
    sm["single_ahead"] = (sm["ours_single_p50_ms_median"] < sm["mlflow_single_p50_ms_median"]
                          and sm["ours_single_p99_ms_median"] < sm["mlflow_single_p99_ms_median"])
    sm["met"] = sm["ratio_median"] >= 1.5 and sm["single_ahead"]


def report_peer(console, peer: dict) -> None:
    sm = peer["summary"]
    console.print(f"vs MLflow's server ({peer['workers']} workers each, {peer['batch_clients']} clients x "
                  f"{peer['batch_texts']} reviews; singles one at a time), round by round:")
    for i, row in enumerate(peer["rounds"], 1):
        o, m = row["ours"], row["mlflow"]
        console.print(f"  round {i} (load {o['loadavg_before'][0]}): ours {o['reviews_per_second']:,.0f} vs MLflow "
                      f"{m['reviews_per_second']:,.0f} reviews/s = {row['ratio_reviews_per_second']:.2f}x; CPU per "
                      f"1,000 reviews {o['server_cpu_ms_per_1000_reviews']:.0f} vs "
                      f"{m['server_cpu_ms_per_1000_reviews']:.0f} ms; busiest process's share of that CPU "
                      f"{o['busiest_process_cpu_share']:.0%} vs {m['busiest_process_cpu_share']:.0%}; "
                      f"single p50/p99 ours "
                      f"{o['single_p50_ms']:.1f}/{o['single_p99_ms']:.1f} vs MLflow "
                      f"{m['single_p50_ms']:.1f}/{m['single_p99_ms']:.1f} ms")
    verdict = "[green]met[/green]" if sm["met"] else "[red]NOT met[/red]"
    console.print(f"  median ratio {sm['ratio_median']:.2f}x (worst round {sm['ratio_min']:.2f}x, CPU per review "
                  f"{sm['ratio_cpu_median']:.2f}x), single-review latency ahead: {sm['single_ahead']}; "
                  f">= 1.5x target {verdict}; largest |score difference| {peer['max_abs_score_diff']:.1e}")


SHORT = {"naive": "(a) naive pipeline", "ours-onnx": "(b) ours, ONNX int8", "ours-torch": "(c) ours, torch"}


def report(console, Table, res: dict, args: argparse.Namespace) -> None:
    def ok(met: bool) -> str:
        return "[green]met[/green]" if met else "[red]NOT met[/red]"

    b, lat = res["batch_throughput"], res["latency"]
    lf = lat["latency_from_schedule"]
    m = res["machine"]
    table = Table(title=f"serving: {m['cpus']} cores ({m['cpu']}), load avg {m['loadavg_at_start'][0]} at start, "
                  f"{res['settings']['threads']} threads per server", title_justify="left")
    table.add_column("measure")
    for col in ("value", "target", ""):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_row(f"CPU model, batch: {b['clients']} clients x {b['texts_per_request']:,} reviews",
                  f"{b['texts_per_second']:,.0f} reviews/s", ">= 5,000", ok(b["met"]))
    table.add_row(f"CPU model, 1 review at {lat['target_rate']:.0f}/s open loop: achieved",
                  f"{lat['achieved_rate']:.1f} req/s", "", "")
    for i, win in enumerate(lat["windows"], 1):
        wf = win["latency_from_schedule"]
        table.add_row(f"  window {i} ({win['seconds']:.0f} s): p50 / p95 / p99",
                      f"{wf['p50_ms']:.1f} / {wf['p95_ms']:.1f} / {wf['p99_ms']:.1f} ms",
                      "p99 <= 20 ms", ok(win["met"]))
    ts = res.get("transformer_serving", {"runs": {}})
    for key, r in ts["runs"].items():
        table.add_row(f"BERT throughput, {SHORT[key]} (best of {', '.join(map(str, ts['concurrency']))} clients: "
                      f"{r['best_concurrency']})",
                      f"{r['requests_per_second']:,.0f} req/s ({r['x_naive']:.1f}x)",
                      ">= 10x" if key == "ours-onnx" else "", ok(ts["met"]) if key == "ours-onnx" else "")
    console.print(table)
    if "vs_mlflow" in res:
        report_peer(console, res["vs_mlflow"])
    if "transformer_model" in res:
        report_transformer(console, res)
    lag = max(win["send_lag_ms"]["max"] for win in lat["windows"])
    gc_max = max(win["client_gc"]["max_ms"] for win in lat["windows"])
    console.print(f"CPU model latency test: server CPU {lat['server_cpu_ms_per_request']:.1f} ms per request; "
                  f"pooled p50 / p99 {lf['p50_ms']:.1f} / {lf['p99_ms']:.1f} ms; sends late by up to {lag:.0f} ms; "
                  f"longest load-generator GC pause {gc_max:.1f} ms")


def report_transformer(console, res: dict) -> None:
    """The transformer test, level by level, and its model."""
    ts = res["transformer_serving"]
    for key, r in ts["runs"].items():
        for c, level in r["by_concurrency"].items():
            batching = (f", {level['mean_texts_per_model_call']:.1f} texts per model call"
                        if level.get("mean_texts_per_model_call") else "")
            console.print(f"  {SHORT[key]}, {c} clients: rounds "
                          + ", ".join(f"{x['requests_per_second']:,.0f}" for x in level["rounds"])
                          + f" req/s ({level['x_naive_same_clients']:.1f}x the naive service at {c}); "
                          f"p50 {level['latency']['p50_ms']:.0f} ms; server CPU "
                          f"{level['server_cpu_ms_per_request']:.2f} ms per request{batching}")
    tm = res["transformer_model"]
    console.print(f"transformer: {tm['layers']} x {tm['hidden_size']}, {tm['parameters'] / 1e6:.1f}M parameters, "
                  f"{tm['fine_tune_steps']} fine-tuning steps, eval accuracy {tm['eval_accuracy']:.3f}; "
                  "largest |score difference| from the naive service on 200 texts: "
                  + ", ".join(f"{k} {v:.1e}" for k, v in ts["max_abs_score_diff"].items()))


if __name__ == "__main__":
    main()
