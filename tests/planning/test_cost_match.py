"""Analytic cost against real counts, and FLOPs matching by bisection on the width multiplier."""

from __future__ import annotations

import math
import statistics

import pytest
import timm
import torch
from conftest import INPUT, flop_counter_macs, leaf_output_bytes, make_net, num_params
from torch import nn

import redistribute
from redistribute import ChannelGraph, CostModel, InfeasibleTargetError, UsageError

TIMM_MODELS = ["test_resnet", "test_efficientnet", "test_convnext", "test_byobnet", "test_efficientnet_gn"]
SIZE = (3, 64, 64)
TEMPLATES = ["a", "b", "c", "d", "e"]
# models built only from torch.nn leaves, where "a forward hook on each leaf module" is well defined
# (timm's BatchNormAct2d is a leaf to the tracer but has Identity/ReLU children, so a hook count differs there)
MEMORY_MODELS = {"test_resnet"}

_cache: dict[str, tuple[nn.Module, ChannelGraph]] = {}


def timm_model(name: str) -> tuple[nn.Module, ChannelGraph]:
    """A timm test model (eval mode, seeded) and its graph at 64x64, built once per session."""
    if name not in _cache:
        torch.manual_seed(0)
        m = timm.create_model(name).eval()
        _cache[name] = (m, redistribute.trace(m, SIZE))
    return _cache[name]


@pytest.fixture(scope="module")
def resnet50_graph() -> ChannelGraph:
    return redistribute.trace(timm.create_model("resnet50"), SIZE)


def assert_costs_exact(model: nn.Module, plan: redistribute.Plan, x: torch.Tensor) -> None:
    assert plan.cost.flops == flop_counter_macs(model, x)
    assert plan.cost.params == num_params(model)


# -- analytic cost == real counts -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", TIMM_MODELS)
def test_base_cost_equals_counters_timm(name: str) -> None:
    m, g = timm_model(name)
    x = torch.randn(1, *SIZE)
    cm = CostModel(g)
    base = g.base_widths()
    assert cm.flops(base) == flop_counter_macs(m, x)
    assert cm.params(base) == num_params(m) == g.base_params
    if name in MEMORY_MODELS:
        assert cm.memory(base) == leaf_output_bytes(m, x)


@pytest.mark.parametrize("name", TIMM_MODELS)
@pytest.mark.parametrize("template", ["a", "d"])
def test_redistributed_cost_equals_counters_timm(name: str, template: str) -> None:
    m, g = timm_model(name)
    p = redistribute.plan(g, template, divisor=1)
    assert p.changed()
    new = redistribute.apply(m, p).eval()
    x = torch.randn(1, *SIZE)
    assert_costs_exact(new, p, x)
    if name in MEMORY_MODELS:
        assert p.cost.memory == leaf_output_bytes(new, x)
    cm = CostModel(g)
    assert p.cost.flops == cm.flops(p.widths) and p.cost.params == cm.params(p.widths)


@pytest.mark.parametrize("net", ["plain", "residual", "dwse", "dense", "grouped"])
def test_base_cost_equals_counters_hand_built(net: str) -> None:
    m = make_net(net)
    g = redistribute.trace(m, INPUT)
    x = torch.randn(1, *INPUT)
    cm = CostModel(g)
    assert cm.flops(g.base_widths()) == flop_counter_macs(m, x)
    assert cm.params(g.base_widths()) == num_params(m)
    assert cm.memory(g.base_widths()) == leaf_output_bytes(m, x)


@pytest.mark.parametrize("net", ["plain", "residual", "dwse", "dense", "grouped"])
@pytest.mark.parametrize("template", ["d", "e"])
def test_redistributed_cost_equals_counters_hand_built(net: str, template: str) -> None:
    m = make_net(net)
    p = redistribute.plan(m, template, divisor=1, input_size=INPUT)
    assert p.changed()
    new = redistribute.apply(m, p).eval()
    x = torch.randn(1, *INPUT)
    assert_costs_exact(new, p, x)
    assert p.cost.memory == leaf_output_bytes(new, x)


