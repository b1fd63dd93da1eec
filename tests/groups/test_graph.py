"""Channel-group finding: couplings on hand-built nets, fixed groups, constraints, and resnet50's group count."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from conftest import INPUT, group_of, groups_with, state_hash
from torch import nn

import redistribute
from redistribute import ChannelGraph, ChannelGroup


@pytest.fixture(scope="module")
def resnet50() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet50").eval()


@pytest.fixture(scope="module")
def resnet50_graph(resnet50: nn.Module) -> ChannelGraph:
    return redistribute.trace(resnet50, input_size=(3, 64, 64))


# -- hand-built couplings -------------------------------------------------------------------------------------
def test_plain_net_every_conv_is_its_own_group(plain_net: nn.Module) -> None:
    g = redistribute.trace(plain_net, INPUT)
    free = g.free_groups()
    assert [grp.producers for grp in free] == [("conv1",), ("conv2",), ("conv3",)]
    assert [grp.width for grp in free] == [8, 16, 32]
    assert [grp.members for grp in free] == [("bn1",), ("bn2",), ("bn3",)]
    assert group_of(g, "conv2").consumers == ("conv3",)
    assert group_of(g, "conv3").consumers == ("fc",)
    # stages are the producers' output spatial sizes
    assert [grp.stage for grp in free] == [(32, 32), (16, 16), (8, 8)]
    assert all(grp.kind == "conv" for grp in free)
    # groups are numbered in execution order, ids are their index
    assert [grp.id for grp in g.groups] == list(range(len(g.groups)))


def test_residual_add_couples_producers(residual_net: nn.Module) -> None:
    g = redistribute.trace(residual_net, INPUT)
    stream = group_of(g, "conv3")
    # conv3 + proj (projection shortcut) and conv5 (identity shortcut) all write the same residual stream
    assert stream.producers == ("conv3", "proj", "conv5")
    assert set(stream.members) == {"bn3", "bnp", "bn5"}
    assert set(stream.consumers) == {"conv4", "fc"}
    assert stream.fixed is None and stream.width == 32
    # the stem feeds both branches: one group read by conv1 and proj
    stem = group_of(g, "stem")
    assert set(stem.consumers) == {"conv1", "proj"}
    # the bottleneck's inner convs are independent groups
    assert group_of(g, "conv1").id != group_of(g, "conv2").id != stream.id
    assert len(g.free_groups()) == 5


def test_depthwise_conv_shares_input_group_and_se_gate_couples(dwse_net: nn.Module) -> None:
    g = redistribute.trace(dwse_net, INPUT)
    expand = group_of(g, "expand")
    # the depthwise conv's output is its input group; the SE expand conv's output is multiplied into it
    assert expand.producers == ("expand", "dw", "se_expand")
    assert {"dw", "se_reduce", "project"} <= set(expand.consumers)
    assert set(expand.members) == {"bn1", "bn2"}
    se = group_of(g, "se_reduce")
    assert se.id != expand.id and se.width == 8 and se.consumers == ("se_expand",)
    assert se.stage == (1, 1)
    assert group_of(g, "project").width == 24


def test_depthwise_conv_alone_joins_its_input_group() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pw = nn.Conv2d(3, 16, 1)
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.out = nn.Conv2d(16, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.dw(self.pw(x)).relu())

    g = redistribute.trace(Net(), (3, 8, 8))
    grp = group_of(g, "pw")
    assert grp.producers == ("pw", "dw")
    assert grp.consumers == ("dw", "out")
    use = next(u for u in g.uses if u.module == "dw")
    assert use.mode == "depthwise"


def test_without_se_multiply_the_gate_is_separate() -> None:
    """Control for the SE test: dropping the multiply must un-couple se_expand from the main stream."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 16, 1)
            self.se = nn.Conv2d(16, 16, 1)
            self.head = nn.Conv2d(32, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x)
            s = self.se(y).sigmoid()  # same shape as y, but concatenated rather than multiplied
            return self.head(torch.cat([y, s], 1))

    g = redistribute.trace(Net(), (3, 8, 8))
    assert group_of(g, "a").id != group_of(g, "se").id
    assert [grp.id for grp in groups_with(g, "head")] == [group_of(g, "a").id, group_of(g, "se").id]


def test_concat_consumers_read_every_part_group(dense_net: nn.Module) -> None:
    g = redistribute.trace(dense_net, INPUT)
    stem, l1, l2 = group_of(g, "stem"), group_of(g, "layer1"), group_of(g, "layer2")
    assert len({stem.id, l1.id, l2.id}) == 3  # concat parts stay separate groups
    assert [grp.id for grp in groups_with(g, "layer2")] == [stem.id, l1.id]
    assert [grp.id for grp in groups_with(g, "transition")] == [stem.id, l1.id, l2.id]
    # the BatchNorm over the concatenation is a member of all three parts
    assert [grp.id for grp in groups_with(g, "norm", "members")] == [stem.id, l1.id, l2.id]
    # the consumer's input layout lists the parts in concat order
    use = next(u for u in g.uses if u.module == "transition")
    assert [s.space for s in use.in_layout] == [stem.id, l1.id, l2.id]
    assert [s.size for s in use.in_layout] == [16, 8, 8]


