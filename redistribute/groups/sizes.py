"""Where integer sizes come from, so that a group's width never silently sizes somebody else's tensor.

``B, N, C = x.shape`` then ``qkv(x).reshape(B, N, 3, H, C // H)``: the last dimension of the reshape is computed
from ``x``'s channel group, but the data being reshaped is ``qkv``'s output. If ``x``'s group changed width on its
own, that reshape would fail or, worse, split the channels differently. The walker asks :func:`check_sizes` about
every tensor op that takes non-tensor arguments: each argument's *sources* are the layouts its value was computed
from (through ``x.shape``, ``x.size(d)``, ``getitem`` and arithmetic), and a source that is a channel group must
size its own dimension (a reshape that keeps ``x``'s channels where they were) or stay fixed, with the reason. That
is decided after the walk, when every coupling is known.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import fx

from .spaces import Layout, SpaceTable

__all__ = ["SizeCheck", "SizeSources", "check_sizes", "settle_sizes"]

_RESHAPES = {"reshape", "view"}
Prov = Any  # tuple[Layout, ...] (a scalar's sources) or list[tuple[Layout, ...]] (per element of a shape)


class SizeSources:
    """Memoised sources of the integer values in a graph (see module docstring)."""

    def __init__(self, dims_of: Callable[[fx.Node], Any]) -> None:
        self._dims_of = dims_of
        self._memo: dict[fx.Node, Prov] = {}

    def of(self, node: fx.Node) -> Prov:
        if node not in self._memo:
            self._memo[node] = self._compute(node)
        return self._memo[node]

    def flat(self, arg: Any) -> Iterator[Layout]:
        """Every source layout of an argument (a node, or a list/tuple of them)."""
        if isinstance(arg, fx.Node):
            yield from _flatten(self.of(arg))
        elif isinstance(arg, (list, tuple)):
            for a in arg:
                yield from self.flat(a)

    def _compute(self, node: fx.Node) -> Prov:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor) or node.op in ("placeholder", "get_attr", "output"):
            return ()
        x = self._dims_of(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) else None
        if node.op == "call_function" and node.target is getattr and len(node.args) > 1 and node.args[1] == "shape":
            return [(lay,) for lay in x] if isinstance(x, tuple) else ()
        if node.op == "call_method" and node.target == "size" and isinstance(x, tuple):
            d = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            return [(lay,) for lay in x] if d is None else (x[int(d)],)  # type: ignore[call-overload]
        if node.op == "call_method" and node.target == "numel" and isinstance(x, tuple):
            return tuple(x)
        if node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[0], fx.Node):
            src = self.of(node.args[0])
            idx = node.args[1]
            if isinstance(src, list) and isinstance(idx, int) and -len(src) <= idx < len(src):
                return src[idx]
            if isinstance(src, list) and isinstance(idx, slice):
                return src[idx]
        sources: list[Layout] = []
        for a in node.all_input_nodes:
            if not isinstance(a.meta.get("val"), torch.Tensor):
                sources.extend(_flatten(self.of(a)))
        return tuple(sources)


def _flatten(prov: Prov) -> Iterator[Layout]:
    if isinstance(prov, list):
        for p in prov:
            yield from p
    else:
        yield from prov


def _spaced(layout: Layout) -> bool:
    return any(s.space is not None for s in layout)


class SizeCheck(NamedTuple):
    """A size read from group ``src`` at node ``node``: fine when ``src`` is (by the end of the walk) one of ``own``;
    otherwise ``src`` is fixed, and so is ``sized`` (the dimension it sized), when given."""

    src: Layout
    own: tuple[Layout, ...]
    node: str
    sized: Layout | None = None


def settle_sizes(table: SpaceTable, checks: list[SizeCheck]) -> None:
    """Decide the recorded :class:`SizeCheck` s once the walk is over: a gate written ``x * y.view(b, c, 1, 1)`` with
    ``c`` from ``x.size()`` couples ``y`` to ``x`` only at the multiply, one node after the view."""
    for check in checks:
        src = table.resolve(check.src)
        if src in {table.resolve(lay) for lay in check.own}:
            continue
        table.fix(check.src, f"its width sizes another tensor at '{check.node}'")
        if check.sized is not None and _spaced(check.sized):
            table.fix(check.sized, f"'{check.node}' is sized from another group")


def check_sizes(
    table: SpaceTable,
    sizes: SizeSources,
    node: fx.Node,
    out: Any,
    dims_of: Callable[[Any], Any],
    checks: list[SizeCheck],
) -> None:
    """Record, in ``checks``, every channel group whose width sizes a dimension of ``node``'s result; whether that
    dimension is the group's own is decided after the walk (:func:`settle_sizes`)."""
    size_args = [a for a in list(node.args) + list(node.kwargs.values()) if _has_size_nodes(a)]
    if not size_args or not isinstance(out, tuple):
        return
    name = str(node.target) if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
    if name in _RESHAPES or node.target is torch.reshape:
        shape_args = list(node.args[1:])
        if len(shape_args) == 1 and isinstance(shape_args[0], (list, tuple, fx.Node)):
            single = shape_args[0]
            prov = sizes.of(single) if isinstance(single, fx.Node) else None
            shape_args = (
                list(prov)
                if isinstance(prov, list)
                else list(single)
                if isinstance(single, (list, tuple))
                else shape_args
            )
        if len(shape_args) == len(out):
            for arg, lay in zip(shape_args, out, strict=True):
                srcs = (
                    list(_flatten(arg))
                    if isinstance(arg, tuple) and all(isinstance(s, tuple) for s in arg)
                    else list(sizes.flat(arg))
                )
                checks.extend(SizeCheck(src, (lay,), node.name, lay) for src in srcs if _spaced(src))
            return
    own: list[Layout] = []
    for a in node.all_input_nodes:
        d = dims_of(a)
        if isinstance(d, tuple):
            own.extend(lay for lay in d if isinstance(lay, tuple))
    own.extend(lay for lay in out if isinstance(lay, tuple))
    for arg in size_args:
        checks.extend(SizeCheck(src, tuple(own), node.name) for src in sizes.flat(arg) if _spaced(src))


def _has_size_nodes(arg: Any) -> bool:
    if isinstance(arg, fx.Node):
        return not isinstance(arg.meta.get("val"), torch.Tensor)
    if isinstance(arg, (list, tuple)):
        return any(_has_size_nodes(a) for a in arg)
    return False
