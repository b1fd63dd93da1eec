"""Surgery: rebuilt models run, growing keeps the function, channels are chosen by importance, metadata is fixed."""

from __future__ import annotations

import dataclasses

import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import HAND_BUILT, INPUT, group_of, make_net, num_params, state_hash
from torch import nn

import redistribute
from redistribute import ConstraintError, UsageError
from redistribute.planning.planner import plan_from_widths
from redistribute.surgery.rebuild import select_channels

SIZE = (3, 64, 64)
TEMPLATES = ["base", "a", "b", "c", "d", "e"]


def _timm(name: str) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name).eval()


@pytest.fixture(scope="module")
def timm_models() -> dict[str, tuple[nn.Module, redistribute.ChannelGraph]]:
    out = {}
    for name in ("test_resnet", "test_efficientnet", "test_convnext"):
        m = _timm(name)
        out[name] = (m, redistribute.trace(m, SIZE))
    return out


# -- every template rebuilds a working model ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet", "test_convnext"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_rebuilt_model_runs(timm_models: dict, name: str, template: str) -> None:
    m, g = timm_models[name]
    p = redistribute.plan(g, template, divisor=4)
    new = redistribute.apply(m, p)
    assert type(new) is type(m)
    x = torch.randn(2, *SIZE)
    new.eval()
    with torch.no_grad():
        y = new(x)
    assert y.shape == (2, 1000)
    assert torch.isfinite(y).all()
    assert num_params(new) == p.cost.params
    if template == "base":
        assert state_hash(new) == state_hash(m)
    else:
        assert p.changed()
        # every changed group: its producers really have the new width
        for gid, (_, width) in p.changed().items():
            for prod in g.groups[gid].producers:
                mod = new.get_submodule(prod)
                assert mod.weight.shape[0] == width, prod
    # training step: gradients reach every parameter, shapes stay consistent
    new.train()
    new(x).logsumexp(1).sum().backward()
    assert all(prm.grad is not None and prm.grad.shape == prm.shape for prm in new.parameters() if prm.requires_grad)


@pytest.mark.parametrize("net", sorted(HAND_BUILT))
def test_rebuilt_hand_built_nets_run(net: str) -> None:
    m = make_net(net)
    p = redistribute.plan(m, "d", divisor=1, input_size=INPUT)
    assert p.changed()
    new = redistribute.apply(m, p)
    assert new(torch.randn(2, *INPUT)).shape == (2, 10)
    for gid, (_, width) in p.changed().items():
        grp = p.graph.groups[gid]
        for prod in grp.producers:
            assert new.get_submodule(prod).weight.shape[0] == width
        for name in grp.members:
            bn = new.get_submodule(name)
            assert bn.num_features == bn.weight.numel() == bn.running_mean.numel()
            owners = [other for other in p.graph.groups if name in other.members]
            assert bn.num_features == sum(p.widths[o.id] for o in owners)  # a norm over a concat spans its parts


def test_rebuilt_module_attributes_are_consistent(grouped_net: nn.Module) -> None:
    g = redistribute.trace(grouped_net, INPUT)
    a, b = group_of(g, "conv1"), group_of(g, "conv2")
    new = redistribute.apply(grouped_net, plan_from_widths(g, {a.id: 16, b.id: 40}))
    assert (new.conv1.in_channels, new.conv1.out_channels) == (16, 16)
    assert (new.conv2.in_channels, new.conv2.out_channels, new.conv2.groups) == (16, 40, 4)
    assert new.conv2.weight.shape == (40, 4, 3, 3)
    assert new.conv3.in_channels == 40 and new.bn2.num_features == 40
    assert new(torch.randn(1, *INPUT)).shape == (1, 10)


