"""Errors before work: every option is checked before the model is built, and a failed run leaves no folder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

SEQ1D = "import torch.nn as nn\ndef make():\n    return nn.Sequential(nn.Conv1d(3, 16, 3), nn.ReLU(), nn.Conv1d(16, 8, 3))\n"


@pytest.mark.parametrize(
    ("extra", "code", "needle"),
    [
        (("--checkpoint", "{tmp}/missing.pth"), 1, "--checkpoint '{tmp}/missing.pth' does not exist"),
        (("--checkpoint", "{tmp}"), 1, "is a folder"),
        (("--pretrained", "--checkpoint", "{tmp}/w.pth"), 2, "--pretrained and --checkpoint"),
        (("--calibrate", "{tmp}/nope"), 2, "does not exist"),
        (("--calibrate", "{tmp}"), 2, "holds no images"),
        (("--calibrate-batches", "-1"), 2, "is negative"),
        (("--device", "tpu"), 2, "--device 'tpu' is unknown"),
        (("--match", "flop"), 2, "choose one of flops, params, memory, latency, none"),
    ],
)
def test_bad_options_fail_before_building_and_leave_no_out_folder(
    fails, monkeypatch, tmp_path: Path, extra, code, needle
):
    monkeypatch.setattr("redistribute.source.load_model", lambda *a, **k: pytest.fail("the model was built"))
    out = tmp_path / "new" / "out"
    args = [a.format(tmp=tmp_path) for a in extra]
    fails("timm:resnet50", *args, "--out", str(out), code=code, needle=needle.format(tmp=tmp_path))
    assert not (tmp_path / "new").exists()


def test_calibrate_without_out_says_it_needs_out(fails, tmp_path: Path):
    (tmp_path / "a.jpg").write_bytes(b"")
    fails("timm:resnet50", "--calibrate", str(tmp_path), needle="--calibrate re-estimates", code=2)
    fails("timm:resnet50", "--calibrate-batches", "3", needle="needs --out", code=2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_refused_up_front(fails, tmp_path: Path):
    fails("timm:resnet50", "--device", "cuda", "--out", str(tmp_path / "o"), needle="CUDA is not available")
    fails("compare", "timm:resnet50", "--device", "cuda", needle="CUDA is not available")
    assert not (tmp_path / "o").exists()


def test_a_failure_after_building_removes_the_out_folder_it_created(fails, tmp_path: Path):
    out = tmp_path / "o"
    fails("timm:test_resnet", "--input-size", "3,64,64", "--divisor", "64", "--out", str(out), code=1)
    assert not out.exists()


def test_custom_model_with_the_default_input_gets_an_input_size_hint(fails, cli, tmp_path: Path):
    (tmp_path / "nets.py").write_text(SEQ1D)
    source = f"{tmp_path / 'nets.py'}:make"
    for args in ((source,), ("inspect", source)):
        line = fails(*args, code=1, needle="pass --input-size C,H,W")
        assert "3x224x224" in line
    assert cli(source, "--input-size", "3,64", "-t", "a", "--divisor", "1").exit_code == 0


def test_offline_pretrained_is_one_line_naming_the_cache_entry(fails, monkeypatch, tmp_path: Path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    line = fails("timm:resnet50", "--pretrained", code=1, needle="models--timm--resnet50.a1_in1k")
    assert time.perf_counter() - start < 2 and "HF_HUB_OFFLINE=1" in line and "--checkpoint" in line


def test_train_teacher_offline_hint_names_teacher_checkpoint(fails, monkeypatch, tmp_path: Path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "spec.json").write_text("{}")
    line = fails("train", str(tmp_path / "spec.json"), "--data-dir", str(tmp_path), "--teacher", "timm:resnet50",
                 "--device", "cpu", code=1, needle="--teacher-checkpoint PATH")  # fmt: skip
    assert "HF_HUB_OFFLINE=1" in line


def test_cached_pretrained_weights_load_without_the_network(monkeypatch, tmp_path: Path):
    import huggingface_hub.constants
    import timm
    from safetensors.torch import save_file

    from redistribute.source import load_model

    snapshot = tmp_path / "models--timm--test_resnet.r160_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    weights = {k: torch.full_like(v, 0.25) for k, v in timm.create_model("test_resnet").state_dict().items()}
    save_file(weights, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("socket.create_connection", lambda *a, **k: pytest.fail("no network call expected"))
    model = load_model("timm:test_resnet", pretrained=True)
    assert torch.equal(model.conv1[0].weight, torch.full_like(model.conv1[0].weight, 0.25))
