"""Channel rules for leaf modules: convolutions, linears, norms (timm's included), flatten, channel and pixel shuffles.

Registered in :data:`redistribute.groups.rules.base.MODULE_RULES` (looked up along the MRO) when this module is imported;
:func:`passthrough_module` is the walker's rule for parameterless leaves that no rule names.
"""

from __future__ import annotations

import math

import torch
from torch import fx, nn

from ..spaces import Segment, const
from ..uses import LayerUse
from .base import Dims, ModuleRule, Walker, module_rule, shape_of

__all__ = ["passthrough_module", "pixel_shuffle"]


@module_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv(w: Walker, node: fx.Node, mod: nn.Module) -> Dims:
    assert isinstance(mod, nn.modules.conv._ConvNd)
    x = w.dims(node.args[0])
    name = str(node.target)
    in_l, groups = x[1], mod.groups
    if groups > 1 and groups == mod.in_channels == mod.out_channels:
        out_l, mode = in_l, "depthwise"
    elif groups > 1 and groups == mod.in_channels and mod.out_channels % groups == 0 and not mod.transposed:
        # depthwise with a channel multiplier m: input channel c owns outputs c*m ... c*m + m - 1
        m = mod.out_channels // groups
        out_l, mode = tuple(Segment(s.space, s.width, s.repeat * m) for s in w.table.resolve(in_l)), "depthwise"
    else:
        out_l = w.table.fresh(mod.out_channels, name)
        mode = "none" if groups == 1 else w.group_policy(name)
        if mode == "count" and sum(seg.space is not None for seg in w.table.resolve(in_l)) > 1:
            # group boundaries are channel positions: resizing one part of a concatenation moves the others
            w.table.fix(in_l, f"{name} has groups={groups} over concatenated channels")
        if mode == "count":
            w.require_multiple(in_l, groups, f"{name} has groups={groups}")
            w.require_multiple(out_l, groups, f"{name} has groups={groups}")
        elif mode == "width":
            w.require_block(in_l, mod.in_channels // groups, name)
            w.require_block(out_l, mod.out_channels // groups, name)
            w.tie(out_l, in_l, mod.out_channels, mod.in_channels, f"grouped conv {name}")
    w.use_layer(node, "conv", in_l, out_l, mode=mode)
    return (x[0], out_l, *tuple(const(s) for s in shape_of(node)[2:]))


@module_rule(nn.Linear)
def _linear(w: Walker, node: fx.Node, mod: nn.Module) -> Dims:
    x = w.dims(node.args[0])
    out_l = w.table.fresh(mod.out_features, str(node.target))  # type: ignore[arg-type]
    w.use_layer(node, "linear", x[-1], out_l)
    return (*tuple(x[:-1]), out_l)


def _norm(channel_dim: int, across: bool = True) -> ModuleRule:
    """A norm over ``channel_dim``; ``across``: its statistics span the channels (LayerNorm, RMSNorm, GroupNorm with
    several channels per group), so growing the group cannot preserve the function."""

    def rule(w: Walker, node: fx.Node, mod: nn.Module) -> Dims:
        x = w.dims(node.args[0])
        d = channel_dim % len(x)
        num_groups = getattr(mod, "num_groups", 1)
        if num_groups not in (1, shape_of(node)[d]):
            w.require_multiple(x[d], num_groups, f"{node.target} has num_groups={num_groups}")
        if across and num_groups != shape_of(node)[d]:
            w.mark_cross_channel(x[d], node)
        w.use_member(node, "norm", x[d], dim=d)
        return x

    return rule


module_rule(nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)(_norm(1, across=False))
module_rule(nn.GroupNorm)(_norm(1))
module_rule(nn.LayerNorm, nn.RMSNorm)(_norm(-1))


#: timm's norm layers: (module of ``timm.layers``, class names, channel dim: 1 for NCHW or -1 for last).
_TIMM_NORMS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("norm", ("LayerNorm2d", "LayerNorm2dFp32", "LayerNormExp2d", "RmsNorm2d", "RmsNorm2dFp32", "SimpleNorm2d",
              "SimpleNorm2dFp32", "GroupNorm", "GroupNorm1"), 1),
    ("norm_act", ("LayerNormAct2d", "LayerNormAct2dFp32", "RmsNormAct2d", "RmsNormAct2dFp32", "GroupNormAct",
                  "GroupNorm1Act", "BatchNormAct2d", "FrozenBatchNorm2d", "FrozenBatchNormAct2d"), 1),
    ("norm", ("RmsNorm", "RmsNormFp32", "SimpleNorm", "SimpleNormFp32", "LayerNormFp32"), -1),
    ("norm_act", ("LayerNormAct", "LayerNormActFp32", "RmsNormAct", "RmsNormActFp32"), -1),
)  # fmt: skip


#: timm's norms above whose statistics are per channel (batch norms): growing their groups preserves the function.
_TIMM_PER_CHANNEL = frozenset({"BatchNormAct2d", "FrozenBatchNorm2d", "FrozenBatchNormAct2d"})


def _register_timm() -> None:
    try:
        from timm.layers import norm, norm_act
    except ImportError:  # pragma: no cover
        return
    modules = {"norm": norm, "norm_act": norm_act}
    for where, names, dim in _TIMM_NORMS:
        for cls_name in names:
            cls = getattr(modules[where], cls_name, None)
            if isinstance(cls, type):
                module_rule(cls)(_norm(dim, across=cls_name not in _TIMM_PER_CHANNEL))
    try:  # torchvision's FrozenBatchNorm2d (detection backbones)
        from torchvision.ops.misc import FrozenBatchNorm2d
    except ImportError:  # pragma: no cover
        return
    module_rule(FrozenBatchNorm2d)(_norm(1, across=False))


_register_timm()


@module_rule(nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d, nn.LocalResponseNorm, nn.CrossMapLRN2d)
def _across_module(w: Walker, node: fx.Node, mod: nn.Module) -> Dims:
    """Parameterless layers that mix values across a dim (softmax over ``dim``, ``Softmax2d`` over the channels,
    local response norm over neighbouring channels): they keep their input's dims and mark that dim."""
    x = w.dims(node.args[0])
    out = w.keep_dims(node, node.args[0])
    if isinstance(x, tuple):
        dim = getattr(mod, "dim", None)
        d = -3 if isinstance(mod, nn.Softmax2d) else (1 if dim is None else int(dim))
        w.mark_cross_channel(x[d % len(x)], node)
    return out


@module_rule(nn.PReLU)
def _prelu(w: Walker, node: fx.Node, mod: nn.Module) -> Dims:
    """``PReLU(C)``: one slope per channel of dim 1 (dim 0 of a 1-D input), resized with that group;
    ``PReLU()``: one slope for all channels, which passes channels through."""
    x = w.dims(node.args[0])
    if int(mod.num_parameters) == 1 or not isinstance(x, tuple):  # type: ignore[arg-type]
        return passthrough_module(w, node, mod)
    w.use_member(node, "norm", x[1 if len(x) > 1 else 0], dim=1 if len(x) > 1 else 0)
    return x


#: Gates per recurrent cell (``nn.RNNBase.mode``): the input-to-hidden and hidden-to-hidden products of each.
RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


@module_rule(nn.RNNBase, nn.LSTM, nn.GRU, nn.RNN)  # each subclass has its own forward: named here
def _rnn(w: Walker, node: fx.Node, mod: nn.Module) -> Dims:
    """``nn.LSTM``/``nn.GRU``/``nn.RNN`` read a group as ``input_size`` (the last dim); hidden sizes stay.

    Multiply-accumulates per time step and batch element, as in the torch docs' equations (``gates`` = 4/3/1 for
    LSTM/GRU/RNN, ``H`` = hidden size, ``P`` = projection size or ``H``, ``D`` = directions): layer 0 costs
    ``D * (gates*H*(input + P) + proj)``, each later layer ``D * (gates*H*(D*P + P) + proj)`` with ``proj = H*P`` when
    ``proj_size`` is set. The input part follows the group's width (a ``linear`` use); the rest is constant.
    """
    assert isinstance(mod, nn.RNNBase)
    name = str(node.target)
    x = w.dims(node.args[0])
    val = node.meta.get("val")
    if len(node.args) + len(node.kwargs) != 1 or not isinstance(x, tuple) or len(x) not in (2, 3):
        return w.unknown(node, f"recurrent layer '{name}' is called with an initial state or a packed sequence")
    if not isinstance(val, tuple) or not isinstance(val[0], torch.Tensor):
        return w.unknown(node)
    for lay in x[:-1]:
        if any(s.space is not None for s in lay):
            w.table.fix(lay, f"recurrent layer '{name}' runs over it as time steps or batch")
    gates, hidden, dirs = RNN_GATES[mod.mode], mod.hidden_size, 2 if mod.bidirectional else 1
    out = mod.proj_size or hidden
    proj = hidden * out if mod.proj_size else 0
    prev = next((u for u in w.uses if u.module == name and u.kind == "linear"), None)
    if prev is not None and prev.in_layout is not None:  # called again: the same weights read the same group
        w.table.unify(prev.in_layout, x[-1], node.name)
    steps = math.prod(int(s) for s in val[0].shape[:-1])
    in_shape = tuple(node.args[0].meta["val"].shape)  # type: ignore[union-attr]
    w.uses.append(
        LayerUse(name, "linear", node.name, w.order, x[-1], const(dirs * gates * hidden), in_shape=in_shape,
                 out_shape=tuple(val[0].shape), positions=steps)
    )  # fmt: skip
    fixed = dirs * (gates * hidden * out + proj) + (mod.num_layers - 1) * dirs * (
        gates * hidden * (dirs + 1) * out + proj
    )
    w.uses.append(LayerUse(name, "flops", node.name, w.order, const(1), const(fixed), positions=steps))
    rest = [
        tuple(const(s) for s in v.shape)
        if isinstance(v, torch.Tensor)
        else [tuple(const(s) for s in t.shape) for t in v]
        for v in val[1:]
    ]
    return [(*x[:-1], const(val[0].shape[-1])), *rest]


@module_rule(nn.Flatten)
def _flatten_module(w: Walker, node: fx.Node, mod: nn.Module) -> Dims:
    return w.reshape(node, node.args[0])


@module_rule(nn.ChannelShuffle)
def _channel_shuffle_module(w: Walker, node: fx.Node, mod: nn.Module) -> Dims:
    x = w.dims(node.args[0])
    w.table.fix(x[1], f"'{node.target}' (nn.ChannelShuffle) interleaves channels")
    return x


def pixel_shuffle(w: Walker, node: fx.Node, factor: int, unshuffle: bool) -> Dims:
    """``PixelShuffle(r)``: output channel ``c`` reads input channels ``c*r*r ... c*r*r + r*r - 1``, so the input's
    channels are the output's, each repeated ``r*r`` times in a row (``PixelUnshuffle``: the other way round)."""
    x = w.dims(node.args[0])
    out_shape = shape_of(node)
    if not isinstance(x, tuple) or len(x) != 4 or len(out_shape) != 4:
        return w.unknown(node)
    block = factor * factor
    spatial = tuple(const(s) for s in out_shape[2:])
    resolved = w.table.resolve(x[1])
    if unshuffle:  # (C, H, W) -> (C*r*r, H/r, W/r)
        return (x[0], tuple(Segment(s.space, s.width, s.repeat * block) for s in resolved), *spatial)
    out = w.table.fresh(out_shape[1], f"{node.name}.channels")  # (C*r*r, H, W) -> (C, H*r, W*r)
    w.table.unify(x[1], (Segment(out[0].space, out_shape[1], block),), node.name)
    return (x[0], out, *spatial)


@module_rule(nn.PixelShuffle)
def _pixel_shuffle_module(w: Walker, node: fx.Node, mod: nn.Module) -> Dims:
    return pixel_shuffle(w, node, int(mod.upscale_factor), unshuffle=False)  # type: ignore[attr-defined]


@module_rule(nn.PixelUnshuffle)
def _pixel_unshuffle_module(w: Walker, node: fx.Node, mod: nn.Module) -> Dims:
    return pixel_shuffle(w, node, int(mod.downscale_factor), unshuffle=True)  # type: ignore[attr-defined]


def passthrough_module(w: Walker, node: fx.Node, mod: nn.Module) -> Dims:
    """Parameterless leaves (activations, dropout, pooling, upsampling): keep every dim whose size survives."""
    return w.keep_dims(node, node.args[0])


def _std_conv(w: Walker, node: fx.Node, mod: nn.Module) -> Dims:
    """A weight-standardised conv (timm's ``StdConv2d``): a conv whose weights are normalised over their input
    channels, so new input channels (zero weights) change every filter's statistics."""
    x = w.dims(node.args[0])
    w.mark_cross_channel(x[1], node)
    return _conv(w, node, mod)


def _register_same_behaviour() -> None:
    """Subclasses that override ``forward`` but keep their parent's channel behaviour (checked one by one: SAME
    padding, sync or split batch statistics, a dtype cast). Without a rule of their own they would be traced into."""
    module_rule(nn.SyncBatchNorm)(_norm(1, across=False))
    try:
        from timm.layers.conv2d_same import Conv2dSame, Conv2dSameExport
        from timm.layers.linear import Linear as TimmLinear
        from timm.layers.norm import LayerNorm as TimmLayerNorm
        from timm.layers.norm_act import SyncBatchNormAct
        from timm.layers.split_batchnorm import SplitBatchNorm2d
        from timm.layers.std_conv import ScaledStdConv2d, ScaledStdConv2dSame, StdConv2d, StdConv2dSame
    except ImportError:  # pragma: no cover
        return
    module_rule(Conv2dSame, Conv2dSameExport)(_conv)
    module_rule(StdConv2d, StdConv2dSame, ScaledStdConv2d, ScaledStdConv2dSame)(_std_conv)
    module_rule(TimmLinear)(_linear)
    module_rule(TimmLayerNorm)(_norm(-1))
    module_rule(SplitBatchNorm2d, SyncBatchNormAct)(_norm(1, across=False))
    try:  # torchvision's ConvNeXt LayerNorm2d(nn.LayerNorm) permutes to channels-last inside: a norm over dim 1
        from torchvision.models.convnext import LayerNorm2d
    except ImportError:  # pragma: no cover
        return
    module_rule(LayerNorm2d)(_norm(1))


_register_same_behaviour()
