"""What ``--out`` and ``train`` say about weights: fresh initialisation, one weights file, a replaced classifier."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

FAST = ("timm:test_resnet", "--input-size", "3,32,32", "-t", "d")


def test_out_without_weights_says_they_are_fresh_and_writes_one_weights_file(cli, tmp_path: Path):
    out = tmp_path / "o"
    res = cli(*FAST, "--out", str(out), "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["weights"] == "initialised"
    notes = [line for line in res.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "freshly initialised" in notes[0] and "--pretrained" in notes[0]
    assert os.path.samefile(out / "weights.safetensors", out / "model.safetensors")  # one file, two names
    again = cli(*FAST, "--out", str(out), "--force")  # replacing keeps them one file
    assert again.exit_code == 0 and os.path.samefile(out / "weights.safetensors", out / "model.safetensors")


def test_out_with_a_checkpoint_says_nothing_about_fresh_weights(cli, tmp_path: Path):
    import timm
    import torch

    torch.save(timm.create_model("test_resnet").state_dict(), tmp_path / "w.pth")
    res = cli(*FAST, "--checkpoint", str(tmp_path / "w.pth"), "--out", str(tmp_path / "o"), "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["weights"] == "checkpoint" and "freshly initialised" not in res.stderr


def test_train_says_when_it_replaces_the_classifier(cli, tmp_path: Path):
    out = tmp_path / "o"
    assert cli(*FAST, "--out", str(out)).exit_code == 0
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        (tmp_path / "data" / "train" / name).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / "train" / name / f"{i}.png")
    res = cli("train", str(out), "--data-dir", str(tmp_path / "data"), "--epochs", "1", "-b", "6", "--workers", "0",
              "--device", "cpu", "--output", str(tmp_path / "run"))  # fmt: skip
    assert res.exit_code == 0, res.stderr
    notes = [line for line in res.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "replacing the classifier" in notes[0], res.stderr
    assert "predicts 1000 classes" in notes[0] and "has 3" in notes[0]
