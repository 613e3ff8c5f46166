"""Drift and agreement checks of model_monitor, on real Korean reviews from the bundled sample."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from reviewops.config import Settings
from reviewops.errors import InputError
from reviewops.monitor import SCORE_EDGES, Thresholds, drift_report, finding_ko, psi
from reviewops.notify.slack import Notifier, drift_alert
from tests.conftest import sample_records
from tests.test_slack import TOKEN, FakeSlack

T = Thresholds()


@pytest.fixture(scope="module")
def records() -> tuple[list[dict], list[dict]]:
    """6,000 real reviews split by position (interleaved, so both halves cover the same period):
    4,000 reference reviews and 2,000 disjoint recent ones."""
    recs = sample_records(6000)
    return [r for i, r in enumerate(recs) if i % 3], [r for i, r in enumerate(recs) if i % 3 == 0]


def champion_scores(recs: list[dict], rng: np.random.Generator) -> np.ndarray:
    """A decent stand-in champion: confident P(positive) that follows the reviewer's rating."""
    positive = np.array([r["rating"] >= 6 for r in recs])
    return np.where(positive, rng.beta(4, 1, len(recs)), rng.beta(1, 4, len(recs)))


def own_label(rating: int) -> int | None:
    """The reviewer's own label, as the platform derives it: 1-4 negative, 9-10 positive, else none."""
    return 1 if rating >= 9 else 0 if rating <= 4 else None


def reference_frame(recs: list[dict], seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"text": [r["text"] for r in recs],
                         "score": champion_scores(recs, np.random.default_rng(seed))})


def current_frame(recs: list[dict], seed: int = 1, scores: np.ndarray | None = None) -> pd.DataFrame:
    if scores is None:
        scores = champion_scores(recs, np.random.default_rng(seed))
    return pd.DataFrame({"text": [r["text"] for r in recs], "score": scores,
                         "label": [own_label(r["rating"]) for r in recs]})


def check(report: dict, name: str) -> dict:
    (c,) = [c for c in report["checks"] if c["name"] == name]
    return c


def assert_plain_json(obj) -> None:
    """Only plain Python types all the way down (no numpy scalars), and valid strict JSON."""
    json.dumps(obj, allow_nan=False)

    def walk(o) -> None:
        assert type(o) in (dict, list, str, int, float, bool, type(None)), f"{type(o)}: {o!r}"
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(obj)


# --- psi ---------------------------------------------------------------------------------------------------


def test_psi_of_identical_samples_is_zero_and_a_hand_computed_case():
    x = np.random.default_rng(3).beta(0.6, 0.4, 1000)
    assert psi(x, x, SCORE_EDGES) == pytest.approx(0.0, abs=1e-12)
    # Reference 50/50 over two bins, current 25/75: (0.25-0.5)·ln(0.5) + (0.75-0.5)·ln(1.5) = 0.25·ln 3.
    ref, cur = np.array([0.1, 0.2, 0.7, 0.8]), np.array([0.3, 0.6, 0.9, 1.0])
    assert psi(ref, cur, np.array([0.0, 0.5, 1.0])) == pytest.approx(0.25 * math.log(3))
    # Values outside the edges land in the outer bins; NaNs are ignored.
    assert psi(ref, np.array([-5.0, 0.6, 0.9, 7.0, np.nan]), np.array([0.0, 0.5, 1.0])) == pytest.approx(
        0.25 * math.log(3))


def test_psi_survives_empty_bins_and_refuses_empty_samples():
    # Everything moved to the other bin: the epsilon keeps PSI finite, 2·(1-ε)·ln(1/ε).
    value = psi(np.zeros(50), np.ones(50), np.array([-np.inf, 0.5, np.inf]))
    assert math.isfinite(value) and value == pytest.approx(2 * (1 - 1e-4) * math.log(1e4))
    with pytest.raises(ValueError, match="current sample is empty"):
        psi(np.ones(3), np.array([]), SCORE_EDGES)
    with pytest.raises(ValueError, match="ascending"):
        psi(np.ones(3), np.ones(3), np.array([1.0, 0.0]))


# --- drift_report --------------------------------------------------------------------------------------


