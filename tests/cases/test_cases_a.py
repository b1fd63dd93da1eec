"""The shared cases (``../shared/cases``, README there) and zoo models of issue 14, part A: each as its README's
"what is right" says: a forward with the base output shapes, analytic FLOPs and params equal to torch's count of
the rebuilt model, the template's shape visible in the widths, and structure kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from conftest import SHARED_CASES, flop_counter_macs, load_case, num_params
from torch import nn
from torch.nn import functional as F

import redistribute
from redistribute.surgery.rebuild import channel_scores, select_channels

CASES = SHARED_CASES


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


# Heads that read other attributes: ViT-style ``embed_dim`` (ViTamin, TNT), a tuple of stage widths behind a list of
# heads (EfficientViM), a head whose own ``in_features`` sits above the classifier (EfficientViT-MIT's
# ``head.classifier[-1]``).
@pytest.mark.parametrize(
    ("name", "scope", "kwargs"),
    [
        ("efficientvim_m1", "conv", {}),
        ("efficientvit_b0", "conv", {}),
        ("vitamin_small_224", "conv", {"img_size": 64, "depth": 2}),
        ("tnt_s_legacy_patch16_224", "all", {"img_size": 64, "depth": 2}),
    ],
)
def test_reset_classifier_reads_the_new_widths(name: str, scope: str, kwargs: dict):
    model = timm.create_model(name, **kwargs).eval()
    plan = redistribute.plan(model, "d", input_size=(3, 64, 64), scope=scope)
    new = redistribute.apply(model, plan).eval()
    new.reset_classifier(7)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert new(x).shape == (2, 7)
        # timm's contract: head_hidden_size is the width of forward_head(pre_logits=True)
        assert new.forward_head(new.forward_features(x), pre_logits=True).shape[-1] == new.head_hidden_size


def widths_plan(graph: redistribute.ChannelGraph, change) -> redistribute.Plan:
    """A plan that sets every free group's width to ``change(group)`` (rounded to its constraints)."""
    from redistribute.planning.planner import plan_from_widths

    widths = {}
    for g in graph.groups:
        if g.fixed is None and g.tie is None:
            step = max(g.multiple, g.block, 1)
            widths[g.id] = max(step, round(change(g) / step) * step)
    return plan_from_widths(graph, widths)


def grows_preserving(model: nn.Module, graph: redistribute.ChannelGraph, extra: int = 8) -> float:
    """Largest output change of a grow-only plan (every free group ``+extra``), inputs at batch 2."""
    plan = widths_plan(graph, lambda g: g.width + extra)
    new = check_rebuild(model, plan)
    x = torch.randn(2, *graph.input_shape[1:])
    with torch.no_grad():
        return float((new(x) - model(x)).abs().max())


