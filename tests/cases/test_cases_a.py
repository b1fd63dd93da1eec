"""The shared cases (``../shared/cases``, README there) and zoo models of issue 14, part A: each as its README's
"what is right" says: a forward with the base output shapes, analytic FLOPs and params equal to torch's count of
the rebuilt model, the template's shape visible in the widths, and structure kept."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import timm
import torch
from conftest import flop_counter_macs, num_params
from torch import nn

import redistribute

CASES = Path(__file__).resolve().parents[2].parent / "shared" / "cases"


def load_case(name: str) -> ModuleType:
    """Import ``CASES/<name>.py`` (skips the test when the shared cases are not checked out next to the repo)."""
    path = CASES / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"shared case {path} is absent (the cases live next to the repository, in ../shared/cases)")
    spec = importlib.util.spec_from_file_location(f"case_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_rebuild(model: nn.Module, plan: redistribute.Plan) -> nn.Module:
    """Rebuild at ``plan`` and check what every case must hold: base output shape, exact FLOPs and params."""
    new = redistribute.apply(model, plan)
    x = torch.randn(2, *plan.graph.input_shape[1:])
    model.eval()
    new.eval()
    with torch.no_grad():
        assert new(x).shape == model(x).shape
    one = x[:1]
    assert round(plan.cost.flops) == flop_counter_macs(new, one)
    assert round(plan.cost.params) == num_params(new)
    return new


# -- timm metadata: the head's own widths follow surgery, so reset_classifier works -------------------------------
@pytest.mark.parametrize("name", ["test_convnext", "test_resnet", "test_efficientnet", "convnext_atto"])
def test_reset_classifier_works_after_surgery(name: str):
    model = timm.create_model(name)
    plan = redistribute.plan(model, "a", input_size=(3, 64, 64))
    assert plan.changed()
    new = redistribute.apply(model, plan)
    width = new.get_classifier().in_features
    head = getattr(new, "head", None)
    if isinstance(getattr(head, "in_features", None), int):  # timm's NormMlpClassifierHead / ClassifierHead
        assert head.num_features == width and head.in_features == new.num_features
    new.reset_classifier(10)
    assert new.get_classifier().in_features == width
    assert new(torch.randn(1, 3, 64, 64)).shape == (1, 10)
