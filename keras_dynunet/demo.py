"""The offline demo: segment the real DSB 2018 nuclei image with the embedded checkpoint.

The checkpoint ``nuclei-lite0-dsb2018`` ships inside the package (a U-Net
with an EfficientNet-Lite0 ImageNet encoder, trained by
``examples/dsb2018/train.py`` on the left three quarters of the image plus
synthetic nuclei). The demo segments the whole image, splits touching nuclei
by watershed, reports the instance count and the DSB 2018 score against the
real labels (whole image, and the held-out right quarter never seen in
training, predicted on its own), and writes an overlay PNG: predicted
outlines | ground-truth outlines.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

EMBEDDED_CHECKPOINT = "nuclei-lite0-dsb2018"


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured.

    Attributes:
        checkpoint: Checkpoint directory used.
        instances: Number of predicted nuclei on the whole image.
        true_instances: Number of labelled nuclei.
        dsb_score: DSB 2018 score on the whole image (3/4 of it seen in training).
        heldout_dsb_score: DSB 2018 score on the held-out quarter alone.
        overlay: Path of the overlay PNG.
    """

    checkpoint: str
    instances: int
    true_instances: int
    dsb_score: float
    heldout_dsb_score: float
    overlay: str


def embedded_checkpoint() -> Path:
    """Directory of the checkpoint shipped inside the package.

    >>> embedded_checkpoint().name
    'nuclei-lite0-dsb2018'
    """
    return Path(__file__).parent / "assets" / EMBEDDED_CHECKPOINT


def run_demo(
    out_dir: str | os.PathLike[str] = "demo_output", checkpoint: str | None = None
) -> DemoResult:
    """Segment the real DSB image, score it, write ``overlay.png`` and ``demo.json``.

    Args:
        out_dir: Output folder.
        checkpoint: A checkpoint directory; default the embedded one.

    Returns:
        The measured :class:`DemoResult`.

    >>> import tempfile
    >>> r = run_demo(tempfile.mkdtemp())
    >>> r.true_instances, r.instances > 100
    (125, True)
    """
    from keras_dynunet.checkpoint import load_pretrained, read_config
    from keras_dynunet.dataset import normalize_image
    from keras_dynunet.instances import dsb_split, load_dsb_example
    from keras_dynunet.overlay import outline_overlay, save_png
    from keras_dynunet.segment import evaluate_instances

    path = Path(checkpoint) if checkpoint else embedded_checkpoint()
    model = load_pretrained(path)
    preprocessing = read_config(path)["preprocessing"]
    raw, labels = load_dsb_example()
    image = normalize_image(raw)  # the normalisation used in training
    whole = evaluate_instances(model, image, labels, preprocessing)
    _, (hold_image, hold_labels) = dsb_split(image, labels, holdout=0.25)
    heldout = evaluate_instances(model, hold_image, hold_labels, preprocessing)

    out = Path(out_dir)
    gap = np.ones((image.shape[0], 6, 3), np.float32)
    panel = np.concatenate(
        [
            outline_overlay(image, whole["labels"]),
            gap,
            outline_overlay(image, labels, (0.2, 1, 0.4)),
        ],
        axis=1,
    )
    overlay = save_png(out / "overlay.png", panel)
    result = DemoResult(
        checkpoint=str(path),
        instances=whole["predicted_instances"],
        true_instances=whole["true_instances"],
        dsb_score=whole["dsb_score"],
        heldout_dsb_score=heldout["dsb_score"],
        overlay=overlay,
    )
    tmp = out / ".demo.json.tmp"
    tmp.write_text(json.dumps(asdict(result), indent=2))
    os.replace(tmp, out / "demo.json")
    return result
