"""The offline demo: train a U-Net on synthetic nuclei and show what it learned.

No network and no pretrained weights are needed: a registry encoder is
trained briefly on generated nuclei images (touching and overlapping blobs)
to predict their foreground mask, scored with the Dice coefficient on
held-out generated images, and a PNG shows input, target and prediction.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from keras_dynunet.model import build_unet
from keras_dynunet.preprocessing import preprocess_input
from keras_dynunet.registry import get_encoder_spec


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured.

    Attributes:
        encoder: Registry encoder used.
        dice_before: Mean Dice on the held-out images before training.
        dice_after: Mean Dice on the held-out images after training.
        loss_first: Training loss of the first epoch.
        loss_last: Training loss of the last epoch.
        png: Path of the input/target/prediction figure.
    """

    encoder: str
    dice_before: float
    dice_after: float
    loss_first: float
    loss_last: float
    png: str


def dice_score(target: np.ndarray, prediction: np.ndarray) -> float:
    """Dice coefficient of two binary masks (1.0 when both are empty).

    >>> a = np.array([[1, 1], [0, 0]], bool)
    >>> dice_score(a, np.array([[1, 0], [0, 0]], bool))
    0.6666666666666666
    """
    target, prediction = np.asarray(target, bool), np.asarray(prediction, bool)
    total = target.sum() + prediction.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(target, prediction).sum() / total)


def save_panel(path: str | os.PathLike[str], rows: list[list[np.ndarray]]) -> str:
    """Save a grid of images (each ``(H, W)`` or ``(H, W, 3)`` in ``[0, 1]``) as a PNG.

    The file is written to a temporary name and renamed, so it is never half-written.

    >>> import tempfile
    >>> p = save_panel(Path(tempfile.mkdtemp()) / "p.png", [[np.zeros((4, 4)), np.ones((4, 4))]])
    >>> Path(p).stat().st_size > 0
    True
    """

    def rgb(image: np.ndarray) -> np.ndarray:
        image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
        return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image

    gap = 4
    lines = []
    for row in rows:
        tiles = [rgb(tile) for tile in row]
        spacer = np.ones((tiles[0].shape[0], gap, 3), np.float32)
        lines.append(np.concatenate([t for tile in tiles for t in (tile, spacer)][:-1], axis=1))
    spacer = np.ones((gap, lines[0].shape[1], 3), np.float32)
    grid = np.concatenate([t for line in lines for t in (line, spacer)][:-1], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    keras.utils.save_img(tmp, (grid * 255).astype(np.uint8), scale=False)
    os.replace(tmp, path)
    return str(path)


def run_demo(
    out_dir: str | os.PathLike[str] = "demo_output",
    encoder: str = "efficientnet-lite0",
    size: int = 128,
    train_images: int = 96,
    epochs: int = 6,
    seed: int = 0,
    verbose: int = 1,
) -> DemoResult:
    """Train a U-Net on synthetic nuclei and write ``demo.png`` and ``demo.json``.

    Args:
        out_dir: Output folder.
        encoder: Registry encoder name.
        size: Image side in pixels.
        train_images: Number of generated training images.
        epochs: Training epochs.
        seed: Seed of the generated data and of Keras.
        verbose: Keras progress-bar verbosity.

    Returns:
        The measured :class:`DemoResult`.

    >>> import tempfile
    >>> r = run_demo(tempfile.mkdtemp(), "resnet18", size=64, train_images=8, epochs=1, verbose=0)
    >>> 0.0 <= r.dice_after <= 1.0
    True
    """
    from keras_dynunet.instances.synthetic import synthetic_dataset

    keras.utils.set_random_seed(seed)
    mode = get_encoder_spec(encoder).preprocessing
    images, labels = synthetic_dataset(train_images + 4, (size, size), seed=seed)
    x = np.asarray(preprocess_input(images * 255.0, mode))
    y = (labels > 0).astype(np.float32)[..., None]
    x_train, y_train, x_test, y_test = x[4:], y[4:], x[:4], y[:4]

    model = build_unet(encoder, classes=1, activation="sigmoid")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy())

    def mean_dice() -> tuple[float, np.ndarray]:
        prob = model.predict(x_test, verbose=0)
        scores = [
            dice_score(t[..., 0] > 0.5, p[..., 0] > 0.5) for t, p in zip(y_test, prob, strict=True)
        ]
        return float(np.mean(scores)), prob

    before, _ = mean_dice()
    history = model.fit(x_train, y_train, batch_size=8, epochs=epochs, verbose=verbose)
    after, prob = mean_dice()
    out = Path(out_dir)
    rows = [[images[i], y_test[i, ..., 0], prob[i, ..., 0]] for i in range(2)]
    png = save_panel(out / "demo.png", rows)
    losses = history.history["loss"]
    result = DemoResult(encoder, before, after, float(losses[0]), float(losses[-1]), png)
    tmp = out / ".demo.json.tmp"
    tmp.write_text(json.dumps(asdict(result), indent=2))
    os.replace(tmp, out / "demo.json")
    return result
