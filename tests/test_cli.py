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


def test_demo_writes_png_and_json(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--encoder", "resnet18", "--size", "64",
                 "--images", "8", "--epochs", "1"]) == 0  # fmt: skip
    result = json.loads((tmp_path / "demo.json").read_text())
    assert (tmp_path / "demo.png").stat().st_size > 1000
    assert 0.0 <= result["dice_after"] <= 1.0
    assert "Dice on held-out synthetic nuclei" in capsys.readouterr().out


def test_console_help_and_errors():
    run = subprocess.run(
        [sys.executable, "-m", "keras_dynunet.cli", "demo", "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0 and "Offline demo" in run.stdout
    run = subprocess.run(
        [sys.executable, "-m", "keras_dynunet.cli", "demo", "--encoder", "resnet99"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("error: Unknown encoder 'resnet99'")
