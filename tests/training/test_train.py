"""The training hand-off: learning on an image folder, metrics and checkpoints, resume, torchrun, distillation, CLI."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import state_hash
from PIL import Image
from typer.testing import CliRunner

import redistribute
import redistribute.timm as rtimm
from redistribute import (
    CheckpointError,
    DataError,
    OutputError,
    TrainConfig,
    TrainProgress,
    TrainResult,
    UsageError,
    train,
)
from redistribute.cli import app
from redistribute.training.distill import build_teacher, distillation_task
from redistribute.training.loop import CHECKPOINT, METRICS

SIZE = (3, 32, 32)
COLOURS = {"blue": (40, 60, 220), "green": (40, 200, 60), "red": (220, 40, 40), "yellow": (230, 220, 40)}
N_TRAIN, N_VAL = 32, 8  # per class
CONFIG = TrainConfig(epochs=3, batch_size=16, lr=0.1, workers=0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread: None) -> None:
    """Every test here runs with one intra-op thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four classes of noisy 32x32 images that differ in colour: learnable in a few steps."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        for name, rgb in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(np.array(rgb) + rng.normal(0, 25, (*SIZE[1:], 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `redistribute timm:test_resnet -t d --out` folder (random base weights carried over)."""
    folder = tmp_path_factory.mktemp("out")
    torch.manual_seed(0)
    new, plan = redistribute.redistribute("timm:test_resnet", "d", input_size=SIZE)
    spec = redistribute.spec_from_plan(plan)
    redistribute.save_spec(spec, folder / "spec.json")
    redistribute.save_weights(new, folder / "weights.safetensors")
    rtimm.save_timm_files(folder, spec, new)
    return folder


@pytest.fixture(scope="module")
def run(out: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, list[TrainProgress]]:
    events: list[TrainProgress] = []
    return train(out, data, tmp_path_factory.mktemp("run") / "train", CONFIG, progress=events.append), events


def test_three_epochs_learn_the_colours(run: tuple[TrainResult, list[TrainProgress]]) -> None:
    result, _ = run
    losses = [h.train_loss for h in result.history]
    top1 = [h.val_top1 for h in result.history]
    print("train loss per epoch", losses, "val top-1", top1)
    assert [h.epoch for h in result.history] == [1, 2, 3] and result.start_epoch == 0 and result.world_size == 1
    assert losses[-1] < 0.8 * losses[0]
    assert top1[-1] is not None and top1[-1] >= 75.0  # chance is 25%
    assert all(h.samples == 4 * N_TRAIN for h in result.history)
    assert result.history[0].lr == CONFIG.lr > result.history[-1].lr  # cosine schedule


def test_outputs_metrics_checkpoint_and_timm_folder(run: tuple[TrainResult, list[TrainProgress]]) -> None:
    result, _ = run
    rows = list(csv.DictReader(result.metrics_csv.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"train_loss", "val_top1", "val_top5", "lr", "images_per_s"} <= rows[0].keys()
    assert float(rows[-1]["val_top1"]) == pytest.approx(result.history[-1].val_top1, abs=1e-4)
    ckpt = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["arch"] == "redistributed" and {"state_dict", "optimizer"} <= ckpt.keys()
    assert sorted(p.name for p in result.output.iterdir()) == sorted(
        [CHECKPOINT, "config.json", METRICS, "model.safetensors", "spec.json"]
    )
    trained = timm.create_model(f"local-dir:{result.output}", pretrained=True)
    assert trained.num_classes == 4 and state_hash(trained) == state_hash(result.model)
    again = redistribute.load(result.output / "spec.json", weights=result.output / "model.safetensors")
    assert state_hash(again) == state_hash(result.model)
    from_ckpt = timm.create_model(f"local-dir:{result.output}", checkpoint_path=str(result.checkpoint))
    assert state_hash(from_ckpt) == state_hash(result.model)


def test_progress_reports_every_step_and_epoch(run: tuple[TrainResult, list[TrainProgress]]) -> None:
    result, events = run
    steps = 4 * N_TRAIN // CONFIG.batch_size
    assert len(events) == 3 * (steps + 1)
    assert [e.step for e in events[: steps + 1]] == [*range(1, steps + 1), steps]
    assert [e.metrics for e in events if e.metrics is not None] == list(result.history)


def test_resume_continues_at_the_next_epoch(
    run: tuple[TrainResult, list[TrainProgress]], out: Path, data: Path, tmp_path: Path
) -> None:
    first, _ = run
    folder = shutil.copytree(first.output, tmp_path / "train")
    with pytest.raises(OutputError, match=r"already holds last\.pth\.tar\. Hint: use --resume"):
        train(out, data, folder, CONFIG)
    events: list[TrainProgress] = []
    result = train(
        out, data, folder, dataclasses.replace(CONFIG, epochs=4), resume=folder / CHECKPOINT, progress=events.append
    )
    assert result.start_epoch == 3 and {e.epoch for e in events} == {4}
    assert [h.epoch for h in result.history] == [1, 2, 3, 4] and result.history[:3] == first.history
    assert [int(r["epoch"]) for r in csv.DictReader((folder / METRICS).open())] == [1, 2, 3, 4]
    assert torch.load(folder / CHECKPOINT, weights_only=True)["epoch"] == 3
    with pytest.raises(CheckpointError, match="does not exist"):
        train(out, data, folder, CONFIG, resume=tmp_path / "nope.pth.tar")


def test_data_errors_name_the_folder_and_the_layout(out: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"'.*missing' does not exist. Hint: lay it out as DIR/train/<class>"):
        train(out, tmp_path / "missing", tmp_path / "run", CONFIG)
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="has no train/ subfolder"):
        train(out, tmp_path / "flat", tmp_path / "run", CONFIG)
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no usable images"):
        train(out, tmp_path / "empty", tmp_path / "run", CONFIG)