def test_concat_consumers_are_resized_per_part(dense_net: nn.Module) -> None:
    g = redistribute.trace(dense_net, INPUT)
    stem, l1, l2 = group_of(g, "stem"), group_of(g, "layer1"), group_of(g, "layer2")
    new = redistribute.apply(dense_net, plan_from_widths(g, {stem.id: 8, l1.id: 12, l2.id: 4}))
    assert new.layer1.in_channels == 8
    assert new.layer2.in_channels == 8 + 12
    assert new.transition.in_channels == 8 + 12 + 4
    assert new.norm.num_features == 24
    assert new(torch.randn(1, *INPUT)).shape == (1, 10)


# -- growing keeps the function -------------------------------------------------------------------------------
def _assert_grow_only(m: nn.Module, size: tuple[int, ...]) -> None:
    p = redistribute.plan(m, "base", match="none", k=1.5, input_size=size)
    changed = p.changed()
    assert changed and all(new > old for old, new in changed.values())
    new = redistribute.apply(m, p).eval()
    m.eval()
    x = torch.randn(2, *size)
    with torch.no_grad():
        ref, out = m(x), new(x)
    assert num_params(new) > num_params(m)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("net", sorted(HAND_BUILT))
def test_grow_only_preserves_outputs_hand_built(net: str) -> None:
    _assert_grow_only(make_net(net), INPUT)


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet"])
def test_grow_only_preserves_outputs_timm(name: str) -> None:
    _assert_grow_only(_timm(name), SIZE)


def test_grow_by_hand_set_widths_preserves_outputs(residual_net: nn.Module) -> None:
    g = redistribute.trace(residual_net, INPUT)
    stream = group_of(g, "conv3")
    p = plan_from_widths(g, {stream.id: 40})
    new = redistribute.apply(residual_net, p)
    # old channels first, in their order, then the new ones
    assert torch.equal(new.conv3.weight[:32], residual_net.conv3.weight)
    assert torch.equal(new.proj.weight[:32], residual_net.proj.weight)
    assert torch.equal(new.conv4.weight[:, 32:], torch.zeros(8, 8, 1, 1))
    assert torch.equal(new.bn3.running_var[32:], torch.ones(8))
    x = torch.randn(1, *INPUT)
    with torch.no_grad():
        torch.testing.assert_close(new(x), residual_net(x), atol=1e-5, rtol=1e-5)


# -- shrinking keeps the most important channels --------------------------------------------------------------
def test_shrink_keeps_largest_l1_channels_in_order(plain_net: nn.Module) -> None:
    g = redistribute.trace(plain_net, INPUT)
    grp = group_of(g, "conv2")
    norms = plain_net.conv2.weight.detach().abs().sum((1, 2, 3))
    keep = torch.sort(torch.topk(norms, 6).indices).values
    new = redistribute.apply(plain_net, plan_from_widths(g, {grp.id: 6}))
    assert torch.equal(new.conv2.weight, plain_net.conv2.weight[keep])
    assert torch.equal(new.bn2.weight, plain_net.bn2.weight[keep])
    assert torch.equal(new.bn2.running_mean, plain_net.bn2.running_mean[keep])
    assert torch.equal(new.conv3.weight, plain_net.conv3.weight[:, keep])
    assert new.conv2.out_channels == 6 and new.conv3.in_channels == 6 and new.bn2.num_features == 6


def test_shrink_by_bn_importance(plain_net: nn.Module) -> None:
    g = redistribute.trace(plain_net, INPUT)
    grp = group_of(g, "conv1")
    keep = torch.sort(torch.topk(plain_net.bn1.weight.detach().abs(), 3).indices).values
    new = redistribute.apply(plain_net, plan_from_widths(g, {grp.id: 3}), importance="bn")
    assert torch.equal(new.bn1.weight, plain_net.bn1.weight[keep])
    assert torch.equal(new.conv1.weight, plain_net.conv1.weight[keep])


