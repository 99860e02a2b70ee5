"""The keras-dynunet command line."""

import json
import subprocess
import sys

from keras_dynunet.cli import main


def test_encoders_listing(capsys):
    assert main(["encoders", "resnet3*"]) == 0
    out = capsys.readouterr().out
    assert "resnet34" in out and "P5:32:512" in out and "resnet50" not in out
    assert main(["encoders", "nope*"]) == 1
    assert "no encoder matches" in capsys.readouterr().err


def test_demo_segments_the_real_image(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "demo.json").read_text())
    assert (tmp_path / "overlay.png").stat().st_size > 10_000
    assert result["true_instances"] == 125
    assert 100 <= result["instances"] <= 150
    assert result["heldout_dsb_score"] >= 0.55
    out = capsys.readouterr().out
    assert "nuclei found (125 labelled)" in out and "held-out quarter" in out


def test_predict_writes_labels_and_overlays(tmp_path, capsys):
    import numpy as np
    import tifffile

    from keras_dynunet.instances import load_dsb_example

    raw, _ = load_dsb_example()
    tifffile.imwrite(tmp_path / "cells.tif", raw[:200, :300])
    assert main(["predict", "nuclei-lite0-dsb2018", str(tmp_path / "cells.tif"),
                 "--out", str(tmp_path / "out")]) == 0  # fmt: skip
    import skimage.io

    labels = skimage.io.imread(tmp_path / "out" / "cells_labels.png")
    assert labels.shape == (200, 300) and labels.max() > 20
    assert (tmp_path / "out" / "cells_overlay.png").exists()
    assert "instances)" in capsys.readouterr().out
    assert main(["predict", "nuclei-lite0-dsb2018", str(tmp_path / "nope.png")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert np.unique(labels).size - 1 == labels.max()


def test_console_help_and_errors():
    run = subprocess.run(
        [sys.executable, "-m", "keras_dynunet.cli", "demo", "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0 and "Offline demo" in run.stdout
    run = subprocess.run(
        [sys.executable, "-m", "keras_dynunet.cli", "predict", "no-such-model", "x.png"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("error: 'no-such-model' is not")
