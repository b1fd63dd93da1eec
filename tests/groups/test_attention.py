"""Attention heads under ``scope="all"``: the head count is kept, the per-head width is a free channel group.

Checked on timm's ``test_vit`` (fused and explicit attention paths) and on tiny hand-built attention nets: the
qkv group is free, surgery updates ``head_dim``/``attn_dim``/``scale``, the rebuilt model runs, its FLOPs equal
``FlopCounterMode``'s, growing only head widths keeps the function, and whatever cannot be mapped stays fixed
with its reason.
"""

from __future__ import annotations

import functools

import pytest
import timm
import torch
from conftest import flop_counter_macs, num_params
from torch import nn

import redistribute
from redistribute import HeadSpec, register_attention
from redistribute.planning.planner import plan_from_widths
from redistribute.surgery.rebuild import select_channels


@functools.cache
def _vit(fused: bool) -> tuple[nn.Module, redistribute.ChannelGraph]:
    torch.manual_seed(0)
    m = timm.create_model("test_vit").eval()
    for mod in m.modules():
        if hasattr(mod, "fused_attn"):
            mod.fused_attn = fused
    return m, redistribute.trace(m)


def _head_groups(g: redistribute.ChannelGraph) -> dict[str, int]:
    """Attention module -> its head group id."""
    return {u.module: u.out_layout[0].space for u in g.uses if u.kind == "heads"}  # type: ignore[index]


def _x(g: redistribute.ChannelGraph, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, *g.input_shape[1:])


def _check_attention_attrs(model: nn.Module, widths: dict[int, int], heads: dict[str, int]) -> None:
    for name, gid in heads.items():
        attn = model.get_submodule(name)
        d = widths[gid]
        assert attn.num_heads == 2
        assert (attn.head_dim, attn.attn_dim) == (d, 2 * d)
        assert attn.scale == pytest.approx(d**-0.5)
        assert attn.qkv.out_features == 3 * 2 * d and attn.proj.in_features == 2 * d


# -- timm ViT -------------------------------------------------------------------------------------------------
def test_vit_qkv_groups_are_free_head_widths() -> None:
    m, g = _vit(True)
    heads = _head_groups(g)
    assert len(heads) == len(m.blocks)
    free = {grp.id for grp in g.free_groups("all")}
    for name, gid in heads.items():
        grp = g.groups[gid]
        assert grp.fixed is None and gid in free and grp.kind == "linear"
        assert grp.width == m.get_submodule(name).head_dim == 32
        assert grp.producers == (f"{name}.qkv",) and grp.consumers == (f"{name}.proj",)
        qkv = next(u for u in g.uses if u.module == f"{name}.qkv")
        proj = next(u for u in g.uses if u.module == f"{name}.proj")
        assert [s.space for s in qkv.out_layout] == [gid] * 6  # 3 x 2 heads x head_dim
        assert [s.space for s in proj.in_layout] == [gid] * 2
    assert not g.unmapped


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("template", ["a", "e"])
def test_vit_templates_rebuild_with_new_head_widths(fused: bool, template: str) -> None:
    m, g = _vit(fused)
    x = _x(g)
    assert redistribute.CostModel(g).flops(g.base_widths()) == flop_counter_macs(m, x[:1])
    p = redistribute.plan(g, template, scope="all")
    assert abs(p.cost.flops / p.base_cost.flops - 1) <= 0.005
    heads = _head_groups(g)
    assert any(p.widths[gid] != 32 for gid in heads.values())
    new = redistribute.apply(m, p).eval()
    _check_attention_attrs(new, p.widths, heads)
    with torch.no_grad():
        y = new(x)
    assert y.shape == (2, 1000) and torch.isfinite(y).all()
    assert flop_counter_macs(new, x[:1]) == p.cost.flops
    assert num_params(new) == p.cost.params


def test_vit_every_group_changed_runs() -> None:
    m, g = _vit(True)
    p = redistribute.plan(g, "base", match="none", k=0.75, scope="all", divisor=1)
    assert all(p.widths[gid] == 24 for gid in _head_groups(g).values())
    new = redistribute.apply(m, p).eval()
    x = _x(g, 1)
    with torch.no_grad():
        assert new(x).shape == (1, 1000)
    assert flop_counter_macs(new, x) == p.cost.flops


