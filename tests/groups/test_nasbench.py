"""NAS-Bench-101 networks (``nasbench-pytorch``) redistribute with every template at matched FLOPs.

Their cells keep the adjacency matrix as a plain tensor attribute and compare channel counts wrapped in
``torch.tensor`` with ``inputs.size()[1]`` (``truncate``): the trace resolves both as known values.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
from conftest import flop_counter_macs, num_params

import redistribute

pytest.importorskip("nasbench_pytorch")

INPUT = (3, 32, 32)


def _cells() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "examples" / "nasbench101.py"
    spec = importlib.util.spec_from_file_location("nasbench101_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CELLS = _cells()
# Three vertices into the output: its 16 channels split 6/5/5, so the 1 -> 3 edge truncates 6 -> 5 with a slice,
# and the output concatenates; with the input -> vertex projections, every mapping the cell has.
SPLIT = (
    [[0, 1, 1, 1, 0],
     [0, 0, 0, 1, 1],
     [0, 0, 0, 0, 1],
     [0, 0, 0, 0, 1],
     [0, 0, 0, 0, 0]],
    ["input", CELLS.C3, CELLS.C1, CELLS.C3, "output"],
)  # fmt: skip


def _check_every_template(net: torch.nn.Module) -> None:
    x = torch.randn(1, *INPUT)
    base_shape = net.eval()(x).shape
    graph = redistribute.trace(net, INPUT)
    assert not graph.opaque and not graph.unmapped
    assert graph.free_groups()
    base_flops = flop_counter_macs(net, x)
    for template in "abcde":
        plan = redistribute.plan(graph, template, match="flops", divisor=1)
        assert plan.cost.flops == pytest.approx(plan.base_cost.flops, rel=0.005)
        new = redistribute.apply(net, plan)
        with torch.no_grad():
            assert new.eval()(x).shape == base_shape
        assert plan.widths != graph.base_widths(), template
        assert plan.base_cost.flops == base_flops
        assert plan.cost.flops == flop_counter_macs(new, x), template
        assert plan.cost.params == num_params(new), template
        assert num_params(new) != num_params(net), template


@pytest.mark.parametrize("cell", ["resnet_like", "best", "split"])
def test_small_nasbench_network_redistributes(cell: str) -> None:
    spec = SPLIT if cell == "split" else CELLS.CELLS[cell]
    net = CELLS.network(spec, stem_out_channels=16, num_modules_per_stack=1)
    if cell == "split":
        assert net.layers[1].vertex_channels == [16, 6, 5, 5, 16]  # the split and the truncation are there
    _check_every_template(net)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["resnet_like", "best"])
def test_default_nasbench_network_redistributes(cell: str) -> None:
    _check_every_template(getattr(CELLS, cell)())