def test_shrink_of_removed_zero_channels_keeps_function(plain_net: nn.Module) -> None:
    """Channels whose producer weights are zero and BN shift is zero contribute nothing: dropping them is exact."""
    m = plain_net
    with torch.no_grad():
        m.conv2.weight[8:].zero_()
        m.bn2.bias[8:].zero_()
        m.bn2.running_mean[8:].zero_()
    g = redistribute.trace(m, INPUT)
    new = redistribute.apply(m, plan_from_widths(g, {group_of(g, "conv2").id: 8}))
    x = torch.randn(2, *INPUT)
    with torch.no_grad():
        torch.testing.assert_close(new(x), m(x), atol=1e-5, rtol=1e-5)


def test_grouped_shrink_keeps_channels_within_each_group(grouped_net: nn.Module) -> None:
    g = redistribute.trace(grouped_net, INPUT)
    grp = group_of(g, "conv2")
    new = redistribute.apply(grouped_net, plan_from_widths(g, {grp.id: 32}))
    # 16 output channels per group before, 8 after: every new channel comes from the same group
    old_w, new_w = grouped_net.conv2.weight, new.conv2.weight
    for c in range(32):
        grp_idx = c // 8
        candidates = old_w[grp_idx * 16 : (grp_idx + 1) * 16]
        assert any(torch.equal(new_w[c], cand) for cand in candidates)
    assert new(torch.randn(1, *INPUT)).shape == (1, 10)


def test_unknown_importance(plain_net: nn.Module) -> None:
    p = redistribute.plan(plain_net, "e", divisor=1, input_size=INPUT)
    with pytest.raises(UsageError, match="importance"):
        redistribute.apply(plain_net, p, importance="random")


# -- constraints at apply time --------------------------------------------------------------------------------
def test_apply_refuses_width_breaking_group_multiple(grouped_net: nn.Module) -> None:
    g = redistribute.trace(grouped_net, INPUT)
    grp = group_of(g, "conv1")
    good = plan_from_widths(g, {grp.id: 16})
    bad = dataclasses.replace(good, widths={**good.widths, grp.id: 30})
    with pytest.raises(ConstraintError, match="multiple of 4"):
        redistribute.apply(grouped_net, bad)
    with pytest.raises(ConstraintError):
        plan_from_widths(g, {grp.id: 30})


def test_apply_refuses_changing_a_fixed_group(plain_net: nn.Module) -> None:
    g = redistribute.trace(plain_net, INPUT)
    out = g.groups[-1]
    good = plan_from_widths(g, {})
    bad = dataclasses.replace(good, widths={**good.widths, out.id: 12})
    with pytest.raises(ConstraintError, match="fixed"):
        redistribute.apply(plain_net, bad)
    with pytest.raises(ConstraintError, match="fixed"):
        plan_from_widths(g, {out.id: 12})


# -- the input model is untouched; apply_ works in place ------------------------------------------------------
def test_apply_does_not_mutate_input(timm_models: dict) -> None:
    m, g = timm_models["test_efficientnet"]
    before = state_hash(m)
    num_features = m.num_features
    info = [dict(f) for f in m.feature_info]
    new = redistribute.apply(m, redistribute.plan(g, "a"))
    assert state_hash(m) == before
    assert m.num_features == num_features and [dict(f) for f in m.feature_info] == info
    assert new.num_features != num_features or [f["num_chs"] for f in new.feature_info] != [f["num_chs"] for f in info]
    assert new.feature_info is not m.feature_info


def test_apply_in_place(residual_net: nn.Module) -> None:
    p = redistribute.plan(residual_net, "d", divisor=1, input_size=INPUT)
    before = state_hash(residual_net)
    out = redistribute.apply_(residual_net, p)
    assert out is residual_net
    assert state_hash(residual_net) != before
    assert num_params(residual_net) == p.cost.params


