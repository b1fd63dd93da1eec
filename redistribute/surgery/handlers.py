"""Per-layer-type resizing: one handler per module type, looked up along the MRO.

A handler gets the module, the :class:`~redistribute.groups.walk.LayerUse` that says which layouts its weights follow,
and index maps for its input and output channels. An index map lists, for every new channel, the old channel it
keeps (``>= 0``) or ``-1`` for a new one. Handlers edit the module *in place* (surgery works on a copy) and keep
its attributes (``in_channels``, ``num_features``, ...) consistent with the new tensors.

New output channels get the layer's default initialisation; new input channels get zero weights, so a plan that
only grows keeps the function (up to normalisation over channels, e.g. LayerNorm).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from ..groups.uses import LayerUse

__all__ = ["HANDLERS", "forget_prepared", "register_handler", "resize_tensor", "take"]

Handler = Callable[[nn.Module, LayerUse, "torch.Tensor | None", "torch.Tensor | None"], None]
HANDLERS: dict[type, Handler] = {}


def register_handler(*types: type) -> Callable[[Handler], Handler]:
    """Register a resize handler for modules of these types (and subclasses)."""

    def deco(fn: Handler) -> Handler:
        for t in types:
            HANDLERS[t] = fn
        return fn

    return deco


class _Prepared(NamedTuple):
    """What :func:`take` needs of an index map, computed once per map."""

    idx: torch.Tensor  # held, so the map's id stays unique while it is cached
    kept: torch.Tensor  # old channel per position, -1 read as 0
    new: torch.Tensor  # positions that are new
    span: tuple[int, int] | None  # (start, length) when the new positions are one contiguous run
    prefix: int  # k > 0 when the map is "old channels 0..k-1 in order, then new ones": a plain copy, no gather


_PREPARED: dict[int, _Prepared] = {}


def _prepare(idx: torch.Tensor) -> _Prepared:
    """The parts of an index map that :func:`take` uses, remembered by the map's identity.

    Surgery applies one map to every tensor of a group (a conv's weight and bias, its norm's four tensors, the
    next layer's input), so they are computed once per map object.
    """
    hit = _PREPARED.get(id(idx))
    if hit is not None and hit.idx is idx:
        return hit
    if len(_PREPARED) > 4096:  # bounded: the entries hold the map objects, keeping their ids unique
        _PREPARED.clear()
    new = (idx < 0).nonzero().flatten()
    n, k = idx.numel(), idx.numel() - new.numel()
    span = None
    if new.numel() and int(new[-1]) - int(new[0]) + 1 == new.numel():
        span = (int(new[0]), new.numel())
    tail = span == (k, n - k) if new.numel() else True  # the new positions, if any, come last
    prefix = k if tail and k > 0 and bool((idx[:k] == torch.arange(k, device=idx.device)).all()) else 0
    prepared = _Prepared(idx, idx.clamp(min=0), new, span, prefix)
    _PREPARED[id(idx)] = prepared
    return prepared


def forget_prepared() -> None:
    """Drop the prepared index maps (surgery calls this when it is done, so no map outlives it)."""
    _PREPARED.clear()


def take(t: torch.Tensor, dim: int, idx: torch.Tensor, fill: str | float) -> torch.Tensor:
    """Gather ``t`` along ``dim`` by ``idx``; entries ``-1`` get ``fill`` (a number, ``"kaiming"`` or ``"mean"``).

    A map that keeps the first channels in order and appends new ones (growing) is a plain copy, and new
    positions in one run are filled through a slice: both avoid torch's strided gather and scatter, which are
    several times slower than a copy along an inner dimension.

    Example:
        >>> take(torch.tensor([1.0, 2.0, 3.0]), 0, torch.tensor([2, -1, 0]), 0.0)
        tensor([3., 0., 1.])
    """
    p = _prepare(idx)
    kept, new = p.kept, p.new
    if kept.device != t.device:
        kept, new = kept.to(t.device), new.to(t.device)
    if p.prefix and p.prefix <= t.shape[dim]:
        shape = list(t.shape)
        shape[dim] = idx.numel()
        out = torch.empty(shape, dtype=t.dtype, device=t.device)  # a new tensor: never a view of t
        out.narrow(dim, 0, p.prefix).copy_(t.narrow(dim, 0, p.prefix))
    else:
        out = t.index_select(dim, kept)  # a new tensor: never a view of t
    if not new.numel():
        return out
    region = out.narrow(dim, p.span[0], p.span[1]) if p.span is not None else None
    if fill == "kaiming":
        shape = list(out.shape)
        shape[dim] = new.numel()
        fresh = region if region is not None else torch.empty(shape, dtype=out.dtype, device=out.device)
        if fresh.ndim >= 2:
            nn.init.kaiming_uniform_(fresh.transpose(0, dim) if dim else fresh, a=math.sqrt(5))
        else:
            nn.init.uniform_(fresh, -0.01, 0.01)
        if region is None:
            out.index_copy_(dim, new, fresh)
    elif fill == "mean" and t.numel():
        shape = list(out.shape)
        shape[dim] = new.numel()
        mean = t.mean(dim=dim, keepdim=True).expand(shape).to(out.dtype)
        if region is not None:
            region.copy_(mean)
        else:
            out.index_copy_(dim, new, mean)
    else:
        value = 0.0 if fill == "mean" else float(fill)
        if region is not None:
            region.fill_(value)
        else:
            out.index_fill_(dim, new, value)
    return out


def resize_tensor(t: torch.Tensor, dim: int, idx: torch.Tensor | None, fill: str | float) -> torch.Tensor:
    return t if idx is None else take(t, dim, idx, fill)


def _set(module: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value, requires_grad=old.requires_grad))
    else:
        setattr(module, name, value)


def _grouped_in(weight: torch.Tensor, groups: int, out_idx: torch.Tensor, in_idx: torch.Tensor) -> torch.Tensor:
    """Resize a grouped conv that keeps its group count: channels are selected inside each group."""
    per_old = weight.shape[1]
    cout_new, cin_new = out_idx.numel(), in_idx.numel()
    per_new, per_out_new = cin_new // groups, cout_new // groups
    rows = take(weight, 0, out_idx, "kaiming")  # (cout_new, per_old, *k)
    local = in_idx.view(groups, per_new)
    cols = torch.where(local >= 0, local % per_old, torch.zeros_like(local))  # (groups, per_new)
    cols = cols.repeat_interleave(per_out_new, dim=0)  # (cout_new, per_new)
    gather_idx = cols.view(cout_new, per_new, *([1] * (weight.ndim - 2))).expand(cout_new, per_new, *weight.shape[2:])
    out = torch.gather(rows, 1, gather_idx.to(rows.device))
    missing = (local < 0).repeat_interleave(per_out_new, dim=0)
    out[missing.to(out.device)] = 0.0
    fresh_rows = (out_idx < 0).nonzero().flatten()
    if fresh_rows.numel():
        block = torch.empty((fresh_rows.numel(), per_new, *tuple(weight.shape[2:])), dtype=weight.dtype)
        nn.init.kaiming_uniform_(block, a=math.sqrt(5))
        out[fresh_rows.to(out.device)] = block.to(out.device)
    return out


@register_handler(nn.modules.conv._ConvNd)
def _conv(m: nn.Module, use: LayerUse, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None) -> None:
    assert isinstance(m, nn.modules.conv._ConvNd)
    transposed = bool(m.transposed)
    w = m.weight.data
    out_dim, in_dim = (1, 0) if transposed else (0, 1)
    cin = in_idx.numel() if in_idx is not None else m.in_channels
    cout = out_idx.numel() if out_idx is not None else m.out_channels
    groups = m.groups
    if use.mode == "depthwise":  # groups == in; out = multiplier * in, each input's outputs consecutive
        mult = m.out_channels // m.in_channels
        idx = out_idx if out_idx is not None else in_idx
        w = resize_tensor(w, 0, idx, "kaiming")
        cout = w.shape[0]
        groups = cin = cout // mult
    elif use.mode == "width":
        per_in = m.in_channels // m.groups
        groups = cin // per_in
        w = resize_tensor(w, out_dim, out_idx, "kaiming")
    elif use.mode == "count" and groups > 1:
        oi = out_idx if out_idx is not None else torch.arange(m.out_channels)
        ii = in_idx if in_idx is not None else torch.arange(m.in_channels)
        w = _grouped_in(w, groups, oi, ii) if not transposed else resize_tensor(w, out_dim, out_idx, "kaiming")
    else:
        w = resize_tensor(w, out_dim, out_idx, "kaiming")
        w = resize_tensor(w, in_dim, in_idx, 0.0)
    if out_idx is not None and not transposed:  # other per-output-channel parameters (NFNet's gain)
        for name, p in list(m._parameters.items()):
            if name not in ("weight", "bias") and p is not None and p.ndim and p.shape[0] == m.out_channels:
                _set(m, name, take(p.data, 0, out_idx, "mean"))
    _set(m, "weight", w)
    if m.bias is not None and out_idx is not None:
        _set(m, "bias", take(m.bias.data, 0, out_idx, 0.0))
    m.in_channels, m.out_channels, m.groups = int(cin), int(cout), int(groups)


@register_handler(nn.Linear)
def _linear(m: nn.Module, use: LayerUse, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None) -> None:
    assert isinstance(m, nn.Linear)
    w = resize_tensor(m.weight.data, 0, out_idx, "kaiming")
    w = resize_tensor(w, 1, in_idx, 0.0)
    _set(m, "weight", w)
    if m.bias is not None and out_idx is not None:
        _set(m, "bias", take(m.bias.data, 0, out_idx, 0.0))
    m.in_features, m.out_features = int(w.shape[1]), int(w.shape[0])


_NORM_FILL = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}


def _norm(m: nn.Module, use: LayerUse, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None) -> None:
    if out_idx is None:
        return
    size = None
    for name, t in [*m._parameters.items(), *m._buffers.items()]:
        if t is None or t.ndim != 1:
            continue
        if size is None:
            size = t.shape[0]
        if t.shape[0] == size:
            _set(m, name, take(t.data, 0, out_idx, _NORM_FILL.get(name, 0.0)))
    n = int(out_idx.numel())
    if hasattr(m, "num_features"):
        m.num_features = n
    if hasattr(m, "num_channels"):
        if getattr(m, "num_groups", None) == getattr(m, "num_channels", None):
            m.num_groups = n
        m.num_channels = n
    if hasattr(m, "normalized_shape"):
        m.normalized_shape = (n,)


register_handler(nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)(
    _norm
)
register_handler(nn.RMSNorm)(_norm)


def resize_norm_like(m: nn.Module, use: LayerUse, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None) -> None:
    """Generic handler for any norm-like module: per-channel parameters and buffers of the old size."""
    _norm(m, use, in_idx, out_idx)


@register_handler(nn.PReLU)
def _prelu(m: nn.Module, use: LayerUse, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None) -> None:
    """``PReLU(C)``: the slopes follow the channels (a new channel gets the mean slope); ``num_parameters`` too."""
    assert isinstance(m, nn.PReLU)
    if out_idx is None or m.num_parameters == 1:
        return
    _set(m, "weight", take(m.weight.data, 0, out_idx, "mean"))
    m.num_parameters = int(out_idx.numel())


@register_handler(nn.RNNBase)
def _rnn(m: nn.Module, use: LayerUse, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None) -> None:
    """``nn.LSTM``/``nn.GRU``/``nn.RNN`` fed by a group: the first layer's input weights (each direction) follow
    its channels (a new channel gets zero weights), and ``input_size`` too. Hidden sizes stay."""
    assert isinstance(m, nn.RNNBase)
    if in_idx is None:
        return
    for suffix in ("", "_reverse"):
        name = f"weight_ih_l0{suffix}"
        if hasattr(m, name):
            _set(m, name, take(getattr(m, name).data, 1, in_idx, 0.0))  # RNNBase.__setattr__ updates _flat_weights
    m.input_size = int(in_idx.numel())