def test_same_distribution_is_ok(records):
    ref_recs, cur_recs = records
    report = drift_report(reference_frame(ref_recs), current_frame(cur_recs), T)
    assert report["status"] == "ok" and report["alerts"] == []
    assert report["n_reference"] == 4000 and report["n_current"] == 2000
    assert [c["name"] for c in report["checks"]] == [
        "length_psi", "unknown_token_rate", "score_psi", "positive_share", "mean_confidence", "agreement"]
    assert not any(c["crossed"] for c in report["checks"])
    assert check(report, "length_psi")["value"] < 0.05 and check(report, "score_psi")["value"] < 0.05
    unknown = check(report, "unknown_token_rate")
    # Korean word forms are sparse: most tokens are unseen in either half, but equally so.
    assert 0.3 < unknown["reference"] < 0.9 and abs(unknown["value"] - unknown["reference"]) < 0.03
    agreement = check(report, "agreement")
    labelled = sum(own_label(r["rating"]) is not None for r in cur_recs)
    assert agreement["n_labelled"] == labelled and sum(agreement["confusion"].values()) == labelled
    assert agreement["value"] > 0.9
    assert_plain_json(report)


def test_long_reviews_drift_in_length(records):
    ref_recs, cur_recs = records
    long = [r for r in cur_recs if len(r["text"] or "") >= 30]
    assert len(long) > 100
    report = drift_report(reference_frame(ref_recs), current_frame(long), T)
    assert report["status"] == "drift" and report["alerts"] == ["length_psi"]
    length = check(report, "length_psi")
    assert length["value"] > 1.0 and length["median_chars"] > length["reference_median_chars"]
    assert "exceeds" in length["detail"]


def test_unseen_tokens_raise_the_unknown_token_rate(records):
    ref_recs, cur_recs = records
    rng = np.random.default_rng(5)
    words = ["the", "movie", "was", "really", "boring", "and", "plot", "made", "no", "sense", "but", "actors",
             "were", "great", "overall"]
    current = current_frame(cur_recs[:300])
    current["text"] = [" ".join(rng.choice(words, rng.integers(3, 9))) for _ in range(len(current))]
    report = drift_report(reference_frame(ref_recs), current, T)
    unknown = check(report, "unknown_token_rate")
    assert unknown["crossed"] and "unknown_token_rate" in report["alerts"]
    assert unknown["value"] > 0.95 and unknown["value"] - unknown["reference"] > 0.3
    # Same reviews in Korean: no alarm.
    assert not check(drift_report(reference_frame(ref_recs), current_frame(cur_recs[:300]), T),
                     "unknown_token_rate")["crossed"]


def test_scores_shifted_towards_positive(records):
    ref_recs, cur_recs = records
    scores = champion_scores(cur_recs, np.random.default_rng(1)) ** 0.2
    report = drift_report(reference_frame(ref_recs), current_frame(cur_recs, scores=scores), T)
    assert report["status"] == "drift"
    assert {"score_psi", "positive_share"} <= set(report["alerts"])
    share = check(report, "positive_share")
    assert share["value"] - share["reference"] > 0.15 and share["value"] == pytest.approx(np.mean(scores >= 0.5))
    assert "length_psi" not in report["alerts"] and "unknown_token_rate" not in report["alerts"]


def test_hesitant_scores_lower_the_confidence(records):
    ref_recs, cur_recs = records
    scores = 0.5 + (champion_scores(cur_recs, np.random.default_rng(1)) - 0.5) * 0.5  # same side, less sure
    report = drift_report(reference_frame(ref_recs), current_frame(cur_recs, scores=scores), T)
    confidence = check(report, "mean_confidence")
    assert confidence["crossed"] and confidence["reference"] - confidence["value"] > 0.1
    assert not check(report, "positive_share")["crossed"]


def test_confident_predictions_that_disagree_with_reviewers(records):
    ref_recs, _ = records
    cur_recs = records[1][:200]
    labels = [own_label(r["rating"]) for r in cur_recs]
    # Confident everywhere (0.9 / 0.1), right by default; wrong on the first 30 positive and negative labels
    # (agreement about 60% of about 150 labels: clearly below 75%, binomial p far under 0.01).
    scores = np.array([0.9 if r["rating"] >= 6 else 0.1 for r in cur_recs])
    pos = [i for i, lab in enumerate(labels) if lab == 1]
    neg = [i for i, lab in enumerate(labels) if lab == 0]
    scores[pos[:30]] = 0.1
    scores[neg[:30]] = 0.9
    current = current_frame(cur_recs, scores=scores)
    current.loc[current["label"].isna(), "label"] = np.nan  # None and NaN both mean unlabelled
    report = drift_report(reference_frame(ref_recs), current, T)
    agreement = check(report, "agreement")
    n = len(pos) + len(neg)
    assert agreement["n_labelled"] == n
    assert agreement["confusion"] == {"tp": len(pos) - 30, "tn": len(neg) - 30, "fp": 30, "fn": 30}
    assert agreement["value"] == pytest.approx((n - 60) / n) and agreement["value"] < 0.75
    assert agreement["verdict"] == "crossed" and agreement["p_value"] < T.significance
    assert agreement["crossed"] and "agreement" in report["alerts"] and report["status"] == "drift"
    assert not check(report, "mean_confidence")["crossed"]


