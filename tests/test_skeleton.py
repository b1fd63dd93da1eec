"""Planning on a skeleton (large tensors on meta) gives the same plan as on the real model, and the result is built
directly at its new widths with real, initialised weights; where that cannot be done, the base is built for real."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import redistribute
from redistribute.api import build
from redistribute.skeleton import SMALL, is_skeleton, skeleton
from redistribute.spec import spec_from_plan, spec_json
from redistribute.surgery.checkpoint import load_checkpoint
from redistribute.surgery.materialize import materialize_


@pytest.fixture(autouse=True)
def _small_skeletons(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test models are tiny: build everything over 256 elements on meta, so the meta path is what runs."""
    monkeypatch.setattr("redistribute.skeleton.SMALL", 256)


SOURCES = ["timm:test_resnet", "timm:test_convnext", "timm:test_efficientnet", "timm:test_vit", "torchvision:resnet18"]
SIZE = (3, 64, 64)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("template", ["d", "b"])
def test_plan_on_a_skeleton_is_the_plan_on_the_real_model(source: str, template: str) -> None:
    torch.manual_seed(0)
    real = redistribute.load_model(source)
    sk = redistribute.load_model(source, meta=True)
    assert is_skeleton(sk) and not is_skeleton(real)
    scope = "all" if "vit" in source else "conv"
    specs = [
        spec_json(spec_from_plan(redistribute.plan(m, template, input_size=SIZE, scope=scope), source=source))
        for m in (sk, real)
    ]
    assert specs[0] == specs[1]  # byte for byte


@pytest.mark.parametrize("source", SOURCES)
def test_build_from_a_skeleton_has_real_initialised_weights(source: str) -> None:
    sk = redistribute.load_model(source, meta=True)
    scope = "all" if "vit" in source else "conv"
    p = redistribute.plan(sk, "d", input_size=SIZE, scope=scope)
    new = build(sk, p, source=source)
    tensors = [*new.parameters(), *new.buffers()]
    assert not any(t.is_meta for t in tensors)
    assert not any(bool(t.isnan().any()) for t in tensors if t.is_floating_point())
    assert sum(t.numel() for t in new.parameters()) == p.cost.params
    weights = [t for t in new.parameters() if t.ndim > 1]
    assert all(float(t.std()) > 0 for t in weights)  # initialised, not zeros
    new.eval()
    y = new(torch.randn(2, *SIZE))
    assert y.shape == (2, 1000) and bool(torch.isfinite(y).all())
    assert is_skeleton(sk)  # the skeleton itself is untouched


def test_materialize_reports_a_tensor_without_initialiser() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(512, 512)
            self.scale = nn.Parameter(torch.ones(512, 256))  # big and loose: no reset_parameters owns it

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) @ self.scale

    with skeleton():
        m = Scaled()
    assert m.scale.is_meta and m.fc.weight.is_meta and m.scale.numel() > SMALL
    assert materialize_(m) is False
    assert not m.fc.weight.is_meta and not bool(m.fc.weight.isnan().any())


MODEL_FILE = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 3)
        self.mid = nn.Conv2d(64, 128, 3)
        self.scale = nn.Parameter(torch.full((128, 24, 24), 0.5))
        self.fc = nn.Linear(128, classes)
        # reads a large tensor back at construction: impossible on meta
        self.norm = float(torch.ones(300, 300).sum().item())

    def forward(self, x):
        x = self.mid(self.conv(x).relu()) * self.scale
        return self.fc(x.mean((2, 3)))

def make(classes=10):
    return Net(classes)
"""


def test_a_factory_that_cannot_build_on_meta_is_built_for_real(tmp_path: Path) -> None:
    f = tmp_path / "net.py"
    f.write_text(MODEL_FILE)
    m = redistribute.load_model(f"{f}:make", meta=True)
    assert not is_skeleton(m) and m.norm == 90000.0


def test_build_falls_back_to_a_real_base_when_a_tensor_has_no_initialiser(tmp_path: Path) -> None:
    f = tmp_path / "net.py"
    f.write_text(MODEL_FILE.replace("self.norm = float(torch.ones(300, 300).sum().item())", "self.norm = 1.0"))
    source = f"{f}:make"
    sk = redistribute.load_model(source, meta=True)
    assert is_skeleton(sk) and sk.scale.is_meta  # 128*24*24 elements, owned by no layer
    p = redistribute.plan(sk, "b", input_size=(3, 28, 28))
    new = build(sk, p, source=source)
    assert not is_skeleton(new)
    assert bool((new.scale == 0.5).all())  # the factory's value
    assert new(torch.randn(1, 3, 28, 28)).shape == (1, 10)
    with pytest.raises(redistribute.UsageError, match="pass source="):
        build(sk, p)
    # the factory's arguments reach the real base too
    sk7 = redistribute.load_model(source, meta=True, classes=7)
    p7 = redistribute.plan(sk7, "b", input_size=(3, 28, 28))
    assert build(sk7, p7, source=source, model_kwargs={"classes": 7})(torch.randn(1, 3, 28, 28)).shape == (1, 7)


def test_a_checkpoint_fills_a_skeleton() -> None:
    real = redistribute.load_model("timm:test_resnet")
    sk = redistribute.load_model("timm:test_resnet", meta=True)
    load_checkpoint(sk, real.state_dict())
    assert not is_skeleton(sk)
    for (name, a), b in zip(real.state_dict().items(), sk.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_redistribute_from_a_source_string_builds_only_the_result() -> None:
    new, p = redistribute.redistribute("timm:test_resnet", "d", input_size=SIZE)
    assert not is_skeleton(new)
    assert sum(t.numel() for t in new.parameters()) == p.cost.params


def test_torchvision_segmentation_builds_offline_without_backbone_weights() -> None:
    """``weights_backbone`` defaults to ImageNet weights in torchvision: without --pretrained nothing is fetched."""
    m = redistribute.load_model("torchvision:lraspp_mobilenet_v3_large", meta=True)
    assert type(m).__name__ == "LRASPP"


@pytest.mark.parametrize("source", ["timm:test_resnet", "timm:test_vit"])
def test_load_from_a_spec_builds_only_the_result(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``redistribute.load(spec)`` builds the base as a skeleton, never for real; with the saved weights it gives
    the saved model's outputs."""
    from redistribute import spec as spec_module
    from redistribute.surgery.weights import save_weights

    scope = "all" if "vit" in source else "conv"
    base = redistribute.load_model(source)
    p = redistribute.plan(base, "d", input_size=SIZE, scope=scope)
    saved = redistribute.apply(base, p).eval()
    spec = spec_from_plan(p, source=source)
    save_weights(saved, tmp_path / "weights.safetensors")
    built: list[bool] = []
    real_load_model = spec_module.load_model

    def recording(src: str, *args: object, meta: bool = False, **kwargs: object) -> nn.Module:
        built.append(meta)
        return real_load_model(src, *args, meta=meta, **kwargs)

    monkeypatch.setattr(spec_module, "load_model", recording)
    fresh = redistribute.load(spec)
    assert built == [True] and not is_skeleton(fresh)
    assert sum(t.numel() for t in fresh.parameters()) == p.cost.params
    loaded = redistribute.load(spec, weights=tmp_path / "weights.safetensors").eval()
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), saved(x))