def test_config_is_validated() -> None:
    with pytest.raises(UsageError, match=r"epochs 0 is invalid: it must be at least 1 \(e.g. --epochs 10\)"):
        TrainConfig(epochs=0)
    with pytest.raises(UsageError, match="unknown optimizer 'sgdd'"):
        TrainConfig(opt="sgdd")
    with pytest.raises(UsageError, match="even batch size"):
        TrainConfig(mixup=0.2, batch_size=15)
    with pytest.raises(UsageError, match="--sync-bn needs CUDA"):
        TrainConfig(sync_bn=True)


def test_torchrun_two_processes_share_the_data_and_write_once(out: Path, data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "redistribute", "train",
           str(out), "--data-dir", str(data), "--output", str(folder), "--epochs", "2", "--batch-size", "16", "--workers", "0",
           "--lr", "0.1", "--device", "cpu", "--json"]  # fmt: skip
    tic = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    print(f"torchrun wall time {time.perf_counter() - tic:.1f} s")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)  # rank 0 alone prints
    assert [e["samples"] for e in report["epochs"]] == [4 * N_TRAIN] * 2  # each image once per epoch over both ranks
    assert [int(r["samples"]) for r in csv.DictReader((folder / METRICS).open())] == [4 * N_TRAIN] * 2
    assert len(list(folder.glob("*.pth.tar"))) == 1 and not list(folder.glob(".*.tmp"))
    assert torch.load(folder / CHECKPOINT, weights_only=True)["epoch"] == 1
    assert report["epochs"][-1]["val_top1"] is not None


def test_distillation_kl_to_the_teacher_falls(out: Path) -> None:
    torch.manual_seed(0)
    student = timm.create_model("redistributed", spec=out, pretrained=True, num_classes=4)
    teacher = timm.create_model("test_resnet", num_classes=4)
    with torch.no_grad():
        teacher.fc.weight.mul_(5)  # confident, non-uniform targets
    task = distillation_task(student, teacher.eval(), temperature=2.0, kd_weight=1.0)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    x, y = torch.randn(16, *SIZE), torch.randint(0, 4, (16,))
    kl = []
    for _ in range(15):
        result = task(x, y)
        optimizer.zero_grad()
        result["loss"].backward()
        optimizer.step()
        kl.append(float(result["kd_loss"].detach()))
    print("KL to the teacher per step", [round(v, 4) for v in kl])
    assert float(result["loss"].detach()) == pytest.approx(kl[-1])  # kd_weight 1: the label loss does not count
    assert all(b < a for a, b in itertools.pairwise(kl)) and kl[-1] < 0.5 * kl[0]


def test_build_teacher_refuses_what_cannot_teach(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        build_teacher("timm:test_resnet", tmp_path / "teacher.pth", num_classes=4)
    torch.save(timm.create_model("test_resnet", num_classes=3).state_dict(), tmp_path / "teacher.pth")
    with pytest.raises(CheckpointError, match=r"'fc.weight' has shape \(3, \d+\), the model expects \(4, \d+\)"):
        build_teacher("timm:test_resnet", tmp_path / "teacher.pth", num_classes=4)
    teacher = build_teacher("timm:test_resnet", tmp_path / "teacher.pth", num_classes=3)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    (tmp_path / "net.py").write_text(
        "import timm\n\ndef make(num_classes=3):\n    return timm.create_model('test_resnet', num_classes=num_classes)\n"
    )
    with pytest.raises(UsageError, match="no published weights"):
        build_teacher(f"{tmp_path / 'net.py'}:make", num_classes=3)
    assert build_teacher(f"{tmp_path / 'net.py'}:make", tmp_path / "teacher.pth", num_classes=3).fc.out_features == 3


runner = CliRunner()


def test_cli_train_distils_with_every_option(out: Path, data: Path, tmp_path: Path) -> None:
    torch.save(timm.create_model("test_resnet", num_classes=4).state_dict(), tmp_path / "teacher.pth")
    res = runner.invoke(app, ["train", str(out / "spec.json"), "--data-dir", str(data), "--output", str(tmp_path / "kd"), "--epochs", "1",
                              "-b", "16", "--workers", "0", "--device", "cpu", "--teacher", "timm:test_resnet",
                              "--teacher-checkpoint", str(tmp_path / "teacher.pth"), "--kd-temperature", "2", "--amp",
                              "--channels-last", "--mixup", "0.2", "--cutmix", "1.0", "--ema", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert len(report["epochs"]) == 1 and report["epochs"][0]["samples"] == 4 * N_TRAIN
    assert "epoch 1/1" in res.stderr
    ckpt = torch.load(tmp_path / "kd" / CHECKPOINT, weights_only=True)
    assert "state_dict_ema" in ckpt and ckpt["config"]["teacher"] == "timm:test_resnet"
    assert timm.create_model(f"local-dir:{tmp_path / 'kd'}", pretrained=True).num_classes == 4


def test_cli_train_errors_are_one_line(out: Path, data: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", str(out), "--data-dir", str(tmp_path / "none"), "--output", str(tmp_path / "x")])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "does not exist. Hint: lay it out as DIR/train/<class>" in res.stderr
    res = runner.invoke(app, ["train", str(out), "--data-dir", str(data), "--epochs", "0"])
    assert res.exit_code == 2 and "epochs 0 is invalid" in res.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / CHECKPOINT).write_bytes(b"")
    res = runner.invoke(app, ["train", str(out), "--data-dir", str(data), "--output", str(tmp_path / "busy")])
    assert res.exit_code == 1 and "Hint: use --resume" in res.stderr