def test_too_few_labels_give_no_agreement_verdict(records):
    ref_recs, cur_recs = records
    current = current_frame(cur_recs[:100])
    current["label"] = [None] * 90 + [1 - int(s >= 0.5) for s in current["score"][90:]]  # 10 labels, all wrong
    agreement = check(drift_report(reference_frame(ref_recs), current, T), "agreement")
    assert agreement["value"] is None and not agreement["crossed"]
    assert agreement["n_labelled"] == 10 and agreement["confusion"]["tp"] + agreement["confusion"]["tn"] == 0


def test_fewer_than_min_reviews_is_insufficient_data(records):
    ref_recs, cur_recs = records
    few = cur_recs[:20]
    scores = champion_scores(few, np.random.default_rng(1)) ** 0.2
    report = drift_report(reference_frame(ref_recs), current_frame(few, scores=scores), T)
    assert report["status"] == "insufficient_data" and report["alerts"] == []
    assert not any(c["crossed"] for c in report["checks"])
    assert check(report, "score_psi")["value"] > T.psi  # computed, just not judged
    assert_plain_json(report)

    empty = drift_report(reference_frame(ref_recs), current_frame([]), T)
    assert empty["status"] == "insufficient_data" and empty["n_current"] == 0 and empty["alerts"] == []
    assert check(empty, "length_psi")["value"] is None and check(empty, "positive_share")["reference"] > 0.5
    assert_plain_json(empty)


def test_missing_texts_count_as_empty(records):
    ref_recs, cur_recs = records
    reference = reference_frame(ref_recs[:500])
    reference.loc[:9, "text"] = None
    current = current_frame(cur_recs[:100])
    current.loc[:59, "text"] = [None, np.nan] * 30
    report = drift_report(reference, current, T)
    length = check(report, "length_psi")
    assert length["median_chars"] == 0.0 and length["crossed"]
    assert_plain_json(report)


def test_bad_input_is_refused(records):
    ref_recs, cur_recs = records
    current = current_frame(cur_recs[:50])
    with pytest.raises(InputError, match="reference sample is empty"):
        drift_report(reference_frame([]), current, T)
    with pytest.raises(InputError, match="label"):
        drift_report(reference_frame(ref_recs[:50]), current.drop(columns="label"), T)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        drift_report(reference_frame(ref_recs[:50]), current.assign(score=current["score"] * 10), T)
    with pytest.raises(InputError, match="1, 0 or missing"):
        drift_report(reference_frame(ref_recs[:50]), current.assign(label=10), T)


def test_thresholds_from_settings(home, monkeypatch):
    assert Thresholds.from_settings(Settings()) == Thresholds()  # the defaults agree with config.py
    monkeypatch.setenv("REVIEWOPS_MONITOR_MIN_REVIEWS", "100")
    assert Thresholds().min_reviews == 100 and Thresholds().significance == 0.01
    monkeypatch.setenv("REVIEWOPS_DRIFT_PSI_THRESHOLD", "0.25")
    monkeypatch.setenv("REVIEWOPS_AGREEMENT_MIN", "0.8")
    monkeypatch.setenv("REVIEWOPS_DRIFT_SIGNIFICANCE", "0.05")
    t = Thresholds.from_settings(Settings())
    assert t == Thresholds(min_reviews=100, psi=0.25, agreement_min=0.8, significance=0.05)


# --- Slack ------------------------------------------------------------------------------------------------


