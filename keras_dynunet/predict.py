"""Predict on image files with a checkpoint: masks or instance labels, plus PNG overlays.

A checkpoint whose classes are ``["interior", "border"]`` is an instance
model: its output is split by watershed into instance labels (16-bit PNG) and
an outline overlay. Any other checkpoint is semantic: one sigmoid channel is
thresholded at 0.5, several channels take the arg-max; the mask PNG and a
tinted overlay are written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INSTANCE_CLASSES = ["interior", "border"]


@dataclass(frozen=True)
class Prediction:
    """What was written for one input image.

    Attributes:
        image: Input path.
        mask: Path of the label or mask PNG.
        overlay: Path of the overlay PNG.
        instances: Number of instances (instance models), else ``None``.
    """

    image: str
    mask: str
    overlay: str
    instances: int | None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PNG, JPEG, BMP or TIFF image as an array (no conversion).

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a readable image (the message names it).

    >>> import tempfile
    >>> read_image(Path(tempfile.mkdtemp()) / "missing.png")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: Image file '...missing.png' does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image file {str(path)!r} does not exist.")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        import skimage.io

        return skimage.io.imread(path)
    except Exception as error:
        raise ValueError(
            f"Could not read image {str(path)!r} ({type(error).__name__}: {error}); pass a "
            "PNG, JPEG, BMP or TIFF file."
        ) from None


def predict_files(
    model, images: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
    *, tile: int = 512, progress: bool = True,
) -> list[Prediction]:  # fmt: skip
    """Predict every image file and write ``<stem>_labels.png``/``_mask.png`` and ``_overlay.png``.

    Args:
        model: A model from :func:`keras_dynunet.from_pretrained` (it carries
            ``checkpoint_config`` with preprocessing and class names).
        images: Image paths.
        out_dir: Output folder.
        tile: Images with a side larger than this are predicted in tiles.
        progress: Show a progress bar.

    >>> import tempfile, keras_dynunet as kd
    >>> from keras_dynunet.overlay import save_png
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = save_png(folder / "a.png", np.zeros((40, 40, 3)))
    >>> model = kd.from_pretrained("nuclei-lite0-dsb2018")
    >>> [p.instances for p in predict_files(model, [folder / "a.png"], folder, progress=False)]
    [0]
    """
    from tqdm.auto import tqdm

    from keras_dynunet.dataset import normalize_image
    from keras_dynunet.instances import instances_from_predictions
    from keras_dynunet.overlay import mask_overlay, outline_overlay, save_png
    from keras_dynunet.segment import predict_probabilities

    config = getattr(model, "checkpoint_config", {}) or {}
    preprocessing = config.get("preprocessing", "none")
    instance_model = list(config.get("class_names", [])) == INSTANCE_CLASSES
    out = Path(out_dir)
    results = []
    for path in tqdm(list(images), desc="predict", unit="image", disable=not progress):
        raw = read_image(path)
        shown = normalize_image(raw)
        prob = predict_probabilities(model, raw, preprocessing, tile=tile)
        stem = Path(path).stem
        if instance_model:
            labels = instances_from_predictions(prob[..., 0], prob[..., 1])
            mask = save_png(out / f"{stem}_labels.png", labels.astype(np.uint16))
            overlay = save_png(out / f"{stem}_overlay.png", outline_overlay(shown, labels))
            count: int | None = int(labels.max())
        else:
            classes = prob[..., 0] > 0.5 if prob.shape[-1] == 1 else prob.argmax(-1)
            mask = save_png(out / f"{stem}_mask.png", classes.astype(np.uint8))
            overlay = save_png(out / f"{stem}_overlay.png", mask_overlay(shown, classes > 0))
            count = None
        results.append(Prediction(str(path), mask, overlay, count))
    return results
