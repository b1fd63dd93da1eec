"""Every rebuild is checked before it is returned or written: a broken handler is caught and named."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import timm
import torch
from torch import nn
from typer.testing import CliRunner

import redistribute
from redistribute.cli import app
from redistribute.errors import RebuildError
from redistribute.surgery import handlers
from redistribute.surgery.verify import verify


@pytest.fixture
def broken_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Linear handler that resizes the weight but forgets ``in_features`` (a typical handler bug)."""
    good = handlers.HANDLERS[nn.Linear]

    def forgetful(m, use, in_idx, out_idx):
        in_features = m.in_features
        good(m, use, in_idx, out_idx)
        m.in_features = in_features

    monkeypatch.setitem(handlers.HANDLERS, nn.Linear, forgetful)


def test_apply_names_the_layer_a_broken_handler_left_inconsistent(broken_linear: None):
    m = timm.create_model("test_resnet")
    p = redistribute.plan(m, "d", input_size=(3, 64, 64))
    with pytest.raises(RebuildError, match=r"rebuilt layer 'fc' \(Linear\).*in_features"):
        redistribute.apply(m, p)


def test_a_wrong_forward_or_param_count_is_caught():
    m = timm.create_model("test_resnet")
    p = redistribute.plan(m, "d", input_size=(3, 64, 64))
    new = redistribute.apply(m, p)
    verify(new, p)  # the real rebuild passes
    new.fc = nn.Linear(new.fc.in_features + 8, new.fc.out_features)  # consistent layer, wrong width for its input
    with pytest.raises(RebuildError, match=r"parameters, the plan says"):
        verify(new, p)
    held = float(sum(x.numel() for x in new.parameters()))
    with pytest.raises(RebuildError, match=r"ResNet fails at forward"):
        verify(new, replace(p, cost=replace(p.cost, params=held)))


def test_cli_writes_nothing_when_the_rebuild_fails(broken_linear: None, tmp_path: Path):
    out = tmp_path / "result"
    res = CliRunner().invoke(app, ["timm:test_resnet", "-t", "d", "--input-size", "3,64,64", "--out", str(out)])
    assert res.exit_code == 1, res.stderr
    assert "error: rebuilt layer 'fc' (Linear) is inconsistent" in " ".join(res.stderr.split())
    assert not out.exists()


def test_verify_checks_output_shapes_against_the_base():
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    p = redistribute.plan(m, "b", input_size=(3, 16, 16), match="none")
    assert p.graph.output_shapes == ((1, 4, 14, 14),)
    new = redistribute.apply(m, p)
    new.append(nn.Upsample(scale_factor=2))  # no parameters, no resized layer: only the output shape betrays it
    with pytest.raises(RebuildError, match=r"returns shapes \[\(1, 4, 28, 28\)\], the base \[\(1, 4, 14, 14\)\]"):
        verify(new, p)


def test_a_batch_norm_left_at_its_old_width_fails_the_forward_check():
    m = timm.create_model("test_resnet")
    p = redistribute.plan(m, "d", input_size=(3, 64, 64))
    new = redistribute.apply(m, p)
    new.bn1 = nn.BatchNorm2d(new.bn1.num_features + 8)  # self-consistent, but not its input's width
    held = float(sum(x.numel() for x in new.parameters()))
    with pytest.raises(RebuildError, match=r"fails at forward"):
        verify(new, replace(p, cost=replace(p.cost, params=held)))


def test_a_half_precision_model_is_checked_in_its_own_dtype():
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).to(torch.bfloat16)
    p = redistribute.plan(m, "b", input_size=(3, 16, 16), match="none", divisor=1)
    new = redistribute.apply(m, p)  # a float32 input would fail the check on a bfloat16 model
    assert new[0].weight.dtype == torch.bfloat16 and new[0].out_channels == p.widths[1]
