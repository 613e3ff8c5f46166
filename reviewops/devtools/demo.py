"""`make demo`: the platform's daily cycle on embedded defaults, run through the Airflow DAGs.

migrate → ingest the bundled sample (or REVIEWOPS_CORPUS) as history → on the local CGV/Megabox test
site: reviews_collect → sentiment_train → reviews_score → the next day: reviews_collect →
reviews_score → model_monitor → predict a few reviews → the Slack messages the cycle sent (to a local
stand-in). Every step is the public `reviewops` command a user would type; each DAG runs with
`reviewops dag test` (Airflow's dag.test(): no scheduler needed).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from reviewops.config import get_settings
from reviewops.data.labels import LABEL_NAMES_KO
from reviewops.resources import sample_corpus

EXAMPLES = [
    "배우들 연기가 정말 좋았고 마지막 장면에서 눈물이 났어요",
    "시간 아깝다 진짜 최악의 영화",
    "스토리가 탄탄하고 긴장감 넘쳐서 두 시간이 금방 지나감",
    "기대했는데 너무 지루하고 유치했다",
    "ㅋㅋㅋㅋㅋ 올해 본 영화 중에 최고 강추!!",
    "돈 주고 보기 아까운 영화. 졸다 나왔음",
    "OST가 너무 좋아서 계속 생각나네요",
    "연출도 별로고 개연성도 없음",
]

console = Console()


def step(title: str, *args: str, env: dict[str, str] | None = None) -> None:
    cmd = [str(Path(sys.executable).with_name("reviewops")), *args]
    console.rule(f"[bold cyan]{title}")
    console.print(f"$ reviewops {shlex.join(args)}", style="dim")
    proc = subprocess.run(cmd, check=False, env=env)
    if proc.returncode != 0:
        console.print(f"[bold red]demo stopped: `reviewops {shlex.join(args)}` exited {proc.returncode}")
        raise SystemExit(proc.returncode)


def main() -> None:
    settings = get_settings()
    corpus = settings.corpus or sample_corpus()
    settings.home.mkdir(parents=True, exist_ok=True)

    step("1/10 review database", "db", "upgrade")
    step(f"2/10 history: ingest {Path(corpus).name}", "ingest", str(corpus))

    # The real cinema sites are out of reach here: crawl the local test site, which serves their shapes
    # (a shorter delay than the 1 s default is fine for a site on this machine). Slack messages go to a
    # local stand-in and are shown at the end.
    from reviewops.devtools.slack_standin import SlackStandIn, standin_env
    from reviewops.devtools.testsite import TestSite

    site = TestSite(reviews_per_day=5, days=3)
    url = site.start()
    slack = SlackStandIn()
    env = os.environ | {"REVIEWOPS_CGV_BASE_URL": url, "REVIEWOPS_MEGABOX_BASE_URL": url,
                        "REVIEWOPS_CRAWL_DELAY": "0.1", "REVIEWOPS_TASK_RETRY_DELAY": "5"}
    env |= standin_env(slack.url)
    try:
        console.print(f"local test site: {url} (day 0: {site.state()['date']}); Slack stand-in: {slack.url}")
        step("3/10 DAG reviews_collect: crawl CGV and Megabox (day 0)", "dag", "test", "reviews_collect",
             env=env)
        step("4/10 DAG sentiment_train: snapshot → train → gate → promote", "dag", "test", "sentiment_train",
             env=env)
        step("5/10 DAG reviews_score: score the collected reviews with the champion", "dag", "test",
             "reviews_score", env=env)
        site.set_day(1)
        next_day = site.state()["date"]
        step(f"6/10 DAG reviews_collect the next day ({next_day}): only new reviews", "dag", "test",
             "reviews_collect", env=env)
        step("7/10 DAG reviews_score: only the new reviews", "dag", "test", "reviews_score", env=env)
        step("8/10 DAG model_monitor: drift and agreement with reviewers' ratings", "dag", "test",
             "model_monitor", env=env)
    finally:
        site.stop()
        slack.close()

    demo_dir = settings.home / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    inp, out = demo_dir / "examples.tsv", demo_dir / "predictions.tsv"
    pd.DataFrame({"id": [f"ex{i + 1}" for i in range(len(EXAMPLES))], "document": EXAMPLES}).to_csv(
        inp, sep="\t", index=False
    )
    step("9/10 predict with the champion", "predict", "--input", str(inp), "--output", str(out))

    pred = pd.read_csv(out, sep="\t", dtype={"id": str}).set_index("id")
    table = Table(title="예측 결과 (champion)", title_justify="left")
    for col, justify in (("리뷰", "left"), ("감성", "center"), ("긍정 확률", "right")):
        table.add_column(col, justify=justify)
    for i, text in enumerate(EXAMPLES):
        row = pred.loc[f"ex{i + 1}"]
        colour = "green" if row["label"] == 1 else "red"
        table.add_row(text, f"[{colour}]{LABEL_NAMES_KO[int(row['label'])]}", f"{row['score']:.3f}")
    console.print(table)

    console.rule("[bold cyan]10/10 what the cycle told Slack (local stand-in)")
    for m in slack.messages():
        console.print(f"• {m['text']}", highlight=False)

    console.rule("[bold cyan]next")
    console.print(
        f"Predictions: {out}\n"
        f"Predict your own file:  .venv/bin/reviewops predict --input reviews.tsv --output out.tsv\n"
        f"The whole platform:     make up   (http://127.0.0.1:8088/: the app, /api/docs, /airflow/ with the four "
        f"DAGs, /mlflow/ on model '{settings.model.name}')\n"
        f"Open the MLflow UI:     make mlflow-ui   (then http://127.0.0.1:5000, experiment "
        f"'{settings.mlflow.experiment}', model '{settings.model.name}')\n"
        "Train on the full corpus: "
        "REVIEWOPS_CORPUS=../shared/data/naver-movie-reviews/reviews.jsonl.gz make demo"
    )


if __name__ == "__main__":
    main()