def test_drift_alert_through_slack(home, monkeypatch, records):
    ref_recs, cur_recs = records
    long = [r for r in cur_recs if len(r["text"] or "") >= 30]
    report = drift_report(reference_frame(ref_recs), current_frame(long), T)
    fake = FakeSlack()
    try:
        monkeypatch.setenv("REVIEWOPS_SLACK_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("REVIEWOPS_SLACK_API_URL", f"{fake.url}/api/")
        text, blocks = drift_alert(report, "s3://reviewops/monitor/2024-05-01.json")
        assert Notifier(Settings()).send(text, blocks) is True
    finally:
        fake.close()
    (req,) = fake.requests
    assert req["path"] == "/api/chat.postMessage"
    body = req["body"]
    sent = body["blocks"] if isinstance(body["blocks"], list) else json.loads(body["blocks"])
    assert sent[0]["text"]["text"] == "Model monitor: drift" and "length_psi" in body["text"]
    fields = [f["text"] for b in sent for f in b.get("fields", [])]
    assert any(f.startswith("*length_psi*") for f in fields)
    assert f"{check(report, 'length_psi')['value']:.4f}" in json.dumps(sent)
    assert "unknown_token_rate" not in json.dumps(sent)  # only crossed checks are listed
    assert "s3://reviewops/monitor/2024-05-01.json" in json.dumps(sent)


def test_drift_alert_titles():
    agreement = {"name": "agreement", "value": 0.6, "reference": None, "threshold": 0.75, "crossed": True,
                 "detail": "Predictions agree with 60.0% of 130 reviewers' own labels.", "n_labelled": 130}
    text, blocks = drift_alert({"status": "drift", "n_reference": 4000, "n_current": 200, "checks": [agreement],
                                "alerts": ["agreement"]}, "https://minio.local/monitor/report.json")
    assert blocks[0]["text"]["text"] == "Model monitor: agreement below threshold" and "agreement" in text
    assert "<https://minio.local/monitor/report.json|Drift report>" in json.dumps(blocks)
    assert "0.6000" in json.dumps(blocks) and "130" in json.dumps(blocks)
    text, blocks = drift_alert({"status": "insufficient_data", "n_reference": 4000, "n_current": 3, "checks": [],
                                "alerts": []})
    assert blocks[0]["text"]["text"] == "Model monitor: not enough recent reviews" and "3 recent" in text


# --- sample size and significance ---------------------------------------------------------------------------


def test_small_samples_of_the_same_reviews_raise_no_drift(records):
    """Small random samples of the very same distribution: PSI alone crosses 0.2 by chance in most of
    them (the demo's day-one alarm from 79 reviews); past the threshold but not significant is no drift."""
    ref_recs, cur_recs = records
    reference = reference_frame(ref_recs)
    rng = np.random.default_rng(7)
    lenient = Thresholds(min_reviews=30)
    psi_alone = alarms = 0
    for trial in range(40):
        sample = [cur_recs[i] for i in rng.choice(len(cur_recs), 40, replace=False)]
        report = drift_report(reference, current_frame(sample, seed=trial), lenient)
        psi_alone += any(check(report, n)["value"] > lenient.psi for n in ("length_psi", "score_psi"))
        alarms += report["status"] == "drift"
        for c in report["checks"]:
            if c["verdict"] == "not_significant":
                assert not c["crossed"] and c["p_value"] >= lenient.significance
                assert "우연일 수 있어" in finding_ko(c) and f"p={c['p_value']:.3f}" in finding_ko(c)
    assert psi_alone >= 30 and alarms <= 4  # an alpha of 0.01 over six checks: a few percent at most


def test_too_few_reviews_say_so_in_korean(records):
    ref_recs, cur_recs = records
    few = cur_recs[:79]  # the demo's first day
    scores = champion_scores(few, np.random.default_rng(1)) ** 0.2  # even a real shift is not judged
    report = drift_report(reference_frame(ref_recs), current_frame(few, scores=scores), T)
    assert report["status"] == "insufficient_data" and report["alerts"] == []
    for c in report["checks"]:
        assert c["verdict"] == "too_few" and not c["crossed"]
        assert finding_ko(c).startswith("표본 부족:") and "최소 100건" in finding_ko(c)
    assert "최근 리뷰 79건" in finding_ko(check(report, "score_psi"))
    assert "평점이 있는 최근 리뷰" in finding_ko(check(report, "agreement"))


def test_findings_in_korean_carry_the_numbers(records):
    ref_recs, cur_recs = records
    long = [r for r in cur_recs if len(r["text"] or "") >= 30]
    report = drift_report(reference_frame(ref_recs), current_frame(long), T)
    length = check(report, "length_psi")
    text = finding_ko(length)
    assert length["verdict"] == "crossed" and length["p_value"] < 1e-6 and length["n"] == len(long)
    assert f"리뷰 길이 분포 변화 지수 {length['value']:.3f}" in text and f"{length['median_chars']:.0f}자" in text
    assert "기준을 벗어났고" in text and f"{len(long):,}건" in text and "(p<0.001)" in text
    share = finding_ko(check(report, "positive_share"))
    assert share.endswith("기준 이내입니다.") and "긍정 예측 비율" in share
    for c in report["checks"]:  # Korean sentences: no English words, only p (of p-value)
        assert not set(re.findall(r"[A-Za-z]+", finding_ko(c))) - {"p"}, finding_ko(c)
    # a report stored before checks had a verdict or a p-value
    old = {"name": "score_psi", "value": 0.31, "reference": 0.0, "threshold": 0.2, "crossed": True,
           "detail": "Score distribution PSI 0.310 exceeds the threshold 0.20."}
    assert finding_ko(old) == ("예측 점수 분포 변화 지수 0.310: 임계값 0.20 기준을 벗어났고, "
                               "우연으로 보기 어려운 차이입니다 (검정 없음).")
    assert finding_ko(old | {"crossed": False, "value": None}) == "비교할 데이터가 없습니다."


# --- the API's monitoring summary ----------------------------------------------------------------------------


def test_monitoring_summary_has_every_hour_and_latency_per_hour(db_url):
    """Hours without traffic are there as zeros (a time axis without false continuity); latency
    percentiles and errors per hour come from the answered requests in the store, on SQLite and PostgreSQL."""
    from datetime import datetime

    from reviewops.serving.metrics import PREDICT_ROUTE
    from reviewops.serving.monitoring import summary
    from reviewops.store import db
    from reviewops.store.models import ApiRequest, Prediction

    now = datetime(2026, 12, 6, 9, 40)
    rows = [(datetime(2026, 12, 6, 7, 5), 200, ms) for ms in range(1, 101)]  # 1..100 ms at 07h
    rows += [(datetime(2026, 12, 6, 9, 30), 200, 8.0), (datetime(2026, 12, 6, 9, 31), 503, 2.0),
             (datetime(2026, 12, 5, 9, 59), 200, 999.0)]  # the last one is before the 3-hour window
    settings = Settings()
    with db.sessions(settings)() as s:
        s.add_all(ApiRequest(route=PREDICT_ROUTE, status=st, latency_ms=ms, created_at=at) for at, st, ms in rows)
        s.add_all(Prediction(public_id=f"{i:032x}", text="좋아요", label=i % 2, score=0.9 if i % 2 else 0.2,
                             model_name="m", model_version="1", created_at=datetime(2026, 12, 6, 7, 10))
                  for i in range(3))
        s.commit()
        out = summary(settings, s, hours=3, now=now)
    assert [h["hour"] for h in out["traffic"]] == ["2026-12-06T07:00:00Z", "2026-12-06T08:00:00Z",
                                                  "2026-12-06T09:00:00Z"]
    assert [(h["requests"], h["predictions"], h["errors"]) for h in out["traffic"]] == [(100, 3, 0), (0, 0, 0),
                                                                                       (2, 0, 1)]
    seven, nine = out["latency"]
    assert seven["hour"] == "2026-12-06T07:00:00Z" and nine["hour"] == "2026-12-06T09:00:00Z"
    assert seven["p50"] == pytest.approx(50.5) and seven["p95"] == pytest.approx(95.05)
    assert seven["p99"] == pytest.approx(99.01) and nine["p50"] == pytest.approx(5.0)
    assert out["latency_ms"]["p99"] < 999 and out["prediction_mix"] == {"positive": 1, "negative": 2}

    # a busy hour: counts stay exact, percentiles come from a sample spread over the hour
    import reviewops.serving.monitoring as monitoring

    monitoring.LATENCY_SAMPLE, sample = 20, monitoring.LATENCY_SAMPLE
    try:
        with db.sessions(settings)() as s:
            sampled = summary(settings, s, hours=3, now=now)
    finally:
        monitoring.LATENCY_SAMPLE = sample
    assert sampled["traffic"] == out["traffic"]
    assert 25 < sampled["latency"][0]["p50"] < 75 and sampled["latency"][0]["p99"] > 80  # not the first 20 rows