# -- prelu.py: PReLU(C) resizes with its group, PReLU() passes through ---------------------------------------------
def test_prelu_per_channel_slopes_follow_their_group():
    case = load_case("prelu")
    model = case.make()
    graph = redistribute.trace(model, input_size=case.INPUT_SIZE)
    assert not [g.fixed for g in graph.groups if g.fixed and "PReLU" in g.fixed]
    stream = next(g for g in graph.groups if "stem.0" in g.producers)
    assert stream.fixed is None and {"stem.2", "b1.act2"} <= set(stream.members)
    assert "shared_act" not in {m for g in graph.groups for m in g.members}  # PReLU(): one slope, no group
    plan = redistribute.plan(graph, "a", divisor=1)
    assert plan.changed()
    new = check_rebuild(model, plan)
    assert new.stem[2].num_parameters == new.stem[2].weight.numel() == plan.widths[stream.id]
    assert new.shared_act.num_parameters == 1
    shrink = widths_plan(graph, lambda g: g.width // 2)
    new = check_rebuild(model, shrink)
    kept = select_channels(model, shrink)[stream.id]
    assert torch.equal(new.stem[2].weight, model.stem[2].weight[kept])  # the kept channels keep their own slopes
    assert grows_preserving(model, graph) < 1e-5


# -- depthwise_multiplier.py: a depthwise conv with a channel multiplier stays depthwise ------------------------------
def test_depthwise_multiplier_stays_depthwise():
    case = load_case("depthwise_multiplier")
    model = case.make()
    graph = redistribute.trace(model, input_size=case.INPUT_SIZE)
    for template in ("a", "b", "d"):
        plan = redistribute.plan(graph, template, divisor=1)
        new = check_rebuild(model, plan)
        for block in (new.b1, new.b2, new.b3):
            dw = block.dw
            assert dw.groups == dw.in_channels and dw.out_channels == 2 * dw.in_channels, (template, dw)
            assert block.pw.in_channels == dw.out_channels
    assert grows_preserving(model, graph) < 1e-5
    # shrinking keeps each kept input channel's own pair of filters
    shrink = widths_plan(graph, lambda g: g.width // 2)
    new = check_rebuild(model, shrink)
    kept = select_channels(model, shrink)[next(g.id for g in graph.groups if "b3.dw" in g.producers)]
    rows = (kept.view(-1, 1) * 2 + torch.arange(2)).flatten()
    assert torch.equal(new.b3.dw.weight, model.b3.dw.weight[rows])


# -- module_reuse.py: a module called twice holds its parameters once; FLOPs count every call -----------------------
@pytest.mark.parametrize("template", ["a", "b", "d"])
def test_shared_modules_count_params_once_and_flops_per_call(template: str):
    case = load_case("module_reuse")
    model = case.make()
    graph = redistribute.trace(model, input_size=case.INPUT_SIZE)
    assert sum(u.module == "rec.conv" for u in graph.uses) == 2 and sum(u.module == "shared" for u in graph.uses) == 2
    check_rebuild(model, redistribute.plan(graph, template, divisor=1))  # FLOPs of both calls, params once
    base = num_params(model)
    for target in (0.7 * base, 1.3 * base):
        matched = redistribute.plan(graph, template, "params", target=target, divisor=1)
        assert matched.changed()
        new = check_rebuild(model, matched)
        assert num_params(new) == round(matched.cost.params)
        assert abs(num_params(new) - target) <= matched.tolerance * target


# -- vovnet_se_views.py: y.view(b, c, 1, 1) with c from x.size(), gating x, stays in x's group ------------------------
def test_se_view_sized_from_the_gated_tensor_keeps_its_group_free():
    case = load_case("vovnet_se_views")
    model = case.make()
    graph = redistribute.trace(model, input_size=case.INPUT_SIZE)
    gated = next(g for g in graph.groups if "s2.concat.0" in g.producers)
    assert gated.fixed is None, gated.fixed
    assert "se.fc2" in gated.producers and "se.fc1" in gated.consumers
    for template in ("a", "d"):
        plan = redistribute.plan(graph, template, divisor=1)
        assert plan.widths[gated.id] != gated.width
        new = check_rebuild(model, plan)
        assert new.se.fc2.out_features == new.s2.concat[0].out_channels == plan.widths[gated.id]
    assert grows_preserving(model, graph) < 1e-5


# -- inputs: 1-D inputs in the CLI, several required inputs refused, no internal module names -----------------------
def cli(*args: str):
    from typer.testing import CliRunner

    from redistribute.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_takes_a_1d_input_size_like_the_api():
    path = CASES / "linear_to_convtranspose.py"
    case = load_case("linear_to_convtranspose")  # skips when absent
    res = cli(f"{path}:make", "--input-size", "32", "-t", "b", "--json")
    assert res.exit_code == 0, res.stderr
    api = redistribute.plan(case.make(), "b", input_size=(32,))
    assert json.loads(res.stdout)["totals"]["flops"]["base"] == api.base_cost.flops


TWO_INPUTS = """
import torch
from torch import nn
from torch.nn import functional as F

class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.fc = nn.Conv2d(3, 8, 3), nn.Conv2d(3, 8, 3), nn.Linear(8, 2)

    def forward(self, x, y):
        return self.fc((self.a(x) + self.b(y)).mean((2, 3)))

class Vector(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(x)

def two():
    return Two()

def vector():
    return Vector()
"""


def test_two_required_inputs_are_refused_in_one_line(tmp_path: Path):
    (tmp_path / "nets.py").write_text(TWO_INPUTS)
    res = cli(f"{tmp_path / 'nets.py'}:two", "--input-size", "3,16,16")
    assert res.exit_code == 1
    error = " ".join(res.stderr.split("error:", 1)[1].split())
    assert error.startswith("Two.forward takes 2 required inputs (x, y)")
    with pytest.raises(redistribute.TraceError, match=r"takes 2 required inputs"):
        redistribute.trace(redistribute.load_model(f"{tmp_path / 'nets.py'}:two"), input_size=(3, 16, 16))


def test_messages_name_the_file_not_the_internal_module(tmp_path: Path):
    (tmp_path / "nets.py").write_text(TWO_INPUTS)
    res = cli(f"{tmp_path / 'nets.py'}:vector", "--input-size", "8")
    assert res.exit_code == 1
    assert "nets.py:Vector" in res.stderr and "_redistribute_user_" not in res.stderr
    graph = redistribute.trace(redistribute.load_model(f"{tmp_path / 'nets.py'}:vector"), input_size=(8,))
    assert graph.model_class == "nets.py:Vector"


# -- linear_to_convtranspose.py: Linear -> view(-1, C, 4, 4) -> ConvTranspose2d ---------------------------------------
def test_vector_to_feature_map_view_keeps_channels_or_names_the_view():
    case = load_case("linear_to_convtranspose")
    model = case.make()
    graph = redistribute.trace(model, input_size=case.INPUT_SIZE)
    fc = next(g for g in graph.groups if "fc" in g.producers)
    # C is the literal 64 (read from self.up1.in_channels when traced): the reason names the view, not heads
    assert fc.width == 64 and "reshape 'view' has the literal size 64" in (fc.fixed or "")
    assert "head" not in (fc.fixed or "")
    assert redistribute.plan(graph, "a", divisor=1).changed()  # the conv groups after it are free

    class SizedFromTensor(type(model)):  # the same generator with C inferred: view(n, -1, 4, 4)
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.fc(z)).view(z.shape[0], -1, 4, 4)
            x = torch.relu(self.bn1(self.up1(x)))
            return torch.tanh(self.to_rgb(torch.relu(self.bn2(self.up2(x)))))

    free = SizedFromTensor()
    graph = redistribute.trace(free, input_size=case.INPUT_SIZE)
    fc = next(g for g in graph.groups if "fc" in g.producers)
    assert fc.fixed is None and fc.width == 64 and "up1" in fc.consumers  # each channel owns 16 of fc's features
    plan = redistribute.plan(graph, "a", divisor=1, scope="all")
    assert plan.widths[fc.id] != 64
    new = check_rebuild(free, plan)
    assert new.fc.out_features == 16 * new.up1.in_channels == 16 * plan.widths[fc.id]
    assert grows_preserving(free, graph) < 1e-5


def test_bn_importance_ignores_prelu_slopes():
    case = load_case("prelu")
    model = case.make()
    graph = redistribute.trace(model, input_size=case.INPUT_SIZE)
    stream = next(g for g in graph.groups if "stem.0" in g.producers)
    scores = channel_scores(model, graph, "bn")[stream.id]
    bns = [model.stem[1], model.b1.bn2]  # the BatchNorms of the stream; its PReLUs are not scales
    assert torch.allclose(scores, sum(bn.weight.detach().abs().double() for bn in bns))


# -- torchvision:convnext_tiny: the CLI never writes a model whose forward fails -------------------------------------
def test_cli_writes_only_models_that_run(tmp_path: Path):
    out = tmp_path / "convnext"
    res = cli("torchvision:convnext_tiny", "-t", "a", "--input-size", "3,64,64", "--out", str(out))
    if res.exit_code == 0:  # once LayerNorm2d follows its group: the written model must run
        model = redistribute.load(out / "spec.json", weights=out / "weights.safetensors")
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    else:  # today LayerNorm2d keeps 96 channels: refused by the rebuild check, nothing written
        assert res.exit_code == 1 and "fails at forward" in " ".join(res.stderr.split())
        assert not out.exists()


def test_functional_prelu_slopes_follow_their_group():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.fc = nn.Conv2d(3, 16, 3), nn.Conv2d(16, 8, 3), nn.Linear(8, 4)
            self.slope, self.one = nn.Parameter(torch.rand(16)), nn.Parameter(torch.tensor([0.2]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = F.prelu(self.a(x), self.slope)
            return self.fc(F.prelu(self.b(y), self.one).mean((2, 3)))

    model = Net()
    graph = redistribute.trace(model, input_size=(3, 16, 16))
    a, b = (next(g for g in graph.groups if name in g.producers) for name in ("a", "b"))
    assert a.fixed is None and b.fixed is None and a.members == ("slope",)
    plan = widths_plan(graph, lambda g: g.width // 2)
    new = check_rebuild(model, plan)
    assert new.slope.shape == (8,) and new.one.shape == (1,)
    assert torch.equal(new.slope, model.slope[select_channels(model, plan)[a.id]])
    assert grows_preserving(model, graph) < 1e-5
