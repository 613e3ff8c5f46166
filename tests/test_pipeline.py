"""The main job end to end through the CLI: pipeline run, registry, gate, promote, rollback, predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from reviewops.cli import app
from reviewops.config import Settings, reset_settings
from reviewops.errors import InputError
from reviewops.evaluate.cost import ServingCost
from reviewops.models.trainers import trainer_for
from reviewops.registry.mlflow_registry import Registry
from tests.conftest import ROOT

FAST_MODEL = json.dumps({"char_features": 2**18, "word_features": 2**17, "n_jobs": 1})
runner = CliRunner()


@pytest.fixture
def fast(monkeypatch, home):
    monkeypatch.setenv("REVIEWOPS_MODEL_PARAMS", FAST_MODEL)
    reset_settings()


def cli(*args: str):
    reset_settings()
    result = runner.invoke(app, list(args))
    return result


def run_json(*args: str) -> dict:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def reviews_tsv(path: Path) -> Path:
    rows = [
        ("a1", "정말 재밌고 감동적이에요. 배우들 연기 최고!", 1),
        ("a2", "시간 아깝다 최악의 영화", 0),
        ("a3", "스토리가 너무 지루하고 유치함", 0),
        ("a4", "올해 본 영화 중 최고 강추합니다", 1),
        ("a5", "", 0),
        ("a6", "ㅋㅋㅋㅋㅋㅋㅋㅋ 존잼", 1),
    ]
    pd.DataFrame(rows, columns=["id", "document", "label"]).to_csv(path, sep="\t", index=False)
    return path


def test_pipeline_registry_gate_and_predict(db_url, fast, small_corpus, tmp_path):
    first = run_json("pipeline", "run", "--corpus", str(small_corpus))
    assert first["ingest"]["new"] == 6000
    t = first["train"]
    assert t["version"] == "1" and t["decision"]["promote"] is True and "first model" in t["decision"]["reason"]
    assert t["metrics"]["accuracy"] > 0.7 and 0 < t["metrics"]["log_loss"] < 0.7
    assert {"f1", "roc_auc", "log_loss"} <= set(t["metrics"])

    reg = Registry(Settings())
    assert reg.by_alias("champion").version == "1"

    # the MLflow run has what the gate and a reader need
    import mlflow

    run = mlflow.get_run(t["run_id"])
    assert run.data.tags["dataset.fingerprint"] == first["snapshot"]["fingerprint"]
    # MLflow's UI opens the experiment on its training runs, not on the GenAI overview
    assert mlflow.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert "slice.len_lt20.accuracy" in run.data.metrics and run.data.params["model.alpha"]
    # the behavioural set, overall and per category, with every case's answer
    assert 0 <= run.data.metrics["behaviour.accuracy"] <= 1 and run.data.metrics["behaviour.n"] >= 40
    assert "behaviour.double_negation.accuracy" in run.data.metrics
    assert 0 <= t["metrics"]["behaviour.sarcasm.accuracy"] <= 1
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(t["run_id"])}
    assert "confusion_matrix.png" in artifacts or any("confusion" in a for a in artifacts)

    # same data again: nothing new ingested, a version that does not beat the champion → challenger
    second = run_json("pipeline", "run", "--corpus", str(small_corpus))
    assert second["ingest"]["new"] == 0 and second["ingest"]["already_stored"] == 6000
    assert second["snapshot"]["fingerprint"] == first["snapshot"]["fingerprint"]
    d = second["train"]["decision"]
    assert second["train"]["version"] == "2" and d["promote"] is False
    assert d["champion"] == pytest.approx(d["candidate"])  # the champion was re-scored on the same set
    v2 = reg.get("2")
    assert v2.tags["gate.decision"] == "challenger" and "margin" in v2.tags["gate.reason"]
    assert reg.by_alias("challenger").version == "2" and reg.by_alias("champion").version == "1"

    # by hand: promote 2, roll back to 1, and nothing before 1
    assert cli("promote", "2").exit_code == 0
    assert reg.by_alias("champion").version == "2" and reg.by_alias("challenger") is None
    r = cli("rollback")
    assert r.exit_code == 0 and "from version 2 to version 1" in r.stdout
    assert reg.by_alias("champion").version == "1"
    r = cli("rollback")
    assert r.exit_code == 6 and "nothing to roll back to" in r.stderr
    assert cli("promote", "9").exit_code == 6
    listing = cli("models")
    assert listing.exit_code == 0 and "champion" in listing.stdout and "rolled_back" in listing.stdout
    cost = ServingCost.from_tags(reg.get("1").tags)  # measured by the gate, shown by the listing
    assert cost and f"{cost.batch_rps:,.0f}" in listing.stdout and "reviews/s" in listing.stdout

    # predict with the champion: one row per input, same order
    inp, outp = reviews_tsv(tmp_path / "in.tsv"), tmp_path / "out" / "pred.tsv"
    r = cli("predict", "--input", str(inp), "--output", str(outp))
    assert r.exit_code == 0, r.stderr
    pred = pd.read_csv(outp, sep="\t", dtype={"id": str, "flags": str}, keep_default_na=False)
    assert list(pred.columns) == ["id", "label", "score", "verdict", "flags"]
    assert pred["id"].tolist() == ["a1", "a2", "a3", "a4", "a5", "a6"]
    # the blank review is answered as the API answers it: no label, no score, 애매함, flag empty
    assert pred.set_index("id").loc["a5"].tolist() == ["", "", "애매함", "empty"]
    scored = pred[pred["id"] != "a5"].set_index("id")
    assert scored["score"].astype(float).between(0, 1).all() and set(scored["label"].astype(int)) <= {0, 1}
    assert scored.loc[["a1", "a4"], "label"].astype(int).tolist() == [1, 1]
    assert scored.loc[["a2", "a3"], "label"].astype(int).tolist() == [0, 0]
    for _, row in scored.iterrows():  # the same rule as the API's: the label outside the band, else 애매함
        sure = not row["flags"] and not 0.35 <= float(row["score"]) <= 0.65
        assert row["verdict"] == (("긍정" if int(row["label"]) else "부정") if sure else "애매함")
    assert "uncertain" in r.stderr

    # a CSV, and an explicit model URI
    csv = tmp_path / "in.csv"
    pd.read_csv(inp, sep="\t").to_csv(csv, index=False)
    r = cli("predict", "--input", str(csv), "--output", str(tmp_path / "p2.tsv"),
            "--model-uri", "models:/review-sentiment/2")
    assert r.exit_code == 0, r.stderr
    assert len(pd.read_csv(tmp_path / "p2.tsv", sep="\t")) == 6


def test_failure_after_registration_leaves_no_half_registered_version(db_url, fast, small_corpus, monkeypatch):
    run_json("pipeline", "run", "--corpus", str(small_corpus))

    def broken(self, version, reason, *more):
        raise RuntimeError("registry went away")

    with monkeypatch.context() as m:
        m.setattr(Registry, "mark_challenger", broken)
        m.setattr(Registry, "promote", broken)
        result = cli("pipeline", "run", "--corpus", str(small_corpus))
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    reg = Registry(Settings())
    assert [v.version for v in reg.versions()] == ["1"]
    assert reg.by_alias("champion").version == "1"


def test_a_candidate_over_the_serving_budget_stays_challenger_with_its_cost(db_url, fast, small_corpus, monkeypatch):
    monkeypatch.setenv("REVIEWOPS_GATE_MIN_BATCH_REVIEWS_PER_SECOND", str(10**9))
    monkeypatch.setenv("REVIEWOPS_GATE_COST_SECONDS", "0.5")
    t = run_json("pipeline", "run", "--corpus", str(small_corpus))["train"]
    d = t["decision"]
    assert t["version"] == "1" and d["promote"] is False
    assert d["reason"].startswith("serving cost over budget: ") and "< 1,000,000,000 (batches)" in d["reason"]
    assert 0 < d["cost"]["batch_rps"] < 10**9 and 0 < d["cost"]["single_p50_ms"] <= d["cost"]["single_p99_ms"]

    reg = Registry(Settings())
    v1 = reg.get("1")
    assert v1.tags["gate.decision"] == "challenger" and v1.tags["gate.reason"] == d["reason"]
    assert float(v1.tags["cost.batch_rps"]) == pytest.approx(d["cost"]["batch_rps"], abs=0.1)
    assert {"cost.single_p50_ms", "cost.single_p99_ms"} <= set(v1.tags)
    assert reg.by_alias("champion") is None and reg.by_alias("challenger").version == "1"
    assert reg.run_metrics(t["run_id"])["cost.batch_rps"] == pytest.approx(d["cost"]["batch_rps"])


def _champion_skops(home: Path) -> Path:
    found = sorted(home.rglob("model.skops"))
    assert found, "no model artifact under the MLflow artifact root"
    return found[0]


def test_broken_champion(db_url, fast, small_corpus, tmp_path, home):
    run_json("pipeline", "run", "--corpus", str(small_corpus))
    skops = _champion_skops(home / "mlruns")
    skops.write_bytes(skops.read_bytes()[:-100] + b"x" * 100)

    r = cli("predict", "--input", str(reviews_tsv(tmp_path / "in.tsv")), "--output", str(tmp_path / "o.tsv"))
    assert r.exit_code == 5 and "checksum" in r.stderr and not (tmp_path / "o.tsv").exists()

    # training goes on, but a champion that cannot be scored is never replaced automatically
    second = run_json("pipeline", "run", "--corpus", str(small_corpus))
    d = second["train"]["decision"]
    assert d["promote"] is False and "could not be evaluated" in d["reason"]
    assert cli("promote", second["train"]["version"]).exit_code == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        ("id\ttext\n1\t좋아요\n".encode(), "missing column(s) document"),
        ("id\tdocument\n1\t좋아요\n2\t".encode() + "별로".encode("euc-kr") + b"\n", ":3: not UTF-8"),
    ],
)
def test_predict_bad_input(home, tmp_path, content, message):
    inp = tmp_path / "in.tsv"
    inp.write_bytes(content)
    r = cli("predict", "--input", str(inp), "--output", str(tmp_path / "o.tsv"))
    assert r.exit_code == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.tsv").exists()


def test_predict_without_a_champion(home, tmp_path):
    r = cli("predict", "--input", str(reviews_tsv(tmp_path / "in.tsv")), "--output", str(tmp_path / "o.tsv"))
    assert r.exit_code == 5 and "review-sentiment" in r.stderr


def test_unreachable_database_from_the_command_line(home, tmp_path, small_corpus):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWOPS_") or k.startswith("REVIEWOPS_TEST")}
    env |= {"REVIEWOPS_HOME": str(home), "REVIEWOPS_DATABASE_URL": "postgresql+psycopg://app:topsecret@127.0.0.1:1/reviews"}
    proc = subprocess.run([sys.executable, "-m", "reviewops.cli", "pipeline", "run", "--corpus", str(small_corpus)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the review database" in lines[0] and "REVIEWOPS_DATABASE_URL" in lines[0]
    assert "topsecret" not in proc.stderr + proc.stdout


def test_stage_commands_one_by_one(home, fast, small_corpus, monkeypatch):
    assert cli("db", "upgrade").exit_code == 0
    r = cli("ingest", str(small_corpus))
    assert r.exit_code == 0 and "already stored" in r.stdout and "low_hangul" in r.stdout
    again = run_json("ingest", str(small_corpus))
    assert again["new"] == 0 and again["already_stored"] == 6000
    r = cli("snapshot", "--balance", "downsample")
    assert r.exit_code == 0 and "fingerprint" in r.stdout
    assert cli("snapshot", "--date-from", "yesterday").exit_code == 2
    trained = run_json("train", "--max-rows", "3000")
    assert trained["version"] == "1" and trained["decision"]["promote"]
    monkeypatch.setenv("REVIEWOPS_DATABASE_URL", "postgresql+psycopg://u:pa55word@127.0.0.1:1/x")
    r = cli("config")
    assert r.exit_code == 0 and "pa55word" not in r.stdout and "u:***@" in r.stdout


def test_an_unknown_trainer_is_an_error_everywhere(home):
    with pytest.raises(InputError, match="unknown trainer 'gpt': use baseline or transformer"):
        trainer_for("gpt", Settings())
    from reviewops import orchestration

    with pytest.raises(InputError, match="unknown trainer 'gpt'"):  # the Airflow task: no silent baseline
        orchestration.train("no-such-snapshot", "gpt")
    r = cli("train", "--trainer", "gpt")
    assert r.exit_code == 2 and "unknown trainer 'gpt'" in r.stderr


def test_mlflow_is_configured_once_per_tracking_uri_and_a_failure_is_not_remembered(home, monkeypatch):
    from reviewops.errors import ConfigError
    from reviewops.registry import mlflow_registry

    calls = []
    configure = mlflow_registry._configure
    monkeypatch.setattr(mlflow_registry, "_configure", lambda s: calls.append(s.tracking_uri) or configure(s))
    Registry(Settings())
    Registry(Settings())
    assert calls == [Settings().tracking_uri]  # constructing a Registry again asks MLflow nothing

    def down(uri: str) -> None:
        raise ConfigError(f"cannot reach MLflow at {uri}")

    monkeypatch.setattr(mlflow_registry, "_probe", down)
    monkeypatch.setenv("REVIEWOPS_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    reset_settings()
    for _ in range(2):
        with pytest.raises(ConfigError):
            Registry(Settings())
    assert calls[1:] == ["http://127.0.0.1:9"] * 2


def test_the_stacked_trainer_is_gated_on_the_cost_of_analysing_its_texts(db_url, fast, small_corpus, monkeypatch):
    """`train --trainer stack` registers and gates a stacked model with MeCab morphemes. Training leaves the
    evaluation texts' morphemes in the cache; the gate's cost must be that of analysing them, so it analyses
    them again."""
    from collections import Counter

    from reviewops.text import morphemes

    analysed: Counter[str] = Counter()
    mecab = morphemes._CHUNKS["mecab"]

    def counted(texts: list[str]) -> list[str]:
        analysed.update(set(texts))  # a text twice in one batch is analysed twice, cache or not
        return mecab(texts)

    monkeypatch.setitem(morphemes._CHUNKS, "mecab", counted)
    monkeypatch.setattr(morphemes, "PARALLEL_MIN_TEXTS", 10**9)  # every text analysed here, where it is counted
    morphemes.clear_cache()  # an earlier test in this process may have analysed the same corpus
    monkeypatch.setenv("REVIEWOPS_GATE_COST_SECONDS", "1")
    run_json("ingest", str(small_corpus))
    t = run_json("train", "--trainer", "stack")
    assert t["version"] == "1" and t["metrics"]["accuracy"] > 0.7
    assert Registry(Settings()).get("1").tags["cost.batch_rps"]
    # evaluated in training, then measured by the gate (once only, were they found in the cache)
    assert sum(n >= 2 for n in analysed.values()) >= 100
