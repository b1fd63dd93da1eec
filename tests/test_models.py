"""Full sweep over real timm architectures (slow: run with ``-m slow``)."""

from __future__ import annotations

import functools

import pytest
import timm
import torch
from conftest import flop_counter_macs, num_params
from torch import nn

import redistribute

pytestmark = pytest.mark.slow

MODELS = [
    "resnet50",
    "vgg19",
    "mobilenetv3_large_100",
    "efficientnet_b0",
    "convnext_tiny",
    "densenet121",
    "regnety_016",
    "resnext50_32x4d",
]
TEMPLATES = ["base", "a", "b", "c", "d", "e"]
SIZE = (3, 64, 64)


@functools.cache
def _model(name: str) -> tuple[nn.Module, redistribute.ChannelGraph]:
    torch.manual_seed(0)
    m = timm.create_model(name).eval()
    return m, redistribute.trace(m, SIZE)


@pytest.mark.parametrize("name", MODELS)
def test_trace_and_base_cost(name: str) -> None:
    m, g = _model(name)
    assert g.free_groups(), f"{name}: nothing to redistribute"
    assert not g.unmapped, g.unmapped
    cm = redistribute.CostModel(g)
    assert cm.flops(g.base_widths()) == flop_counter_macs(m, torch.randn(1, *SIZE))
    assert cm.params(g.base_widths()) == num_params(m)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("template", TEMPLATES)
def test_template_rebuilds_at_equal_flops(name: str, template: str) -> None:
    m, g = _model(name)
    p = redistribute.plan(g, template)
    assert abs(p.cost.flops / p.base_cost.flops - 1) <= 0.005
    if template == "base":
        assert p.widths == g.base_widths()
    else:
        assert p.changed()
    new = redistribute.apply(m, p).eval()
    x = torch.randn(1, *SIZE)
    with torch.no_grad():
        y = new(x)
    assert y.shape == (1, 1000) and torch.isfinite(y).all()
    assert flop_counter_macs(new, x) == p.cost.flops
    assert num_params(new) == p.cost.params


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("template", TEMPLATES)
def test_divisor_one_within_a_tenth_of_a_percent(name: str, template: str) -> None:
    _, g = _model(name)
    p = redistribute.plan(g, template, divisor=1)
    assert abs(p.cost.flops / p.base_cost.flops - 1) <= 0.001