def test_grouped_conv_cost_follows_width() -> None:
    """A grouped conv keeping groups=4: MACs = positions * k * cin * cout / 4."""
    from redistribute.planning.planner import plan_from_widths

    m = make_net("grouped")
    g = redistribute.trace(m, INPUT)
    gin = next(grp for grp in g.groups if "conv1" in grp.producers)
    gout = next(grp for grp in g.groups if "conv2" in grp.producers)
    p = plan_from_widths(g, {gin.id: 48, gout.id: 96})
    new = redistribute.apply(m, p)
    assert new.conv2.groups == 4 and new.conv2.weight.shape == (96, 12, 3, 3)
    assert_costs_exact(new, p, torch.randn(1, *INPUT))


def test_cost_model_delta_matches_difference(residual_net: nn.Module) -> None:
    g = redistribute.trace(residual_net, INPUT)
    cm = CostModel(g)
    w = g.base_widths()
    for grp in g.free_groups():
        for metric in ("flops", "params", "memory"):
            moved = dict(w)
            moved[grp.id] += 8
            d = cm.delta(metric, w, grp.id, w[grp.id] + 8)
            assert d == pytest.approx(cm.evaluate(metric, moved) - cm.evaluate(metric, w))
            assert d > 0
    assert w == g.base_widths()  # delta restores the widths it probes
    with pytest.raises(ValueError):
        cm.evaluate("latency", w)


