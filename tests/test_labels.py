import pytest

from reviewops.data.labels import NEGATIVE, POSITIVE, LabelPolicy
from reviewops.errors import InputError


def test_nsmc_policy_by_default():
    p = LabelPolicy()
    assert [p.from_rating(r) for r in range(1, 11)] == [0, 0, 0, 0, None, None, None, None, 1, 1]


def test_configurable_policy():
    p = LabelPolicy(negative_max=3, positive_min=8)
    assert p.from_rating(4) is None and p.from_rating(3) == NEGATIVE and p.from_rating(8) == POSITIVE
    assert p.version != LabelPolicy().version


@pytest.mark.parametrize("bad", [0, 11, -1, 5.5, "7", True])
def test_unknown_rating_is_an_error(bad):
    with pytest.raises(InputError, match="unknown rating"):
        LabelPolicy().from_rating(bad)


def test_cgv_egg():
    assert LabelPolicy.from_egg(2) == POSITIVE
    assert LabelPolicy.from_egg("1") == NEGATIVE
    assert LabelPolicy.from_egg(0) is None and LabelPolicy.from_egg(None) is None and LabelPolicy.from_egg("x") is None


def test_overlapping_policy_is_refused():
    with pytest.raises(InputError):
        LabelPolicy(negative_max=6, positive_min=5)


def test_settings_drive_the_policy(monkeypatch, home):
    from reviewops.config import Settings

    monkeypatch.setenv("REVIEWOPS_LABEL_NEGATIVE_MAX", "2")
    monkeypatch.setenv("REVIEWOPS_LABEL_POSITIVE_MIN", "10")
    p = LabelPolicy.from_settings(Settings())
    assert p.from_rating(3) is None and p.from_rating(2) == NEGATIVE and p.from_rating(9) is None