def test_redistribute_one_call_from_source_string() -> None:
    new, p = redistribute.redistribute("timm:test_resnet", "peak", input_size=SIZE, divisor=4)
    assert p.source == "timm:test_resnet" and p.template == "d"
    assert abs(p.cost.flops / p.base_cost.flops - 1) <= 0.005
    with torch.no_grad():
        assert new.eval()(torch.randn(1, *SIZE)).shape == (1, 1000)


def test_load_model_sources(tmp_path) -> None:
    assert type(redistribute.load_model("timm:test_resnet")).__name__ == "ResNet"
    f = tmp_path / "net.py"
    f.write_text("import torch\n\ndef make(width=4):\n    return torch.nn.Conv2d(3, width, 1)\n")
    m = redistribute.load_model(f"{f}:make", width=6)
    assert m.out_channels == 6
    for bad, match in [
        ("resnet50", "prefix"),
        ("timm:resnet5O", "unknown timm model"),
        ("torchvision:nope_net", "unknown torchvision"),
        (f"{tmp_path}/missing.py:make", "does not exist"),
        (f"{f}:mkae", "did you mean make"),
        ("onnx:thing", "prefix"),
    ]:
        with pytest.raises(redistribute.SourceError, match=match):
            redistribute.load_model(bad)


# -- timm metadata --------------------------------------------------------------------------------------------
def _real_feature_channels(model: nn.Module, x: torch.Tensor, channels_last: bool = False) -> tuple[int, list[int]]:
    shapes: dict[str, torch.Size] = {}
    handles = [
        model.get_submodule(f["module"]).register_forward_hook(
            lambda _m, _i, o, key=f["module"]: shapes.__setitem__(key, o.shape)
        )
        for f in model.feature_info
    ]
    try:
        with torch.no_grad():
            feats = model.forward_features(x)
    finally:
        for h in handles:
            h.remove()
    dim = -1 if channels_last else 1
    return feats.shape[dim], [shapes[f["module"]][dim] for f in model.feature_info]


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet", "test_convnext", "test_byobnet"])
@pytest.mark.parametrize("template", ["a", "d"])
def test_timm_metadata_matches_real_widths(name: str, template: str) -> None:
    m = _timm(name)
    p = redistribute.plan(m, template, divisor=1, input_size=SIZE)
    new = redistribute.apply(m, p).eval()
    features, per_level = _real_feature_channels(new, torch.randn(1, *SIZE))
    assert new.num_features == features
    assert [f["num_chs"] for f in new.feature_info] == per_level
    assert new.head_hidden_size == features  # these heads are pool + linear
    assert new.get_classifier().in_features == features
    base_features, base_levels = _real_feature_channels(m, torch.randn(1, *SIZE))
    assert (features, per_level) != (base_features, base_levels), "the plan must move some metadata"


def test_timm_metadata_channels_last_ambiguous_size() -> None:
    m = _timm("test_mambaout")
    p = redistribute.plan(m, "a", divisor=1, input_size=SIZE)
    new = redistribute.apply(m, p).eval()
    features, per_level = _real_feature_channels(new, torch.randn(1, *SIZE), channels_last=True)
    assert new.num_features == features
    assert [f["num_chs"] for f in new.feature_info] == per_level


def test_nfnet_scaled_std_conv_gain_is_resized() -> None:
    m = _timm("test_nfnet")
    p = redistribute.plan(m, "a", divisor=1, input_size=SIZE)
    assert p.changed()
    new = redistribute.apply(m, p).eval()
    with torch.no_grad():
        assert new(torch.randn(1, *SIZE)).shape == (1, 1000)
    assert sum(t.numel() for t in new.parameters()) == p.cost.params  # gain counted and resized


