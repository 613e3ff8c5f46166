from reviewops.evaluate.gate import decide


def test_first_model_must_clear_the_floor():
    assert decide("accuracy", 0.80, None, 0.002, 0.75).promote
    d = decide("accuracy", 0.70, None, 0.002, 0.75)
    assert not d.promote and "below the floor" in d.reason


def test_challenger_must_beat_the_champion_by_the_margin():
    assert decide("accuracy", 0.8830, 0.8800, 0.002, 0.75).promote
    d = decide("accuracy", 0.8810, 0.8800, 0.002, 0.75)
    assert not d.promote and "less than the margin" in d.reason
    assert not decide("accuracy", 0.86, 0.88, 0.0, 0.75).promote
    assert decide("accuracy", 0.88, 0.88, 0.0, 0.75).promote  # margin 0: a tie is enough


def test_unscorable_champion_blocks_automatic_promotion():
    d = decide("accuracy", 0.95, None, 0.002, 0.75, champion_error="checksum mismatch")
    assert not d.promote and "checksum mismatch" in d.reason
