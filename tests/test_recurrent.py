"""LSTM/GRU/RNN fed by a channel group: ``input_size`` is resized with it, and their MACs are in the cost model."""

from __future__ import annotations

import pytest
import torch
from conftest import flop_counter_macs, num_params
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import redistribute
from redistribute.groups.rules.modules import RNN_GATES
from redistribute.planning.planner import plan_from_widths


class CRNN(nn.Module):
    """Conv1d features read as a sequence by a recurrent layer (time = the conv's length)."""

    def __init__(self, cls: type[nn.RNNBase], **kw: object) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv1d(3, 16, 3, padding=1), nn.Conv1d(16, 32, 3, padding=1)
        self.rnn = cls(32, 24, **kw)
        self.batch_first = bool(kw.get("batch_first", False))
        self.fc = nn.Linear((2 if kw.get("bidirectional") else 1) * int(kw.get("proj_size") or 24), 10)  # type: ignore[call-overload]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c2(torch.relu(self.c1(x)))
        out, _ = self.rnn(y.permute(0, 2, 1) if self.batch_first else y.permute(2, 0, 1))
        return self.fc(out[:, -1] if self.batch_first else out[-1])


def hand_count(m: nn.RNNBase, steps: int) -> int:
    """MACs from the torch docs' equations: per step, each layer and direction computes ``gates`` products of
    ``W_i* x`` (input) and ``W_h* h`` (hidden or projection size), plus the projection ``W_hr h``."""
    gates, hidden, dirs = RNN_GATES[m.mode], m.hidden_size, 2 if m.bidirectional else 1
    out = m.proj_size or hidden
    proj = hidden * out if m.proj_size else 0
    first = dirs * (gates * hidden * (m.input_size + out) + proj)
    later = (m.num_layers - 1) * dirs * (gates * hidden * (dirs * out + out) + proj)
    return steps * (first + later)


def rnn_macs(m: nn.RNNBase, x: torch.Tensor) -> int:
    """``FlopCounterMode``'s count where it sees the products (GRU, RNN, projected LSTM on the CPU); the hand count
    where torch runs a fused kernel it does not count (oneDNN's LSTM), checked to agree where both exist."""
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(x)
    counted = sum(fc.get_flop_counts().get("Global", {}).values()) // 2
    steps = x.shape[1] * x.shape[0]
    if counted:
        assert counted == hand_count(m, steps)
    return counted or hand_count(m, steps)


pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")

CELLS = [
    (nn.LSTM, {}),
    (nn.LSTM, {"proj_size": 8, "num_layers": 2, "batch_first": True}),
    (nn.GRU, {"num_layers": 2, "bidirectional": True}),
    (nn.RNN, {"nonlinearity": "relu"}),
]


@pytest.mark.parametrize(("cls", "kw"), CELLS, ids=[f"{c.__name__}-{'-'.join(k) or 'plain'}" for c, k in CELLS])
def test_recurrent_input_follows_its_group_and_is_costed(cls: type[nn.RNNBase], kw: dict[str, object]):
    model = CRNN(cls, **kw)
    graph = redistribute.trace(model, input_size=(3, 20))
    feeding = next(g for g in graph.groups if "c2" in g.producers)
    assert feeding.fixed is None and "rnn" in feeding.consumers
    for template in ("a", "b"):
        plan = redistribute.plan(graph, template, divisor=1)
        new = redistribute.apply(model, plan)
        assert new.rnn.input_size == new.c2.out_channels == plan.widths[feeding.id]
        x = torch.randn(1, 3, 20)
        seq = new.c2(torch.relu(new.c1(x)))
        seq = seq.permute(0, 2, 1) if new.batch_first else seq.permute(2, 0, 1)
        rest = flop_counter_macs(new, x) - rnn_macs_counted(new.rnn, seq)
        assert round(plan.cost.flops) == rest + rnn_macs(new.rnn, seq)
        assert round(plan.cost.params) == num_params(new)
    grown = redistribute.apply(model, plan_from_widths(graph, {g.id: g.width + 8 for g in graph.free_groups()}))
    assert grown.rnn.input_size == 40
    x = torch.randn(2, 3, 20)
    with torch.no_grad():
        assert torch.allclose(grown(x), model(x), atol=1e-5)  # new inputs get zero weights


def rnn_macs_counted(m: nn.RNNBase, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(x)
    return sum(fc.get_flop_counts().get("Global", {}).values()) // 2


def test_a_recurrent_layer_left_at_its_old_input_size_is_refused(monkeypatch: pytest.MonkeyPatch):
    from redistribute.errors import RebuildError
    from redistribute.surgery import handlers

    model = CRNN(nn.LSTM)
    plan = redistribute.plan(model, "a", divisor=1, input_size=(3, 20))
    monkeypatch.setitem(handlers.HANDLERS, nn.RNNBase, lambda m, use, in_idx, out_idx: None)
    with pytest.raises(RebuildError, match=r"rebuilt CRNN"):
        redistribute.apply(model, plan)