def test_grouped_conv_gets_multiple_constraint(grouped_net: nn.Module) -> None:
    g = redistribute.trace(grouped_net, INPUT)
    cin, cout = group_of(g, "conv1"), group_of(g, "conv2")
    assert cin.multiple == 4 and cout.multiple == 4  # groups=4 kept: both sides in multiples of 4
    assert "multiple of 4" in cin.constraints
    assert group_of(g, "stem").multiple == 1
    assert group_of(g, "conv3").multiple == 1
    use = next(u for u in g.uses if u.module == "conv2")
    assert use.mode == "count" and use.groups == 4


def test_groupnorm_gets_multiple_constraint() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 24, 3)
            self.gn = nn.GroupNorm(6, 24)
            self.fc = nn.Linear(24, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.gn(self.conv(x)).mean((2, 3)))

    g = redistribute.trace(Net(), (3, 8, 8))
    grp = group_of(g, "conv")
    assert grp.multiple == 6 and grp.members == ("gn",)


def test_input_and_classifier_output_are_fixed(hand_built: tuple[str, nn.Module]) -> None:
    _, model = hand_built
    g = redistribute.trace(model, INPUT)
    first, last = g.groups[0], g.groups[-1]
    assert first.width == 3 and first.kind == "none" and first.producers == ()
    assert first.fixed is not None and "input" in first.fixed
    assert last.producers == ("fc",) and last.width == 10 and last.kind == "linear"
    assert last.fixed is not None and "output" in last.fixed
    # fixed groups are never free, every other group here is
    free_ids = {grp.id for grp in g.free_groups()}
    assert first.id not in free_ids and last.id not in free_ids
    assert free_ids == {grp.id for grp in g.groups if grp.fixed is None}
    assert g.base_widths() == {grp.id: grp.width for grp in g.groups}


def test_groups_are_frozen(plain_net: nn.Module) -> None:
    g = redistribute.trace(plain_net, INPUT)
    grp = g.groups[1]
    assert isinstance(grp, ChannelGroup)
    with pytest.raises(AttributeError):
        grp.width = 99  # type: ignore[misc]
    assert grp.signature == "conv1"


def test_signature_falls_back_to_members_or_consumers(plain_net: nn.Module) -> None:
    g = redistribute.trace(plain_net, INPUT)
    assert g.groups[0].signature == "conv1"  # the input: no producer, no member, read by conv1
    assert g.groups[-1].signature == "fc"
    free = [grp for grp in g.groups if grp.fixed is None]  # the spec keys: unique among non-fixed groups
    assert len({grp.signature for grp in free}) == len(free)


def test_scope_all_includes_linear_groups() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.fc1 = nn.Linear(8, 32)
            self.fc2 = nn.Linear(32, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.fc1(self.conv(x).mean((2, 3))).relu())

    g = redistribute.trace(Net(), (3, 8, 8))
    hidden = group_of(g, "fc1")
    assert hidden.kind == "linear" and hidden.fixed is None
    assert hidden not in g.free_groups("conv")
    assert hidden in g.free_groups("all")


class _FlattenNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


class _HardViewNet(_FlattenNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).view(1, 288))


def test_flatten_repeats_the_group_in_the_linear_input() -> None:
    from redistribute.planning.planner import plan_from_widths

    m = _FlattenNet()
    g = redistribute.trace(m, (3, 8, 8))
    grp = group_of(g, "conv")
    assert grp.fixed is None and grp.consumers == ("fc",)
    (seg,) = next(u for u in g.uses if u.module == "fc").in_layout
    assert (seg.space, seg.width, seg.repeat) == (grp.id, 8, 36)
    new = redistribute.apply(m, plan_from_widths(g, {grp.id: 16}))
    assert new.fc.in_features == 16 * 36
    assert new(torch.randn(1, 3, 8, 8)).shape == (1, 3)


def test_hard_coded_reshape_fixes_the_group() -> None:
    g = redistribute.trace(_HardViewNet(), (3, 8, 8))
    grp = group_of(g, "conv")
    assert grp.fixed is not None and "reshape" in grp.fixed
    assert grp not in g.free_groups()


def test_trace_rejects_bad_input_size(plain_net: nn.Module) -> None:
    with pytest.raises(redistribute.UsageError, match=r"input size \(3, 0, 16\) is invalid"):
        redistribute.trace(plain_net, input_size=(3, 0, 16))
    with pytest.raises(redistribute.UsageError, match="is invalid"):
        redistribute.trace(plain_net, input_size=())
    with pytest.raises(redistribute.UsageError, match="input size '3,x' is not a list of integers"):
        redistribute.trace(plain_net, input_size="3,x")
    with pytest.raises(redistribute.UsageError, match="not a list of integers"):
        redistribute.trace(plain_net, input_size=(3, 32.5, 32))  # type: ignore[arg-type]
    assert redistribute.trace(plain_net, input_size="3x16x16").input_shape == (1, 3, 16, 16)


def test_trace_uses_timm_pretrained_cfg_input_size() -> None:
    m = timm.create_model("test_resnet")
    g = redistribute.trace(m)
    assert g.input_shape == (1, *m.pretrained_cfg["input_size"])


def test_plan_refuses_model_without_free_group() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    g = redistribute.trace(Net(), (3, 2, 2))
    assert g.free_groups() == []
    with pytest.raises(redistribute.TraceError, match="no channel group"):
        redistribute.plan(g, "d")


def test_forward_with_optional_none_argument_traces() -> None:
    """Only the first placeholder is the traced tensor; ``mask=None`` keeps its default (timm ViT's attn_mask)."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.fc = nn.Linear(8, 4)

        def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            return self.fc(self.conv(x).relu().mean((2, 3)))

    g = redistribute.trace(Net(), (3, 16, 16))
    assert [grp.producers for grp in g.free_groups()] == [("conv",)]


# -- resnet50 -------------------------------------------------------------------------------------------------
def test_resnet50_group_count(resnet50_graph: ChannelGraph) -> None:
    g = resnet50_graph
    assert len(g.groups) == 39
    assert len(g.free_groups()) == 37
    fixed = [grp for grp in g.groups if grp.fixed is not None]
    assert [grp.id for grp in fixed] == [0, 38]
    assert "input" in fixed[0].fixed and fixed[0].width == 3
    assert fixed[1].producers == ("fc",) and fixed[1].width == 1000 and "output" in fixed[1].fixed
    assert not g.unmapped and not g.opaque


def test_resnet50_largest_group_is_layer3_stream(resnet50_graph: ChannelGraph) -> None:
    g = resnet50_graph
    biggest = max(g.groups, key=lambda grp: len(grp.producers))
    assert len(biggest.producers) == 7
    assert biggest.width == 1024
    assert biggest.producers[:2] == ("layer3.0.conv3", "layer3.0.downsample.0")
    assert all(p.startswith("layer3.") for p in biggest.producers)
    # the residual streams of the four stages: 3, 4, 6, 3 blocks plus one downsample each
    streams = sorted((len(grp.producers), grp.width) for grp in g.groups if len(grp.producers) > 1)
    assert streams == [(4, 256), (4, 2048), (5, 512), (7, 1024)]


def test_resnet50_base_flops(resnet50: nn.Module, resnet50_graph: ChannelGraph) -> None:
    from conftest import flop_counter_macs, num_params

    cm = redistribute.CostModel(resnet50_graph)
    base = resnet50_graph.base_widths()
    assert cm.flops(base) == flop_counter_macs(resnet50, torch.randn(1, 3, 64, 64))
    assert cm.params(base) == num_params(resnet50) == resnet50_graph.base_params
    # the well-known 4.1 GMACs at the default 224x224 (4,089,184,256 MACs, as FlopCounterMode counts)
    g224 = redistribute.trace(resnet50)
    assert g224.input_shape == (1, 3, 224, 224)
    assert len(g224.groups) == 39 and len(g224.free_groups()) == 37
    assert redistribute.CostModel(g224).flops(g224.base_widths()) == 4_089_184_256


def test_cost_module_doctest() -> None:
    import doctest

    from redistribute.planning import cost as _cost

    result = doctest.testmod(_cost, verbose=False, report=False)
    assert result.attempted > 0 and result.failed == 0


# -- the caller's model is never touched ----------------------------------------------------------------------
def test_trace_plan_apply_leave_model_unchanged(residual_net: nn.Module) -> None:
    before = state_hash(residual_net)
    modules_before = [
        (n, type(m), tuple(p.shape for p in m.parameters(recurse=False))) for n, m in residual_net.named_modules()
    ]
    training = residual_net.training
    g = redistribute.trace(residual_net, INPUT)
    p = redistribute.plan(residual_net, "d", divisor=1, input_size=INPUT)
    new = redistribute.apply(residual_net, p)
    assert p.changed(), "the plan must change something for this test to mean anything"
    assert new is not residual_net
    assert state_hash(residual_net) == before
    after = [(n, type(m), tuple(p.shape for p in m.parameters(recurse=False))) for n, m in residual_net.named_modules()]
    assert after == modules_before
    assert residual_net.training == training
    assert all(p.device.type == "cpu" for p in residual_net.parameters())
    assert state_hash(new) != before
    assert g.groups == redistribute.trace(residual_net, INPUT).groups


def test_timm_model_unchanged_by_redistribute() -> None:
    torch.manual_seed(0)
    m = timm.create_model("test_resnet")
    ref = copy.deepcopy(m)
    before = state_hash(m)
    new, p = redistribute.redistribute(m, "a", input_size=(3, 64, 64), divisor=1)
    assert p.changed()
    assert state_hash(m) == before
    assert state_hash(new) != before
    x = torch.randn(1, 3, 64, 64)
    m.eval(), ref.eval()
    with torch.no_grad():
        assert torch.equal(m(x), ref(x))
