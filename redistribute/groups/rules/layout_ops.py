"""The walker's dimension bookkeeping for reshapes, indexing and splits (layouts in, layouts out)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import fx

from .. import heads as _heads
from ..spaces import Layout, Segment, const, layout_size
from ..uses import LayerUse
from .base import Walker

__all__ = ["index", "reshape", "split_layout"]


def reshape(w: Walker, node: fx.Node, src: Any) -> Any:
    """A view/reshape: dims whose sizes match keep their layouts; merged dims repeat, split heads regroup."""
    x = w.dims(src)
    val = node.meta.get("val")
    if not isinstance(x, tuple) or not isinstance(val, torch.Tensor):
        return w.unknown(node)
    in_shape = tuple(src.meta["val"].shape)
    out_shape = tuple(val.shape)
    out: list[Layout] = [const(s) for s in out_shape]
    in_idx = [i for i, s in enumerate(in_shape) if s != 1]
    out_idx = [j for j, s in enumerate(out_shape) if s != 1]
    for i, s in enumerate(in_shape):
        if s == 1 and any(seg.space is not None for seg in x[i]):
            w.table.fix(x[i], f"reshape '{node.name}' drops a one-channel dim")
    a = b = 0
    while a < len(in_idx) and b < len(out_idx):
        ga, gb = [in_idx[a]], [out_idx[b]]
        pa, pb = in_shape[in_idx[a]], out_shape[out_idx[b]]
        a, b = a + 1, b + 1
        while pa != pb:
            if pa < pb and a < len(in_idx):
                ga.append(in_idx[a])
                pa *= in_shape[in_idx[a]]
                a += 1
            elif b < len(out_idx):
                gb.append(out_idx[b])
                pb *= out_shape[out_idx[b]]
                b += 1
            else:
                break
        lays = [x[i] for i in ga]
        spaced = [k for k, lay in enumerate(lays) if any(seg.space is not None for seg in lay)]
        if not spaced:
            continue
        if len(ga) == 1 and len(gb) == 1:
            out[gb[0]] = lays[0]
        elif len(gb) == 1 and spaced == [0]:
            inner = math.prod(in_shape[i] for i in ga[1:])
            out[gb[0]] = tuple(Segment(s.space, s.width, s.repeat * inner) for s in lays[0])
        elif len(in_shape) == 2 and ga == [1] and gb[0] == 1 and _one_segment(w, lays[0]):
            # a vector made a feature map, channel-major (the inverse of a flatten): (N, C*R) -> (N, C, ...), each of
            # the C channels owning R consecutive features (a generator's Linear -> view(-1, C, 4, 4))
            per = math.prod(out_shape[j] for j in gb[1:])
            channels = w.table.fresh(out_shape[1], f"{node.name}.channels")
            w.table.unify(lays[0], (Segment(channels[0].space, out_shape[1], per),), node.name)
            out[1] = channels
        else:  # attention heads (see _heads); anything else is fixed there
            trailing = ga[-1] == len(in_shape) - 1 and gb[-1] == len(out_shape) - 1
            mapped = _heads.regroup(w, node, lays, [out_shape[j] for j in gb], trailing)
            for j, lay in zip(gb, mapped, strict=False):
                out[j] = lay
    _heads.check_literal_shape(w, node, out)
    return tuple(out)


def _one_segment(w: Walker, layout: Layout) -> bool:
    resolved = w.table.resolve(layout)
    return len(resolved) == 1 and resolved[0].space is not None and resolved[0].repeat == 1


def index(w: Walker, node: fx.Node, x: tuple[Layout, ...], idx: Any) -> Any:
    """Basic indexing: full slices keep a dim, ``None`` adds one; picking inside a channel dim fixes it."""
    items = list(idx) if isinstance(idx, tuple) else [idx]
    if any(isinstance(i, (fx.Node, torch.Tensor, list)) for i in items):
        return w.unknown(node)
    n_ell = len(x) - sum(1 for i in items if i is not None and i is not Ellipsis)
    out: list[Layout] = []
    d = 0
    for it in items:
        if it is Ellipsis:
            out.extend(x[d : d + n_ell])
            d += n_ell
        elif it is None:
            out.append(const(1))
        elif isinstance(it, int):
            if any(s.space is not None for s in x[d]):
                w.table.fix(x[d], f"indexing at '{node.name}'")
            d += 1
        elif isinstance(it, slice):
            if it == slice(None):
                out.append(x[d])
            elif any(s.space is not None for s in x[d]):
                out.append(_channel_slice(w, node, it, x[d], d, int(node.meta["val"].shape[len(out)])))
            else:
                out.append(const(node.meta["val"].shape[len(out)]))
            d += 1
    out.extend(x[d:])
    return tuple(out)


def _channel_slice(w: Walker, node: fx.Node, it: slice, lay: Layout, dim: int, n: int) -> Layout:
    """A slice of a channel dim. ``[:k]`` with ``k`` the whole width (GhostNet's ``out[:, :self.oup]``) keeps the
    group when ``k`` is an int attribute of the module whose forward slices, which surgery then sets to the new
    width; any other slice fixes the group, with a reason that names it (and the tensor it makes carries it on)."""
    size = layout_size(lay)
    owner = _heads._owner(w, node)
    where = f" in '{owner[0]}'" if owner is not None and owner[0] else ""
    whole = it.start in (None, 0) and it.step in (None, 1) and it.stop == size
    if whole and owner is not None:
        attrs = [k for k, v in vars(owner[1]).items() if type(v) is int and v == size and not k.startswith("_")]
        if len(attrs) == 1:
            name = f"{owner[0]}.{attrs[0]}" if owner[0] else attrs[0]
            w.uses.append(LayerUse(name, "attr", node.name, w.order, None, lay, dim=dim))
            return lay
    if whole:
        reason = f"slice '{node.name}'{where} keeps a literal {size} channels, not an attribute surgery can update"
    else:
        reason = f"slice '{node.name}'{where} cuts the channels ({n} of {size})"
    w.table.fix(lay, reason)
    new = w.table.fresh(n, f"{node.name}.slice")
    w.table.fix(new, reason)
    return new


def split_layout(w: Walker, node: fx.Node, layout: Layout, sizes: list[int]) -> list[Layout]:
    """The parts of ``layout`` cut at ``sizes``; a cut through a segment fixes the layout (constant parts)."""
    resolved = w.table.resolve(layout)
    bounds, acc = [], 0
    for s in resolved:
        acc += s.size
        bounds.append(acc)
    parts: list[Layout] = []
    start = 0
    for size in sizes:
        end = start + size
        segs = []
        pos = 0
        for s in resolved:
            if pos >= start and pos + s.size <= end:
                segs.append(s)
            pos += s.size
        if layout_size(tuple(segs)) == size:
            parts.append(tuple(segs))
        else:
            w.table.fix(layout, f"split at '{node.name}' cuts through a channel group")
            return [const(z) for z in sizes]
        start = end
    return parts
