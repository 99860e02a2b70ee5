"""Build and train a U-Net on your own functional encoder (taps discovered by stride).

Run: python examples/custom_encoder.py
"""

import keras
import numpy as np

import keras_dynunet as kd


def my_encoder() -> keras.Model:
    """A stem that jumps to stride 4, then strided convolutions."""
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(16, 7, strides=4, padding="same", activation="relu", name="stem")(
        inputs
    )
    for i, width in enumerate((32, 64, 128), start=1):
        x = keras.layers.Conv2D(
            width, 3, strides=2, padding="same", activation="relu", name=f"down{i}"
        )(x)
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    return keras.Model(inputs, x, name="my_encoder")


if __name__ == "__main__":
    encoder = my_encoder()
    print("discovered taps:", kd.discover_taps(encoder))
    model = kd.build_unet(encoder, classes=1, input_shape=(None, None, 1), activation="sigmoid")
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 96, 80, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    model.compile(optimizer="adam", loss="binary_crossentropy")
    history = model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    print("loss per epoch:", [round(v, 4) for v in history.history["loss"]])
