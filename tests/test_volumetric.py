"""Taps and the decoder generator are not tied to 2-D: a Conv3D encoder works unchanged."""

import keras
import numpy as np

from keras_dynunet.decoders import unet_decoder
from keras_dynunet.discover import discover_taps


def test_conv3d_encoder_taps_and_decoder():
    inputs = keras.Input((None, None, None, 1))
    x = keras.layers.Conv3D(4, 3, padding="same", name="full")(inputs)
    x = keras.layers.Conv3D(8, 3, strides=2, padding="same", name="down2")(x)
    x = keras.layers.Conv3D(16, 3, strides=2, padding="same", name="down4")(x)
    encoder = keras.Model(inputs, x)
    taps = discover_taps(encoder, probe_size=32)
    assert [(t.key, t.layer, t.channels) for t in taps] == [
        ("P0", "full", 4),
        ("P1", "down2", 8),
        ("P2", "down4", 16),
    ]
    features = {t.key: encoder.get_layer(t.layer).output for t in taps}
    decoded = unet_decoder(features, taps, decoder_channels=(8, 4), spatial_dims=3)
    head = keras.layers.Conv3D(2, 1)(decoded)
    model = keras.Model(inputs, head)
    out = model.predict(np.zeros((1, 8, 12, 16, 1), "float32"), verbose=0)
    assert out.shape == (1, 8, 12, 16, 2)