class _CachingNet(nn.Module):
    """Caches a tensor computed from a parameter on eval forwards, like LeViT's and EfficientFormer's biases."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)
        self.scale = nn.Parameter(torch.ones(4))
        self.cache: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            self.cache.setdefault(str(x.device), self.scale * 2)  # a non-leaf tensor when autograd is on
        return self.head(self.conv(x).mean((2, 3))) * self.scale


def test_trace_and_apply_copy_cached_non_leaf_tensors() -> None:
    """A forward with autograd on leaves non-leaf tensors in caches; deepcopy refuses those, we must not."""
    m = _CachingNet().eval()
    x = torch.randn(1, 3, 8, 8)
    m(x)
    assert m.cache["cpu"].grad_fn is not None
    p = redistribute.plan(m, "base", input_size=(3, 8, 8), match="none", k=0.5, divisor=1)
    new = redistribute.apply(m, p)
    assert new.conv.out_channels != 8
    assert new(x).shape == (1, 4)
    assert new.cache["cpu"].data_ptr() != m.cache["cpu"].data_ptr()


class _GatedMlp(nn.Module):
    """SwiGLU-style: one projection chunked into value and gate halves, multiplied channel by channel."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 4, 4)
        self.fc1 = nn.Linear(16, 2 * 24)
        self.fc2 = nn.Linear(24, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        value, gate = self.fc1(x).chunk(2, dim=-1)
        x = x + self.fc2(value * F.silu(gate))
        return self.head(x.mean(1))


def test_gated_mlp_halves_are_copies_of_one_group() -> None:
    torch.manual_seed(0)
    m = _GatedMlp().eval()
    g = redistribute.trace(m, (3, 16, 16))
    hidden = next(grp for grp in g.groups if grp.producers == ("fc1",))
    assert hidden.fixed is None and hidden.width == 24
    x = torch.randn(2, 3, 16, 16)
    grown = redistribute.apply(m, plan_from_widths(g, {hidden.id: 40})).eval()
    assert grown.fc1.out_features == 80 and grown.fc2.in_features == 40
    with torch.no_grad():
        torch.testing.assert_close(grown(x), m(x), atol=1e-5, rtol=1e-5)
    shrunk = redistribute.apply(m, plan_from_widths(g, {hidden.id: 8})).eval()
    with torch.no_grad():
        assert shrunk(x).shape == (2, 5)
    kept = select_channels(m, plan_from_widths(g, {hidden.id: 8}))[hidden.id]
    torch.testing.assert_close(shrunk.fc1.weight[:8], m.fc1.weight[kept])  # value half
    torch.testing.assert_close(shrunk.fc1.weight[8:], m.fc1.weight[24 + kept])  # the gate half keeps the same ones


class _PixelShuffleNet(nn.Module):
    def __init__(self, functional: bool, unshuffle: bool) -> None:
        super().__init__()
        self.functional, self.unshuffle = functional, unshuffle
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(64 if unshuffle else 4, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)
        self.shuffle = nn.PixelUnshuffle(2) if unshuffle else nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)
        if self.functional:
            x = F.pixel_unshuffle(x, 2) if self.unshuffle else F.pixel_shuffle(x, 2)
        else:
            x = self.shuffle(x)
        return self.fc(self.c2(x).mean((2, 3)))


@pytest.mark.parametrize("functional", [False, True], ids=["module", "function"])
@pytest.mark.parametrize("unshuffle", [False, True], ids=["shuffle", "unshuffle"])
def test_pixel_shuffle_groups_grow_function_preservingly(functional: bool, unshuffle: bool) -> None:
    """PixelShuffle(2): each channel after it is 4 channels before it, so c1's width moves in steps of 4."""
    torch.manual_seed(0)
    m = _PixelShuffleNet(functional, unshuffle).eval()
    g = redistribute.trace(m, (3, 8, 8))
    c1 = next(grp for grp in g.groups if "c1" in grp.producers)
    assert c1.fixed is None and c1.width == (16 if unshuffle else 4)
    new = redistribute.apply(m, plan_from_widths(g, {c1.id: 2 * c1.width})).eval()
    assert new.c1.out_channels == 32 and new.c2.in_channels == (128 if unshuffle else 8)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(new(x), m(x), atol=1e-5, rtol=1e-5)
