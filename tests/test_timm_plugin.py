"""The timm plugin: the ``redistributed`` entrypoint, ``local-dir:`` folders, named registrations, and train.py's path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch
from conftest import state_hash

import redistribute
import redistribute.timm as rtimm
from redistribute import CheckpointError, SpecError, UsageError

SOURCE = "timm:test_resnet"
SIZE = (3, 32, 32)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread: None) -> None:
    """Every test here runs with one intra-op thread (see conftest.one_thread)."""


def _write_out(folder: Path, source: str = SOURCE, template: str = "d", **kwargs: object) -> Path:
    """What `redistribute SOURCE --out folder` writes: spec.json, weights.safetensors, config.json, model.safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    new, plan = redistribute.redistribute(source, template, input_size=SIZE, **kwargs)
    spec = redistribute.spec_from_plan(plan, source=source)
    redistribute.save_spec(spec, folder / "spec.json")
    redistribute.save_weights(new, folder / "weights.safetensors")
    rtimm.save_timm_files(folder, spec, new)
    return folder


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_out(tmp_path_factory.mktemp("plugin") / "out")


@pytest.fixture(scope="module")
def reference(out: Path) -> torch.nn.Module:
    return redistribute.load(out / "spec.json", weights=out / "weights.safetensors")


def test_out_folder_holds_timm_files(out: Path) -> None:
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "redistributed" and config["num_classes"] == 1000
    assert config["model_args"]["spec"] == json.loads((out / "spec.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == list(SIZE)
    assert config["pretrained_cfg"]["classifier"] == "fc" and config["pretrained_cfg"]["first_conv"] == "conv1.0"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_local_dir_is_bit_identical_to_load(out: Path, reference: torch.nn.Module) -> None:
    model = timm.create_model(f"local-dir:{out}", pretrained=True)
    assert state_hash(model) == state_hash(reference)
    x = torch.randn(2, *SIZE)
    assert torch.equal(model.eval()(x), reference.eval()(x))
    assert model.pretrained_cfg["input_size"] == SIZE or list(model.pretrained_cfg["input_size"]) == list(SIZE)


def test_local_dir_without_weights_is_the_same_architecture(out: Path, reference: torch.nn.Module) -> None:
    model = timm.create_model(f"local-dir:{out}")
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}
    assert state_hash(model) != state_hash(reference)


def test_spec_entrypoint_loads_saved_weights(out: Path, reference: torch.nn.Module) -> None:
    for spec in (out / "spec.json", out, str(out / "spec.json")):
        assert state_hash(timm.create_model("redistributed", spec=spec, pretrained=True)) == state_hash(reference)


def test_new_num_classes_keeps_the_body_and_resets_the_head(out: Path, reference: torch.nn.Module) -> None:
    model = timm.create_model("redistributed", spec=out, pretrained=True, num_classes=5)
    assert model.num_classes == 5 and model.fc.out_features == 5
    body = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in body.items())
    again = timm.create_model(f"local-dir:{out}", pretrained=True, num_classes=5, drop_rate=0.1)
    assert again.num_classes == 5 and all(torch.equal(again.state_dict()[k], v) for k, v in body.items())


def test_spec_dict_builds_the_architecture_without_weights(out: Path, reference: torch.nn.Module) -> None:
    spec = json.loads((out / "spec.json").read_text())
    model = timm.create_model("redistributed", spec=spec, num_classes=3)
    assert model.num_classes == 3 and model.num_features == reference.num_features
    with pytest.raises(CheckpointError, match="no weights"):
        timm.create_model("redistributed", spec=spec, pretrained=True)


def test_entrypoint_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs a spec"):
        timm.create_model("redistributed")
    with pytest.raises(SpecError, match="cannot read spec"):
        timm.create_model("redistributed", spec=tmp_path / "missing.json")
    (tmp_path / "spec.json").write_text((Path(__file__).parent / "conftest.py").read_text()[:10])
    with pytest.raises(SpecError, match="not JSON"):
        timm.create_model("redistributed", spec=tmp_path)


def test_register_names_a_saved_redistribution(out: Path, reference: torch.nn.Module) -> None:
    name = rtimm.register(out / "spec.json", name="test_resnet_peak")
    assert name == "test_resnet_peak" and timm.is_model(name)
    assert name in timm.list_models(pretrained=True)
    assert state_hash(timm.create_model(name, pretrained=True)) == state_hash(reference)
    assert timm.create_model(name, num_classes=2).num_classes == 2
    assert rtimm.register(out, name="test_resnet_peak") == name  # registering our own name again is allowed
    assert rtimm.register(out) == f"redistributed_{out.name}"


def test_register_refuses_bad_or_taken_names(out: Path) -> None:
    with pytest.raises(UsageError, match="already has a model named 'resnet50'"):
        rtimm.register(out, name="resnet50")
    with pytest.raises(UsageError, match="is invalid"):
        rtimm.register(out, name="my-model:1")


def test_non_timm_source_takes_timm_factory_arguments(tmp_path: Path) -> None:
    """A file.py factory without timm's kwargs: train.py's neutral drop_rate/in_chans are dropped, num_classes passed."""
    (tmp_path / "net.py").write_text(
        textwrap.dedent("""
        from torch import nn

        def make(num_classes=10):
            return nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))
    """)
    )
    out = _write_out(tmp_path / "out", source=f"{tmp_path / 'net.py'}:make", template="a", divisor=4)
    reference = redistribute.load(out / "spec.json", weights=out / "weights.safetensors")
    model = timm.create_model(f"local-dir:{out}", pretrained=True, drop_rate=0.0, in_chans=3)
    assert state_hash(model) == state_hash(reference)
    assert json.loads((out / "config.json").read_text())["pretrained_cfg"]["classifier"] == "8"
    assert timm.create_model("redistributed", spec=out, pretrained=True, num_classes=4)[8].out_features == 4


# timm's train.py (not in the pip package) imports --device-modules, then builds the model with these arguments.
TRAIN_PY_STANDIN = """
import argparse, importlib
import torch
from timm.models import create_model

parser = argparse.ArgumentParser()
parser.add_argument("--device-modules", default=None, type=str, nargs="+")
parser.add_argument("--model", default="resnet50", type=str)
parser.add_argument("--pretrained", action="store_true", default=False)
parser.add_argument("--initial-checkpoint", default="", type=str)
parser.add_argument("--num-classes", type=int, default=None)
parser.add_argument("--save", type=str)
args = parser.parse_args()
if args.device_modules:
    for module in args.device_modules:
        importlib.import_module(module)
model = create_model(
    args.model, pretrained=args.pretrained, in_chans=None, num_classes=args.num_classes, drop_rate=0.0,
    drop_path_rate=None, drop_block_rate=None, global_pool=None, bn_momentum=None, bn_eps=None, scriptable=False,
    checkpoint_path=args.initial_checkpoint or None,
)
torch.save(model.state_dict(), args.save)
"""


def test_train_py_builds_local_dir_through_device_modules(
    out: Path, reference: torch.nn.Module, tmp_path: Path
) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN_PY_STANDIN)
    cmd = [sys.executable, str(script), "--device-modules", "redistribute.timm", "--model", f"local-dir:{out}", "--pretrained",
           "--save", str(tmp_path / "state.pt")]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state.keys() == reference.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in reference.state_dict().items())
