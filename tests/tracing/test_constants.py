"""Tensors made from Python constants are known at trace time; tensors computed from the input are not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import redistribute
from redistribute.errors import TraceError
from redistribute.tracing.clone import meta_copy
from redistribute.tracing.tracer import trace_model

INPUT = (3, 16, 16)


class _ConstantControlFlow(nn.Module):
    """Branches on constant tensors: a loose attribute, ``torch.tensor``, ``torch.as_tensor`` and arithmetic."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.width = torch.tensor(8)  # a plain attribute: neither a parameter nor a buffer
        self.table = torch.tensor([[0, 1], [0, 0]])  # an adjacency matrix, as NAS-Bench-101 keeps one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.size(1) == self.width:  # a size against a constant tensor
            y = y + 1
        pair = torch.as_tensor([8, 4]) * 2
        if pair[0] - y.shape[1] == 8 and (torch.tensor(3) + 1).item() == 4:
            y = y * 2
        if self.table[0, 1]:
            y = torch.relu(y)
        if y.size()[1] < torch.tensor(8):  # NAS-Bench-101's truncate: never true here
            raise ValueError("unreachable")
        return y


class _ConstantMeetsData(nn.Module):
    """Constant tensors used *with* activations: a bool mask, a float table and a concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.mask = torch.zeros(8, 14, 14, dtype=torch.bool)
        self.shift = torch.ones(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).masked_fill(self.mask, 0.0) + self.shift
        return torch.cat([y, self.shift.expand(1, 8, 14, 14)], 1)


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:
            y = y * 2
        return y


def _trace(model: nn.Module) -> torch.fx.Graph:
    return trace_model(model, (1, *INPUT), frozenset()).graph


def test_constant_tensor_control_flow_traces_and_resolves() -> None:
    graph = _trace(_ConstantControlFlow())
    ops = [getattr(n.target, "__name__", str(n.target)) for n in graph.nodes]
    # every branch was taken as at run time: the add, the multiply and the relu are in the graph, no raise
    assert {"add", "mul", "relu"} <= set(ops) and "ValueError" not in ops
    conv = next(n for n in graph.nodes if n.op == "call_module")
    assert conv.meta["val"].device.type == "meta"
    assert not redistribute.trace(_ConstantControlFlow(), INPUT).opaque


def test_constant_meeting_data_becomes_unknown() -> None:
    graph = _trace(_ConstantMeetsData())
    out = next(n for n in graph.nodes if n.op == "output").args[0]
    assert out.meta["val"].device.type == "meta" and out.meta["val"].shape == (1, 16, 14, 14)
    assert len(redistribute.trace(_ConstantMeetsData(), INPUT).groups) > 0


def test_data_dependent_comparison_still_gets_the_one_line_error() -> None:
    with pytest.raises(TraceError) as err:
        redistribute.trace(_DataDependent(), INPUT)
    msg = str(err.value)
    assert "data-dependent control flow" in msg and "\n" not in msg


def test_meta_copy_keeps_small_constants_only() -> None:
    m = _ConstantControlFlow()
    m.big = torch.zeros(5000, dtype=torch.long)
    m.trainable = torch.zeros(2, requires_grad=True)
    m.register_buffer("buf", torch.tensor(3))
    copy = meta_copy(m)
    assert copy.width.device.type == "cpu" and int(copy.width) == 8
    assert copy.table.tolist() == [[0, 1], [0, 0]] and copy.table is not m.table
    assert copy.big.device.type == "meta"  # over the size of a constant: a cache, not configuration
    assert copy.trainable.device.type == "meta"
    assert copy.buf.device.type == "meta"  # buffers are the model's data, whatever their size
    assert copy.conv.weight.device.type == "meta"


class _ConcatenatedConstants(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.extra = torch.tensor([4])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        widths = torch.cat([y.size(1) + self.extra, self.extra])  # known values in a list: no shape rule
        if widths.sum() == 16:
            y = torch.relu(y)
        return y


def test_functions_of_lists_of_constants_stay_known() -> None:
    graph = _trace(_ConcatenatedConstants())
    assert "relu" in [getattr(n.target, "__name__", str(n.target)) for n in graph.nodes]
