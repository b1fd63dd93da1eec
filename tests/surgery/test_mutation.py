"""The caller's model is never changed by ``trace``, ``plan``, ``apply`` or ``redistribute`` -- only by ``apply_``.

A snapshot records everything a caller could notice: every tensor's bytes (the state-dict hash), every module's
plain attributes (widths, strides, timm's ``feature_info``/``num_features``), training flags, hooks, and each
parameter's identity, ``requires_grad``, dtype, device and ``.grad``.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import timm
import torch
from conftest import HAND_BUILT, INPUT, make_net, state_hash
from torch import nn

import redistribute
from redistribute import ConstraintError
from redistribute.planning.planner import plan_from_widths

SIZE = (3, 64, 64)


def _freeze(value: Any) -> Any:
    """A comparable copy of a plain attribute; tensors and modules are covered elsewhere, callables by identity."""
    if isinstance(value, (torch.Tensor, nn.Module)):
        return None
    if callable(value):
        return ("callable", id(value))
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_freeze(v) for v in value)
    try:
        return copy.deepcopy(value)
    except Exception:  # an attribute that cannot be copied: compare its identity
        return ("object", id(value))


_HOOKS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def snapshot(model: nn.Module) -> dict[str, Any]:
    modules = {}
    for name, m in model.named_modules():
        attrs = {
            k: _freeze(v)
            for k, v in vars(m).items()
            if k not in ("_parameters", "_buffers", "_modules", *_HOOKS) and not k.startswith("_is_")
        }
        modules[name] = {
            "type": type(m),
            "training": m.training,
            "attrs": attrs,
            "params": tuple(m._parameters),
            "buffers": tuple(m._buffers),
            "children": tuple(m._modules),
            "hooks": {h: tuple(getattr(m, h, {})) for h in _HOOKS},
            "forward": vars(m).get("forward"),
        }
    params = [
        (n, id(p), p.requires_grad, p.dtype, p.device, None if p.grad is None else p.grad.clone())
        for n, p in model.named_parameters()
    ]
    return {"state": state_hash(model), "modules": modules, "params": params}


def assert_unchanged(before: dict[str, Any], model: nn.Module) -> None:
    after = snapshot(model)
    assert after["state"] == before["state"], "tensor values changed"
    assert after["modules"].keys() == before["modules"].keys(), "modules added or removed"
    for name, mod in before["modules"].items():
        assert after["modules"][name] == mod, f"module {name or '<root>'} changed"
    assert len(after["params"]) == len(before["params"])
    for a, b in zip(after["params"], before["params"], strict=True):
        assert a[:5] == b[:5], f"parameter {a[0]} was replaced or changed"
        assert (a[5] is None) == (b[5] is None) and (a[5] is None or torch.equal(a[5], b[5]))


def _prepared(model: nn.Module, train: bool) -> nn.Module:
    """A model as a caller might hold it: a hook, gradients, a frozen parameter, train or eval mode."""
    model.train(train)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    first.register_forward_hook(lambda mod, inp, out: None)
    first.weight.requires_grad_(False)
    x = torch.randn(2, *(INPUT if not hasattr(model, "pretrained_cfg") else SIZE))
    model(x).float().pow(2).mean().backward()
    return model


MODELS = [*(f"hand:{n}" for n in sorted(HAND_BUILT)), "timm:test_resnet", "timm:test_efficientnet"]


def _model(spec: str) -> tuple[nn.Module, tuple[int, ...]]:
    kind, name = spec.split(":")
    if kind == "hand":
        return make_net(name), INPUT
    torch.manual_seed(0)
    return timm.create_model(name), SIZE


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", MODELS)
def test_trace_plan_apply_leave_the_model_alone(name: str, train: bool) -> None:
    model, size = _model(name)
    model = _prepared(model, train)
    before = snapshot(model)
    graph = redistribute.trace(model, size)
    assert_unchanged(before, model)
    plan = redistribute.plan(model, "d", divisor=1, tolerance=0.05, input_size=size)
    assert_unchanged(before, model)
    assert plan.changed()
    new = redistribute.apply(model, plan)
    assert_unchanged(before, model)
    assert new is not model
    assert not {id(p) for p in new.parameters()} & {id(p) for p in model.parameters()}, "the copy shares parameters"
    again, _ = redistribute.redistribute(model, "c", divisor=1, tolerance=0.05, input_size=size)
    assert_unchanged(before, model)
    # and the rebuilt models really differ from it: the snapshot would have seen the change
    assert state_hash(new) != before["state"] and state_hash(again) != before["state"]
    assert graph.groups == redistribute.trace(model, size).groups


def test_apply_underscore_changes_the_model_in_place() -> None:
    model = make_net("plain")
    before = snapshot(model)
    plan = redistribute.plan(model, "a", divisor=1, tolerance=0.05, input_size=INPUT)
    out = redistribute.apply_(model, plan)
    assert out is model
    with pytest.raises(AssertionError, match="changed"):
        assert_unchanged(before, model)
    widths = {g.signature: plan.widths[g.id] for g in plan.graph.groups}
    assert widths["conv1"] != 8
    assert model.conv1.out_channels == widths["conv1"] == model.conv1.weight.shape[0]


def test_failing_apply_leaves_the_model_alone() -> None:
    """A plan that breaks a constraint fails before anything is copied or resized."""
    model = make_net("grouped")
    before = snapshot(model)
    graph = redistribute.trace(model, INPUT)
    gid = next(g.id for g in graph.groups if "conv1" in g.producers)
    plan = plan_from_widths(graph, {gid: 16})
    bad = copy.copy(plan)
    object.__setattr__(bad, "widths", {**plan.widths, gid: 30})  # not a multiple of the grouped conv's 4 groups
    with pytest.raises(ConstraintError):
        redistribute.apply(model, bad)
    with pytest.raises(ConstraintError):
        redistribute.apply_(model, bad)
    assert_unchanged(before, model)


def test_failing_plan_leaves_the_model_alone() -> None:
    model = make_net("residual")
    before = snapshot(model)
    with pytest.raises(redistribute.InfeasibleTargetError):
        redistribute.plan(model, "a", target=1.0, input_size=INPUT)
    with pytest.raises(redistribute.TemplateError):
        redistribute.plan(model, lambda p: float("nan"), input_size=INPUT)
    assert_unchanged(before, model)


def test_snapshot_notices_attribute_and_hook_changes() -> None:
    """The checks above can fail: each kind of change a surgery bug could make is caught."""
    edits = [
        lambda m: setattr(m.conv1, "stride", (2, 2)),
        lambda m: m.train(not m.training),
        lambda m: m.conv2.register_forward_pre_hook(lambda mod, inp: None),
        lambda m: setattr(m, "fc", nn.Linear(32, 10)),
        lambda m: m.bn1.running_mean.add_(1.0),
        lambda m: m.conv1.weight.requires_grad_(False),
        lambda m: setattr(m.conv1, "forward", m.conv1.forward),
    ]
    for edit in edits:
        model = make_net("plain")
        before = snapshot(model)
        edit(model)
        with pytest.raises(AssertionError):
            assert_unchanged(before, model)
