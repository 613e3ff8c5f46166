"""The behavioural set: its file is well formed and covers what issue 16 asks, and a model is scored on it
overall and per category."""

from __future__ import annotations

import pytest

from reviewops.errors import InputError
from reviewops.evaluate import behaviour


def test_the_bundled_set_covers_every_category_and_the_issues_examples():
    cases = behaviour.load_cases()
    assert 40 <= len(cases) <= 80
    by_text = {c.text: c for c in cases}
    assert len(by_text) == len(cases)  # no duplicates
    assert {c.category for c in cases} == set(behaviour.CATEGORIES)
    assert all(sum(c.category == cat for c in cases) >= 5 for cat in behaviour.CATEGORIES)
    assert (by_text["재미없지는 않았다"].label, by_text["재미없지는 않았다"].category) == (1, "double_negation")
    assert by_text["안 볼 이유가 없다"].label == 1
    sarcastic = by_text["두 시간 동안 잠만 잤습니다 ^^"]
    assert (sarcastic.label, sarcastic.category) == (0, "sarcasm")
    assert {c.label for c in cases} == {0, 1}


def test_scores_overall_and_per_category():
    cases = behaviour.load_cases()
    # a "model" that says positive for every text: right exactly on the positive cases
    result = behaviour.score(lambda texts: [0.9] * len(texts), cases)
    m = result.metrics()
    assert m["behaviour.accuracy"] == pytest.approx(sum(c.label for c in cases) / len(cases))
    assert m["behaviour.n"] == len(cases)
    assert m["behaviour.sarcasm.accuracy"] == 0.0  # every sarcastic case is negative
    for cat in behaviour.CATEGORIES:
        in_cat = [c for c in cases if c.category == cat]
        assert m[f"behaviour.{cat}.accuracy"] == pytest.approx(sum(c.label for c in in_cat) / len(in_cat))
    table = result.table()["cases"]
    assert len(table) == len(cases) and table[0]["label"] in {"긍정", "부정"}
    assert all(row["correct"] == (row["label"] == "긍정") for row in table)
    line = behaviour.summary_line(m)
    assert line.startswith(f"{m['behaviour.accuracy']:.0%} of {len(cases)} cases (sarcasm 0%")


def test_a_malformed_set_is_refused_with_its_line(tmp_path):
    bad = tmp_path / "cases.tsv"
    bad.write_text("text\tlabel\tcategory\n좋아요\t긍정\tnegation\n별로\t중립\tnegation\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"cases.tsv:3: .*'중립'"):
        behaviour.load_cases(bad)
    bad.write_text("text\tlabel\tcategory\n좋아요\t긍정\tirony\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"cases.tsv:2"):
        behaviour.load_cases(bad)
