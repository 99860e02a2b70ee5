"""Property-based tests: generated decoders over random encoders, weight maps, DSB score.

Target-channel sums, DSB symmetry (swap true/pred) and self-relabelling are covered by
``tests/test_instances_targets.py`` and ``tests/test_instances_dsb_metric.py``; this file
adds what those do not.
"""

from __future__ import annotations

import keras
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import keras_dynunet as kd
from keras_dynunet.instances import class_balance_weights, dsb_score, unet_weight_map

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def encoders(draw: st.DrawFn) -> tuple[list[tuple[int, int, str]], int]:
    """Stages ``(stride, width, branch)`` with a total stride of 2..32, and input channels."""
    stages = draw(
        st.lists(
            st.tuples(
                st.sampled_from([1, 2, 4]),
                st.integers(2, 12),
                st.sampled_from(["none", "add", "concat"]),
            ),
            min_size=1,
            max_size=6,
        ).filter(lambda s: 2 <= int(np.prod([t[0] for t in s])) <= 32)
    )
    return stages, draw(st.sampled_from([1, 3]))


def _build_encoder(stages: list[tuple[int, int, str]], channels: int) -> keras.Model:
    inputs = keras.Input((None, None, channels))
    x = inputs
    for i, (stride, width, branch) in enumerate(stages):
        y = keras.layers.Conv2D(width, 3, strides=stride, padding="same", name=f"conv{i}")(x)
        if branch == "add":
            z = keras.layers.Conv2D(width, 1, name=f"side{i}")(y)
            y = keras.layers.Add(name=f"add{i}")([y, z])
        elif branch == "concat":
            z = keras.layers.Conv2D(2, 1, name=f"side{i}")(y)
            y = keras.layers.Concatenate(name=f"cat{i}")([y, z])
        x = keras.layers.Activation("relu", name=f"relu{i}")(y)
    return keras.Model(inputs, x, name="random_encoder")


@SETTINGS
@given(
    encoder=encoders(),
    classes=st.integers(1, 4),
    static=st.booleans(),
    extra=st.tuples(st.integers(0, 40), st.integers(0, 40)),
)
def test_decoder_output_matches_input_for_random_encoders(
    encoder: tuple[list[tuple[int, int, str]], int],
    classes: int,
    static: bool,
    extra: tuple[int, int],
) -> None:
    stages, channels = encoder
    total = int(np.prod([s for s, _, _ in stages]))
    height, width = total + extra[0], total + extra[1]
    shape = (height, width, channels) if static else (None, None, channels)
    model = kd.DynUNet(
        _build_encoder(stages, channels),
        classes,
        input_shape=shape,
        decoder_channels=None,
        blocks_per_stage=1,
    )
    assert model.output_shape == (None, *shape[:2], classes)
    assert model.taps[-1].stride == total
    x = np.random.default_rng(0).uniform(size=(1, height, width, channels)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (1, height, width, classes)
    assert np.isfinite(y).all()


label_images = hnp.arrays(
    np.int32, st.tuples(st.integers(4, 24), st.integers(4, 24)), elements=st.integers(0, 5)
)


@SETTINGS
@given(labels=label_images, w0=st.floats(0.0, 20.0), sigma=st.floats(0.5, 8.0))
def test_weight_map_is_at_least_the_class_balance_floor(
    labels: np.ndarray, w0: float, sigma: float
) -> None:
    floor = class_balance_weights(labels)
    weights = unet_weight_map(labels, w0=w0, sigma=sigma)
    assert weights.shape == labels.shape
    assert np.isfinite(weights).all()
    assert (weights >= floor - 1e-6).all()
    assert (weights <= floor + w0 + 1e-6).all()  # separation term is at most w0
    foreground = labels > 0
    np.testing.assert_allclose(weights[foreground], floor[foreground], rtol=1e-6)


@SETTINGS
@given(true=label_images, data=st.data())
def test_dsb_score_invariant_under_relabelling_either_side(
    true: np.ndarray, data: st.DataObject
) -> None:
    pred = data.draw(hnp.arrays(np.int32, true.shape, elements=st.integers(0, 5)))
    score = dsb_score(true, pred)

    def relabel(labels: np.ndarray) -> np.ndarray:
        ids = data.draw(st.lists(st.integers(1, 2**31 - 1), min_size=5, max_size=5, unique=True))
        return np.array([0, *ids], dtype=np.int64)[labels]

    other = dsb_score(relabel(true), relabel(pred))
    assert other.score == score.score
    np.testing.assert_array_equal(other.tp, score.tp)
    np.testing.assert_array_equal(other.fp, score.fp)
    np.testing.assert_array_equal(other.fn, score.fn)
