"""Tap and EncoderSpec validation."""

import pytest

from keras_dynunet.taps import EncoderSpec, Tap, tap_key, validate_taps


def test_tap_key_matches_stride():
    assert [tap_key(2**n) for n in range(6)] == ["P0", "P1", "P2", "P3", "P4", "P5"]
    for bad in (0, 3, 6, -2, 2.0):
        with pytest.raises(ValueError, match="power of two"):
            tap_key(bad)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("X1", "a", 2, 8), "P0'..'P9"),
        (("P1", "", 2, 8), "non-empty layer"),
        (("P2", "a", 2, 8), "key P2 means stride 4, but stride is 2"),
        (("P1", "a", 2, 0), "channels must be a positive"),
        (("P1", "a", 3, 8), "power of two"),
    ],
)
def test_tap_rejects_inconsistent_declarations(args, message):
    with pytest.raises(ValueError, match=message):
        Tap(*args)


def test_tap_is_frozen_and_round_trips():
    tap = Tap("P3", "layer2", 8, 128)
    with pytest.raises(AttributeError):
        tap.stride = 4
    assert Tap.from_dict(tap.to_dict()) == tap


def test_validate_taps_order_and_uniqueness():
    a, b = Tap("P1", "a", 2, 8), Tap("P2", "b", 4, 16)
    assert validate_taps((a, b), "x") == (a, b)
    with pytest.raises(ValueError, match="increasing order"):
        validate_taps((b, a), "x")
    with pytest.raises(ValueError, match="same layer"):
        validate_taps((a, Tap("P2", "a", 4, 8)), "x")
    with pytest.raises(ValueError, match="no taps"):
        validate_taps((), "x")


def test_encoder_spec_validation():
    tap = Tap("P1", "a", 2, 8)
    spec = EncoderSpec("ok-name", lambda shape: None, (tap,), preprocessing="imagenet")
    assert spec.max_stride == 2 and spec.tap("P1") == tap
    with pytest.raises(KeyError, match="has no tap 'P4'"):
        spec.tap("P4")
    with pytest.raises(ValueError, match="lowercase"):
        EncoderSpec("Bad Name", lambda shape: None, (tap,))
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        EncoderSpec("x", lambda shape: None, (tap,), preprocessing="zscore")
    with pytest.raises(TypeError, match="builder must be callable"):
        EncoderSpec("x", None, (tap,))
    with pytest.raises(TypeError):
        spec.weight_sources["new"] = "url"  # read-only mapping