def test_memory_counts_custom_activation_modules() -> None:
    class Swish(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(x)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.act, self.conv2 = nn.Conv2d(3, 8, 3), Swish(), nn.Conv2d(8, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv2(self.act(self.conv1(x))).mean((2, 3))

    m = Net()
    g = redistribute.trace(m, (3, 16, 16))
    assert CostModel(g).memory(g.base_widths()) == leaf_output_bytes(m, torch.randn(1, 3, 16, 16))


def test_cost_report(plain_net: nn.Module) -> None:
    p = redistribute.plan(plain_net, "e", divisor=1, input_size=INPUT)
    assert p.base_cost.get("flops") == p.base_cost.flops
    r = p.cost.ratios(p.base_cost)
    assert set(r) == {"flops", "params", "memory"}
    assert r["flops"] == pytest.approx(p.cost.flops / p.base_cost.flops)


# -- matching -------------------------------------------------------------------------------------------------
def _rel(p: redistribute.Plan, metric: str = "flops") -> float:
    return abs(p.cost.get(metric) / p.base_cost.get(metric) - 1)


@pytest.mark.parametrize("name", ["test_efficientnet", "test_convnext", "test_byobnet", "test_efficientnet_gn"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_each_template_matches_flops_within_tolerance(name: str, template: str) -> None:
    _, g = timm_model(name)
    p = redistribute.plan(g, template)
    assert _rel(p) <= 0.005
    assert p.template == template and p.match == "flops" and p.divisor == 8
    assert p.target == p.base_cost.flops
    assert p.achieved == p.cost.flops
    assert p.changed(), "a template other than the model's own trend must change widths"
    steps = p.distribution.steps
    for gid in p.distribution.free:
        assert p.widths[gid] >= steps[gid] and p.widths[gid] % steps[gid] == 0
    for grp in g.groups:
        if grp.fixed is not None:
            assert p.widths[grp.id] == grp.width


@pytest.mark.parametrize("template", ["a", "b", "c", "d"])
def test_resnet_templates_match_flops(template: str) -> None:
    _, g = timm_model("test_resnet")
    p = redistribute.plan(g, template)
    assert _rel(p) <= 0.005


@pytest.mark.parametrize("tolerance", [0.02, 0.001])
def test_tighter_tolerance_is_honoured(tolerance: float) -> None:
    _, g = timm_model("test_convnext")
    p = redistribute.plan(g, "d", tolerance=tolerance, divisor=1)
    assert _rel(p) <= tolerance
    assert p.tolerance == tolerance


@pytest.mark.parametrize("metric", ["params", "memory"])
def test_match_other_metrics(metric: str) -> None:
    m, g = timm_model("test_efficientnet")
    p = redistribute.plan(g, "d", match=metric)
    assert _rel(p, metric) <= 0.005
    assert p.match == metric and p.achieved == p.cost.get(metric)
    if metric == "params":
        assert num_params(redistribute.apply(m, p)) == p.cost.params


def test_explicit_target() -> None:
    _, g = timm_model("test_efficientnet")
    base = CostModel(g).flops(g.base_widths())
    p = redistribute.plan(g, "b", target=base * 1.5)
    assert abs(p.cost.flops / (base * 1.5) - 1) <= 0.005
    assert p.target == base * 1.5
    assert p.k > redistribute.plan(g, "b").k


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet", "test_convnext", "test_byobnet"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_divisor_one_within_a_tenth_of_a_percent(name: str, template: str) -> None:
    _, g = timm_model(name)
    p = redistribute.plan(g, template, divisor=1)
    assert _rel(p) <= 0.001
    assert p.divisor == 1


@pytest.mark.parametrize("name", TIMM_MODELS)
def test_base_template_gives_exactly_base_widths(name: str) -> None:
    _, g = timm_model(name)
    for kw in ({}, {"match": "none"}, {"divisor": 1}, {"divisor": 64}):
        p = redistribute.plan(g, "base", **kw)
        assert p.widths == g.base_widths(), kw
        assert p.changed() == {}
        assert p.k == 1.0
        assert p.cost == p.base_cost


def test_base_template_with_k_scales_every_free_group(plain_net: nn.Module) -> None:
    g = redistribute.trace(plain_net, INPUT)
    p = redistribute.plan(g, "base", match="none", k=2.0)
    for grp in g.groups:
        assert p.widths[grp.id] == (grp.width * 2 if grp.fixed is None else grp.width)
    assert math.isnan(p.target) and math.isnan(p.achieved)
    assert p.cost.flops > p.base_cost.flops


def test_match_none_uses_given_k() -> None:
    _, g = timm_model("test_efficientnet")
    small = redistribute.plan(g, "b", match="none", k=16.0, divisor=1)
    big = redistribute.plan(g, "b", match="none", k=64.0, divisor=1)
    assert small.k == 16.0 and big.k == 64.0
    assert big.cost.flops > small.cost.flops
    # uniform template: every free group is k * rho (its width over its stage's median), rounded
    d = small.distribution
    for gid in d.free:
        assert small.widths[gid] == max(1, round(16.0 * d.rho[gid]))


def test_infeasible_tolerance(resnet50_graph: ChannelGraph) -> None:
    with pytest.raises(InfeasibleTargetError) as exc:
        redistribute.plan(resnet50_graph, "d", tolerance=1e-12, divisor=64)
    msg = str(exc.value)
    assert "closest" in msg and "--tolerance" in msg
    assert exc.value.exit_code == 1
    assert not isinstance(exc.value, UsageError)


@pytest.mark.parametrize("target", [1.0, 1e3])
def test_infeasible_tiny_target(target: float) -> None:
    _, g = timm_model("test_resnet")
    with pytest.raises(InfeasibleTargetError, match="below the smallest reachable"):
        redistribute.plan(g, "d", target=target)


def test_infeasible_huge_target() -> None:
    _, g = timm_model("test_resnet")
    with pytest.raises(InfeasibleTargetError, match="above"):
        redistribute.plan(g, "b", target=1e300)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tolerance": 0},
        {"tolerance": -0.1},
        {"tolerance": float("nan")},
        {"divisor": 0},
        {"divisor": 2.5},
        {"match": "latency"},
        {"target": 0.0},
        {"target": -5.0},
        {"ratio": 0.5},
        {"ratio": float("inf")},
        {"scope": "everything"},
    ],
)
def test_bad_arguments_are_usage_errors(kwargs: dict) -> None:
    _, g = timm_model("test_resnet")
    with pytest.raises(UsageError) as exc:
        redistribute.plan(g, "d", **kwargs)
    assert exc.value.exit_code == 2


def test_ratio_override() -> None:
    _, g = timm_model("test_convnext")
    p = redistribute.plan(g, "d", ratio=2.0)
    assert p.ratio == 2.0 and p.distribution.ratio == 2.0
    assert redistribute.plan(g, "d").ratio != 2.0


# -- the shape of the result follows the template -------------------------------------------------------------
def _shape_by_position(p: redistribute.Plan) -> tuple[float, float, float]:
    """Mean of width / rho (the template value times k) at the start, middle and end of depth."""
    d = p.distribution
    value = {gid: p.widths[gid] / d.rho[gid] for gid in d.free}
    start = [v for gid, v in value.items() if d.position[gid] <= 0.2]
    middle = [v for gid, v in value.items() if 0.4 <= d.position[gid] <= 0.6]
    end = [v for gid, v in value.items() if d.position[gid] >= 0.8]
    assert start and middle and end
    return statistics.fmean(start), statistics.fmean(middle), statistics.fmean(end)


def test_peak_template_widest_in_the_middle(resnet50_graph: ChannelGraph) -> None:
    p = redistribute.plan(resnet50_graph, "d")
    start, middle, end = _shape_by_position(p)
    assert middle > 2 * start and middle > 2 * end
    assert _rel(p) <= 0.005


def test_valley_template_narrowest_in_the_middle(resnet50_graph: ChannelGraph) -> None:
    start, middle, end = _shape_by_position(redistribute.plan(resnet50_graph, "e"))
    assert middle * 2 < start and middle * 2 < end


def test_increasing_and_decreasing_templates(resnet50_graph: ChannelGraph) -> None:
    a = _shape_by_position(redistribute.plan(resnet50_graph, "a"))
    c = _shape_by_position(redistribute.plan(resnet50_graph, "c"))
    assert a[0] < a[1] < a[2]
    assert c[0] > c[1] > c[2]


def test_uniform_template_is_flat(resnet50_graph: ChannelGraph) -> None:
    start, middle, end = _shape_by_position(redistribute.plan(resnet50_graph, "b", divisor=1))
    assert max(start, middle, end) / min(start, middle, end) < 1.15


def test_control_point_template_matches(resnet50_graph: ChannelGraph) -> None:
    p = redistribute.plan(resnet50_graph, "0:1,0.5:4,1:1")
    start, middle, end = _shape_by_position(p)
    assert middle > 2 * start and middle > 2 * end
    assert _rel(p) <= 0.005
    assert p.template == "0:1,0.5:4,1:1"


def test_callable_template(resnet50_graph: ChannelGraph) -> None:
    p = redistribute.plan(resnet50_graph, lambda q: 1.0 + 3.0 * q)
    start, _, end = _shape_by_position(p)
    assert end > 2 * start and _rel(p) <= 0.005


# -- the fix-up reaches targets two moves away -------------------------------------------------------------------
# (both cases used to end in a local optimum of single one-step moves and raise InfeasibleTargetError)
@pytest.mark.parametrize(
    "case",
    ["test_resnet-e-div8", "plain-a-div1"],
)
def test_matcher_finds_reachable_target(case: str) -> None:
    from redistribute.planning.distribute import distribution

    name, template, div = case.split("-")
    divisor = int(div.removeprefix("div"))
    if name == "plain":
        g = redistribute.trace(make_net("plain"), INPUT)
    else:
        _, g = timm_model(name)
    cm = CostModel(g)
    target = cm.flops(g.base_widths())
    steps = distribution(g, "conv", None, divisor).steps
    # a witness that the target is reachable within 0.5 % at these rounding steps: with divisor 1 the base widths
    # themselves; otherwise some pair of single-step moves from the loosely matched widths
    witness = g.base_widths() if divisor == 1 else None
    if witness is None:
        loose = redistribute.plan(g, template, divisor=divisor, tolerance=0.05).widths
        free = [grp.id for grp in g.free_groups()]
        moves = [(gid, sign * steps[gid]) for gid in free for sign in (1, -1, 2, -2)]
        for i, (ga, da) in enumerate(moves):
            for gb, db in [*moves[i:], (ga, 0)]:
                w = dict(loose)
                w[ga] += da
                w[gb] += db
                if min(w[gid] for gid in free) >= 1 and abs(cm.flops(w) / target - 1) <= 0.005:
                    witness = w
                    break
            if witness:
                break
    assert witness is not None
    p = redistribute.plan(g, template, divisor=divisor)
    assert _rel(p) <= 0.005
    assert all(p.widths[gid] % steps[gid] == 0 for gid in p.distribution.free)