@pytest.mark.parametrize("fused", [True, False])
def test_growing_head_widths_keeps_the_function(fused: bool) -> None:
    """New query channels are zero and the kept queries are rescaled, so ``scale`` can be ``head_dim ** -0.5``."""
    m, g = _vit(fused)
    heads = _head_groups(g)
    widths = g.base_widths()
    for gid in heads.values():
        widths[gid] = 48
    p = plan_from_widths(g, widths, scope="all")
    new = redistribute.apply(m, p).eval()
    _check_attention_attrs(new, p.widths, heads)
    x = _x(g)
    with torch.no_grad():
        torch.testing.assert_close(new(x), m(x), atol=1e-5, rtol=1e-5)
    assert flop_counter_macs(new, x[:1]) == p.cost.flops


def test_shrinking_head_widths_keeps_the_kept_logits() -> None:
    """The softmax temperature of the kept head channels is the base model's: ``q . k * scale`` restricted to them."""
    m, g = _vit(True)
    heads = _head_groups(g)
    widths = g.base_widths()
    widths[heads["blocks.0.attn"]] = 16
    p = plan_from_widths(g, widths, scope="all")
    new = redistribute.apply(m, p).eval()
    old_attn, new_attn = m.blocks[0].attn, new.blocks[0].attn
    x = torch.randn(1, 5, 64)
    q_old = old_attn.qkv(x)[..., :64].view(1, 5, 2, 32)
    q_new = new_attn.qkv(x)[..., :32].view(1, 5, 2, 16)
    kept = select_channels(m, p)[heads["blocks.0.attn"]]
    torch.testing.assert_close(q_new * new_attn.scale, q_old[..., kept] * old_attn.scale)


# -- hand-built attention nets --------------------------------------------------------------------------------
class _Unregistered(nn.Module):
    """Separate query and key/value projections, head width from ``-1``, as in PVT (no head handler)."""

    def __init__(self, dim: int, heads: int, head_dim: int, sized_from_stream: bool = False) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, head_dim
        self.scale = head_dim**-0.5
        self.q = nn.Linear(dim, heads * head_dim)
        self.kv = nn.Linear(dim, 2 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, dim)
        self.sized_from_stream = sized_from_stream

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.num_heads if self.sized_from_stream else -1
        q = self.q(x).reshape(b, n, self.num_heads, d).transpose(1, 2)
        k, v = self.kv(x).reshape(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, -1))


@register_attention(HeadSpec(attn_dim=None, q="q", q_norm=None))
class _Attention(_Unregistered):
    """The same, registered: its head width can change."""


class _Net(nn.Module):
    def __init__(self, attn: type[_Unregistered] = _Attention, **kw: bool) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 32, 4, 4)
        self.attn = attn(32, 4, 8, **kw)
        self.mlp = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = x + self.attn(x)
        x = x + self.mlp(x)
        return self.head(x.mean(1))


class _SdpaNet(nn.Module):
    """A fused qkv, ``F.scaled_dot_product_attention`` and the merge sized by a literal ``attn_dim``."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(12, 24)
        self.attn = timm.layers.Attention(24, num_heads=3)
        self.head = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(self.embed(x)).mean(1))


def test_hand_built_heads_free_and_rebuilt() -> None:
    torch.manual_seed(0)
    m = _Net().eval()
    g = redistribute.trace(m, (3, 16, 16))
    (gid,) = _head_groups(g).values()
    grp = g.groups[gid]
    assert grp.fixed is None and grp.width == 8 and set(grp.producers) == {"attn.q", "attn.kv"}
    x = torch.randn(2, 3, 16, 16)
    assert redistribute.CostModel(g).flops(g.base_widths()) == flop_counter_macs(m, x[:1])
    for d in (4, 16):
        widths = g.base_widths()
        widths[gid] = d
        p = plan_from_widths(g, widths, scope="all")
        new = redistribute.apply(m, p).eval()
        assert (new.attn.num_heads, new.attn.head_dim, new.attn.q.out_features) == (4, d, 4 * d)
        assert new.attn.scale == pytest.approx(d**-0.5)
        with torch.no_grad():
            y, ref = new(x), m(x)
        assert flop_counter_macs(new, x[:1]) == p.cost.flops
        if d > 8:
            torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_sdpa_and_literal_attn_dim() -> None:
    torch.manual_seed(0)
    m = _SdpaNet().eval()
    g = redistribute.trace(m, (7, 12))
    (gid,) = _head_groups(g).values()
    assert g.groups[gid].fixed is None and g.groups[gid].width == 8
    widths = g.base_widths()
    widths[gid] = 12
    new = redistribute.apply(m, plan_from_widths(g, widths, scope="all")).eval()
    assert (new.attn.head_dim, new.attn.attn_dim, new.attn.num_heads) == (12, 36, 3)
    x = torch.randn(2, 7, 12)
    with torch.no_grad():
        torch.testing.assert_close(new(x), m(x), atol=1e-5, rtol=1e-5)


def test_unregistered_attention_stays_fixed() -> None:
    g = redistribute.trace(_Net(_Unregistered), (3, 16, 16))
    assert not _head_groups(g)
    q = next(grp for grp in g.groups if "attn.q" in grp.producers)
    assert q.fixed is not None and "no head handler" in q.fixed and "_Unregistered" in q.fixed


def test_head_width_from_the_stream_stays_fixed() -> None:
    """``C // num_heads`` sizes the query heads from the residual stream: both keep their widths."""
    g = redistribute.trace(_Net(sized_from_stream=True), (3, 16, 16))
    (gid,) = _head_groups(g).values()
    assert "sized from another group" in (g.groups[gid].fixed or "")
    stream = next(grp for grp in g.groups if "embed" in grp.producers)
    assert "sizes another tensor" in (stream.fixed or "")


