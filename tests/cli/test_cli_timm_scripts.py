"""timm's ecosystem: headless and re-headed models from a saved result, .pth weights, and timm's scripts run
unchanged through ``python -m redistribute.timm``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import redistribute
import redistribute.timm as rtimm

ROOT = Path(__file__).resolve().parents[2]
X = torch.randn(2, 3, 32, 32)

#: How each timm script builds its model (timm 1.0: validate.py, benchmark.py, inference.py, train.py), with the
#: values their defaults give; the stand-in below calls timm.create_model exactly so.
STAND_IN = """
import argparse, timm, torch
p = argparse.ArgumentParser()
p.add_argument("--script"); p.add_argument("--model"); p.add_argument("--pretrained", action="store_true")
p.add_argument("--num-classes", type=int, default=None)
args = p.parse_args()
if args.script == "validate":
    model = timm.create_model(args.model, pretrained=args.pretrained, num_classes=args.num_classes, in_chans=3,
                              global_pool=None, scriptable=False)
elif args.script == "benchmark":
    model = timm.create_model(args.model, num_classes=args.num_classes, in_chans=3, global_pool="fast",
                              scriptable=False, drop_rate=0.0, drop_path_rate=0.0)
elif args.script == "inference":
    model = timm.create_model(args.model, num_classes=args.num_classes, in_chans=3, pretrained=args.pretrained,
                              checkpoint_path="")
else:
    model = timm.create_model(args.model, pretrained=args.pretrained, in_chans=3, num_classes=args.num_classes,
                              drop_rate=0.0, drop_path_rate=None, drop_block_rate=None, global_pool=None,
                              bn_momentum=None, bn_eps=None, scriptable=False, checkpoint_path="")
print("out", tuple(model.eval()(torch.randn(2, *model.pretrained_cfg["input_size"])).shape))
"""


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from redistribute.cli import app

    folder = tmp_path_factory.mktemp("r") / "out"
    res = CliRunner().invoke(app, ["timm:test_resnet", "-t", "d", "--input-size", "3,32,32", "--out", str(folder)])
    assert res.exit_code == 0, res.stderr
    return folder


def test_headless_and_reheaded_models_load(out: Path):
    ref = redistribute.load(out, weights=out / "weights.safetensors").eval()
    features = timm.create_model(f"local-dir:{out}", pretrained=True, num_classes=0).eval()
    with torch.no_grad():
        assert torch.equal(features(X), ref.forward_head(ref.forward_features(X), pre_logits=True))
    assert features.num_features == ref.num_features
    given = redistribute.load(out / "spec.json", model=timm.create_model("test_resnet", num_classes=0))
    assert given(X).shape == (2, ref.num_features)
    assert redistribute.load(out, num_classes=7)(X).shape == (2, 7)
    with pytest.raises(redistribute.UsageError, match="num_classes"):
        redistribute.load(out, model=timm.create_model("test_resnet"), num_classes=7)


def test_weights_take_pth_and_timm_checkpoints_or_name_the_formats(out: Path, tmp_path: Path):
    ref = redistribute.load(out, weights=out / "weights.safetensors").eval()
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    torch.save({"state_dict": ref.state_dict(), "epoch": 3}, tmp_path / "last.pth.tar")
    for name in ("w.pth", "last.pth.tar"):
        with torch.no_grad():
            assert torch.equal(redistribute.load(out, weights=tmp_path / name).eval()(X), ref(X))
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(redistribute.CheckpointError, match=r"\.safetensors, \.pth, \.pt"):
        redistribute.load(out, weights=tmp_path / "w.npz")


@pytest.mark.parametrize(
    ("script", "args", "shape"),
    [
        ("validate", ["--pretrained"], "(2, 1000)"),
        ("benchmark", [], "(2, 1000)"),
        ("inference", ["--pretrained", "--num-classes", "0"], "(2, 8)"),
        ("train", ["--pretrained", "--num-classes", "3"], "(2, 3)"),
    ],
)
def test_timm_scripts_run_unchanged_with_the_plugin(out: Path, tmp_path: Path, capsys, script, args, shape):
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    code = rtimm.run_script([str(tmp_path / "stand_in.py"), "--script", script, "--model", f"local-dir:{out}", *args])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    if script == "inference":  # the headless width is the model's own num_features
        shape = f"(2, {redistribute.load(out).num_features})"
    assert last == f"out {shape}"


def test_python_dash_m_redistribute_timm_runs_a_script(out: Path, tmp_path: Path):
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "redistribute.timm", str(tmp_path / "stand_in.py"), "--script", "validate",
           "--model", f"local-dir:{out}", "--pretrained"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip().endswith("out (2, 1000)"), res.stderr[-2000:]
    assert "Overwriting" not in res.stderr  # the plugin registers once
    missing = subprocess.run([sys.executable, "-m", "redistribute.timm", "nope.py"], capture_output=True, text=True,
                             timeout=300, env=env, cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr
