"""Reshapes that split channels into attention heads, or merge heads back into channels.

``qkv(x).reshape(B, N, 3, H, D)``: the channel space ``S`` of the projection (width ``3*H*D``) becomes an alias of
``3*H`` copies of a new *head space* ``S_D`` of width ``D``, which the last dimension carries; the ``3`` and ``H``
dimensions carry no channels. The head count is kept, the head width ``D`` is one channel group. The inverse,
``x.transpose(1, 2).reshape(B, N, H*D)``, gives ``H`` copies of ``S_D``: a concatenation of copies, which the rest
of the walker, the cost model and surgery already handle as a multi-segment layout.

A split is mapped only when it is *trailing* (the channel dimension is the input's last and ``D`` the output's
last, ``H`` just before it) and happens in the forward of an attention class registered in
:mod:`redistribute.groups.attention`, whose head attributes surgery updates. Anything else returns a reason and the
walker keeps the group fixed. Each registered module has one head space: every split in its forward shares it.
A merge whose only channel dim is the last one is exact layout algebra and is mapped in any module; a literal
size at a channel dim still fixes its group unless :func:`literal_ok` (an attribute surgery updates).
"""

from __future__ import annotations

import math

import torch
from torch import fx, nn

from .attention import HeadSpec, spec_of
from .rules.base import Walker
from .spaces import Layout, const, layout_size
from .uses import LayerUse

__all__ = ["check_literal_shape", "head_uses", "literal_ok", "regroup"]


def _owner(w: Walker, node: fx.Node) -> tuple[str, nn.Module] | None:
    """The innermost module whose forward emitted ``node``."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    key = next(reversed(stack))
    value = stack[key]
    path = value[0] if isinstance(value, tuple) and value and isinstance(value[0], str) else key
    module = w.modules.get(path)
    return None if module is None else (path, module)


def regroup(w: Walker, node: fx.Node, lays: list[Layout], out_sizes: list[int], trailing: bool) -> list[Layout]:
    """Layouts of the output dims of one reshape group (input dims ``lays`` -> ``out_sizes``).

    A reshape the walker cannot map fixes the spaced input layouts, with the reason, and gives ``[]``.
    """
    got = _regroup(w, node, lays, out_sizes, trailing)
    if isinstance(got, str):
        for lay in lays:
            w.table.fix(lay, got)
        return []
    return got


def _regroup(w: Walker, node: fx.Node, lays: list[Layout], out_sizes: list[int], trailing: bool) -> list[Layout] | str:
    spaced = [k for k, lay in enumerate(lays) if any(s.space is not None for s in w.table.resolve(lay))]
    refuse = f"reshape '{node.name}' splits or interleaves channels"
    if len(out_sizes) == 1 and spaced == [len(lays) - 1]:  # merge: (..., H, D) -> (..., H*D)
        copies = math.prod(layout_size(lay) for lay in lays[:-1])
        return [tuple(lays[-1]) * copies]
    if len(lays) != 1 or len(out_sizes) < 2 or not trailing:
        return refuse
    owner = _owner(w, node)
    spec = spec_of(type(owner[1])) if owner is not None else None
    if owner is None or spec is None:
        where = f"'{owner[0]}' ({type(owner[1]).__name__})" if owner is not None else "the top-level forward"
        return f"{refuse}: heads split in {where}, which has no head handler (redistribute.groups.attention)"
    name, mod = owner
    missing = [a for a in (spec.heads, spec.head_dim, spec.attn_dim, spec.scale) if a and not hasattr(mod, a)]
    if missing:
        return f"{refuse}: '{name}' has no attribute {missing[0]!r} (see its HeadSpec)"
    width = out_sizes[-1]
    if out_sizes[-2] != getattr(mod, spec.heads, None) and getattr(mod, spec.heads, None) != 1:  # 1: dim dropped
        return f"{refuse}: not into {spec.heads}={getattr(mod, spec.heads, None)} heads"
    resolved = w.table.resolve(lays[0])
    if any(s.space is None or s.repeat != 1 or s.width % width for s in resolved):
        return refuse
    head = _head_space(w, node, name, width)
    if head is None:
        return f"{refuse}: a second head width in '{name}'"
    for s in resolved:
        w.table.unify(w.table.atom(s.space), head * (s.width // width), node.name)  # type: ignore[arg-type]
    return [*[const(n) for n in out_sizes[:-1]], head]


def _head_space(w: Walker, node: fx.Node, module: str, width: int) -> Layout | None:
    """The head space of ``module`` (created on first sight, ``None`` for a second width)."""
    if module in w.heads:
        head = w.heads[module][0]
        return head if layout_size(head) == width else None
    head = w.table.fresh(width, f"{module}.head_dim")
    w.heads[module] = (head, node.name, w.order)
    return head


def head_uses(w: Walker) -> list[LayerUse]:
    """One ``heads`` use per attention module, for the end of the walk: surgery resizes its layers first."""
    return [
        LayerUse(m, "heads", n, order, None, h, -1, out_shape=(layout_size(h),)) for m, (h, n, order) in w.heads.items()
    ]


def literal_ok(w: Walker, node: fx.Node, literal: int, lay: Layout) -> bool:
    """Whether a literal reshape size at a head-mapped dim is an attribute that surgery updates."""
    owner = _owner(w, node)
    spec: HeadSpec | None = spec_of(type(owner[1])) if owner is not None else None
    if owner is None or spec is None or owner[0] not in w.heads:
        return False
    mod = owner[1]
    got, head = w.table.resolve(lay), w.table.resolve(w.heads[owner[0]][0])
    if spec.head_dim is not None and got == head and literal == getattr(mod, spec.head_dim, None):
        return True
    heads = getattr(mod, spec.heads, None)
    return (
        spec.attn_dim is not None
        and isinstance(heads, int)
        and got == head * heads
        and literal == getattr(mod, spec.attn_dim, None)
    )


def check_literal_shape(w: Walker, node: fx.Node, out: list[Layout]) -> None:
    """Fix the groups at dims a ``view``/``reshape`` sizes with a literal int, unless :func:`literal_ok`."""
    if str(node.target) not in ("view", "reshape") and node.target is not torch.reshape:
        return
    args = list(node.args[1:])
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = list(args[0])
    if len(args) != len(out):
        return
    for arg, lay in zip(args, out, strict=False):
        spaced = isinstance(arg, int) and arg != -1 and any(s.space is not None for s in lay)
        if spaced and not literal_ok(w, node, arg, lay):  # type: ignore[arg-type]
            w.table.fix(lay, f"reshape '{node.name}' has the literal size {arg} at a channel dim (write -1 there)")