def test_channel_shuffle_split_stays_fixed() -> None:
    """Only trailing splits are heads: an NCHW channel shuffle still fixes its group."""

    class Shuffle(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x)
            n, c, h, w = y.shape
            return self.b(y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w))

    g = redistribute.trace(Shuffle(), (3, 4, 4))
    assert "splits or interleaves" in (next(grp for grp in g.groups if grp.producers == ("a",)).fixed or "")


def test_matmul_cost_counts_bmm() -> None:
    """An explicit ``q @ k^T`` on head channels is costed as ``FlopCounterMode`` counts bmm, at any head width."""
    m = _Net().eval()
    g = redistribute.trace(m, (3, 16, 16))
    (gid,) = _head_groups(g).values()
    flops = [u for u in g.uses if u.kind == "flops"]
    assert len(flops) == 2 and all(gid in {s.space for s in u.in_layout + u.out_layout} for u in flops)
    cm = redistribute.CostModel(g)
    widths = g.base_widths()
    widths[gid] = 16
    # q, kv and proj linears on 16 tokens of width 32, then q @ k^T and attn @ v over 4 heads of 16 x 16 tokens
    assert cm.flops(widths) - cm.flops(g.base_widths()) == 16 * 32 * (4 + 8 + 4) * 8 + 2 * (4 * 16 * 16 * 8)


def test_tiny_swin_window_attention() -> None:
    """Swin's WindowAttention (explicit matmuls, relative position bias, shifted-window mask, one-head stage)."""
    torch.manual_seed(0)
    m = timm.create_model(
        "swin_tiny_patch4_window7_224", img_size=56, embed_dim=16, depths=(2, 2), num_heads=(1, 2), num_classes=10
    ).eval()
    g = redistribute.trace(m, (3, 56, 56))
    heads = _head_groups(g)
    assert len(heads) == 4 and all(g.groups[gid].fixed is None for gid in heads.values())
    x = torch.randn(2, 3, 56, 56)
    assert redistribute.CostModel(g).flops(g.base_widths()) == flop_counter_macs(m, x[:1])
    widths = g.base_widths()
    for gid in heads.values():
        widths[gid] = 24
    p = plan_from_widths(g, widths, scope="all")
    new = redistribute.apply(m, p).eval()
    for name in heads:
        attn = new.get_submodule(name)
        assert attn.scale == pytest.approx(24**-0.5) and attn.proj.in_features == 24 * attn.num_heads
    with torch.no_grad():
        torch.testing.assert_close(new(x), m(x), atol=1e-5, rtol=1e-5)
    assert flop_counter_macs(new, x[:1]) == p.cost.flops


def test_query_norm_takes_the_rescale() -> None:
    """With ``qk_norm`` the kept queries are rescaled through the query norm's affine parameters."""
    torch.manual_seed(0)
    m = _SdpaNet()
    m.attn = timm.layers.Attention(24, num_heads=3, qk_norm=True, norm_layer=nn.LayerNorm)
    with torch.no_grad():
        m.attn.q_norm.weight.uniform_(0.5, 1.5)
    m.eval()
    g = redistribute.trace(m, (7, 12))
    (gid,) = _head_groups(g).values()
    assert set(g.groups[gid].members) == {"attn.q_norm", "attn.k_norm"}
    widths = g.base_widths()
    widths[gid] = 4
    p = plan_from_widths(g, widths, scope="all")
    new = redistribute.apply(m, p).eval()
    kept = select_channels(m, p)[gid]
    torch.testing.assert_close(new.attn.q_norm.weight, m.attn.q_norm.weight[kept] * 0.5**0.5)
    torch.testing.assert_close(new.attn.k_norm.weight, m.attn.k_norm.weight[kept])
    assert (new.attn.head_dim, new.attn.scale) == (4, pytest.approx(0.5))
    with torch.no_grad():
        assert new(torch.randn(2, 7, 12)).shape == (2, 5)
