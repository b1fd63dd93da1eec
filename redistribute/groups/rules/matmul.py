"""Rules for the ops of attention: matrix products and ``F.scaled_dot_product_attention``.

``a @ b`` contracts ``a``'s last dim with ``b``'s second to last: the two carry the same channels (``q @ k^T``
couples the query and key head widths), the result has ``a``'s rows and ``b``'s columns (``attn @ v`` carries the
value head width) and the broadcast batch dims. Its multiply-accumulates, ``batch * M * K * N``, are recorded as a
``flops`` use (``FlopCounterMode`` counts them as ``bmm``/``mm``).

``F.scaled_dot_product_attention(q, k, v)`` couples ``q``'s and ``k``'s head widths, ``k``'s and ``v``'s token
dims, and returns ``q``'s dims with ``v``'s head width. Its cost is that of its two products, ``q @ k^T`` and
``attn @ v``, exactly what the explicit path of the same module costs, so a model's FLOPs do not depend on
whether timm picked the fused kernel (``FlopCounterMode`` has no formula for the CPU kernel; the tests give it
the flash-attention one).
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import fx

from ..spaces import Layout, const, layout_size
from ..uses import LayerUse
from .base import Dims, Walker, function_rule, method_rule

__all__: list[str] = []


def _spaced(lay: Layout) -> bool:
    return any(s.space is not None for s in lay)


def _free(w: Walker, lay: Layout) -> bool:
    """Whether ``lay`` can still change width: a fixed space (a mask buffer's dims) counts as a constant."""
    return any(s.space is not None and not w.table.is_fixed(s.space) for s in w.table.resolve(lay))


def _batch(w: Walker, node: fx.Node, parts: list[tuple[Layout, ...]], shape: tuple[int, ...]) -> list[Layout]:
    """Broadcast leading (batch) dims: equal-size layouts are the same channels; a spaced dim cannot broadcast."""
    out: list[Layout] = []
    for k, size in enumerate(shape):
        found = []
        for p in parts:
            pos = k - (len(shape) - len(p))
            if pos < 0:
                continue
            if layout_size(p[pos]) == size:
                found.append(p[pos])
            elif _spaced(p[pos]):
                w.table.fix(p[pos], f"broadcast at '{node.name}'")
        for other in found[1:]:
            w.table.unify(found[0], other, node.name)
        spaced = [f for f in found if _spaced(f)]
        out.append(spaced[0] if spaced else const(size))
    return out


def _record_macs(w: Walker, node: fx.Node, dims: list[Layout], sizes: list[int]) -> None:
    """A ``flops`` use for ``prod(sizes)`` MACs: at most two free dims enter as layouts, the rest as a count."""
    spaced = [k for k, lay in enumerate(dims) if _free(w, lay)]
    for k in spaced[2:]:
        w.table.fix(dims[k], f"matmul '{node.name}' multiplies more than two channel dims")
    chosen = spaced[:2]
    lays = [dims[k] for k in chosen] + [const(1)] * (2 - len(chosen))
    positions = math.prod(s for k, s in enumerate(sizes) if k not in chosen)
    src = node.args[0]
    in_shape = tuple(src.meta["val"].shape) if isinstance(src, fx.Node) else ()
    out_shape = tuple(node.meta["val"].shape)
    w.uses.append(
        LayerUse(
            node.name,
            "flops",
            node.name,
            w.order,
            lays[0],
            lays[1],
            -1,
            "none",
            in_shape,
            out_shape,
            positions=positions,
        )
    )


@function_rule(operator.matmul, torch.matmul, torch.bmm)
@method_rule("matmul", "bmm")
def _matmul(w: Walker, node: fx.Node) -> Dims:
    a, b = w.dims(node.args[0]), w.dims(node.args[1])
    val = node.meta.get("val")
    if not isinstance(a, tuple) or not isinstance(b, tuple) or len(a) < 2 or len(b) < 2:
        return w.unknown(node)
    if not isinstance(val, torch.Tensor) or val.ndim != max(len(a), len(b)):
        return w.unknown(node)
    w.table.unify(a[-1], b[-2], node.name)
    batch = _batch(w, node, [a[:-2], b[:-2]], tuple(val.shape[:-2]))
    k = layout_size(a[-1])
    sizes = [*val.shape[:-2], val.shape[-2], k, val.shape[-1]]
    _record_macs(w, node, [*batch, a[-2], a[-1], b[-1]], [int(s) for s in sizes])
    return (*batch, a[-2], b[-1])


@function_rule(F.scaled_dot_product_attention)
def _sdpa(w: Walker, node: fx.Node) -> Dims:
    names = ("query", "key", "value", "attn_mask")
    args = [node.args[i] if i < len(node.args) else node.kwargs.get(n) for i, n in enumerate(names)]
    q, k, v = (w.dims(a) for a in args[:3])
    val = node.meta.get("val")
    if not all(isinstance(d, tuple) and len(d) >= 2 for d in (q, k, v)) or not isinstance(val, torch.Tensor):
        return w.unknown(node)
    if not len(q) == len(k) == len(v) == val.ndim:
        return w.unknown(node)
    w.table.unify(q[-1], k[-1], node.name)
    w.table.unify(k[-2], v[-2], node.name)
    batch = _batch(w, node, [q[:-2], k[:-2], v[:-2]], tuple(val.shape[:-2]))
    mask = w.dims(args[3]) if isinstance(args[3], fx.Node) else None
    for lay in mask if isinstance(mask, tuple) else ():
        if _spaced(lay):
            w.table.fix(lay, f"attention mask at '{node.name}'")
    lead = [int(s) for s in val.shape[:-2]]
    n_q, n_k = int(val.shape[-2]), layout_size(k[-2])
    _record_macs(w, node, [*batch, q[-2], q[-1], k[-2]], [*lead, n_q, layout_size(q[-1]), n_k])  # q @ k^T
    _record_macs(w, node, [*batch, q[-2], k[-2], v[-1]], [*lead, n_q, n_k, layout_size(v[-1])])  # attn @ v
    return (*batch, q[-2], v[-1])
