"""Walk a traced graph once, in execution order, mapping every tensor dimension to channel spaces.

The walker owns the :class:`~redistribute.groups.spaces.SpaceTable`, dispatches each node to its rule (see
:mod:`redistribute.groups.rules`) and records, for every layer, which layouts its weights follow. Nothing here decides
widths; :mod:`redistribute.groups.graph` turns the records into groups.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import fx, nn

from ..tracing.behaviour import lookup
from . import heads as _heads
from .rules import base as _rules
from .rules import functions, matmul  # noqa: F401  (importing registers their rules)
from .rules import layout_ops as _layout_ops
from .rules import modules as _rules_modules
from .sizes import SizeCheck, SizeSources, check_sizes, settle_sizes
from .spaces import Layout, SpaceTable, const, layout_size
from .uses import LayerUse, extra_per_out_channel

__all__ = ["LayerUse", "Walker"]

_logger = logging.getLogger(__name__)


class Walker:
    """Maps channel spaces over a traced graph (see module docstring)."""

    def __init__(
        self,
        root: nn.Module,
        group_policy: Callable[[str], str],
        opaque: dict[str, str],
        modules: dict[str, nn.Module],
    ) -> None:
        self.root = root
        self.modules = modules  # by name, aliases included (the tracer's index): get_submodule walks getattr per call
        self.table = SpaceTable()
        self.uses: list[LayerUse] = []
        self.outputs: list[tuple[str, str, tuple[Layout, ...], tuple[int, ...]]] = []  # (node, module, dims, shape)
        self.multiples: list[tuple[Layout, int, str]] = []
        self.blocks: list[tuple[Layout, int, str]] = []
        self._group_policy = group_policy
        self._opaque = opaque
        self._dims: dict[fx.Node, Any] = {}
        self._order = 0
        self._params: dict[str, tuple[Layout, ...]] = {}
        self._first_call: dict[str, tuple[Layout | None, Layout | None]] = {}
        self.unmapped: dict[str, str] = {}
        self.input_layout: Layout | None = None
        self.heads: dict[str, tuple[Layout, str, int]] = {}  # attention module -> head space, node, order
        self._costed: set[str] = set()  # black-box nodes given a constant cost
        self.cross_channel: list[tuple[Layout, str]] = []  # (layout, node) of ops that mix across channels

    # -- driving --------------------------------------------------------------------------------------------
    def run(self, graph: fx.Graph) -> None:
        sizes = SizeSources(self.dims)
        checks: list[SizeCheck] = []
        for node in graph.nodes:
            self._order += 1
            out = self._dims[node] = self._visit(node)
            if node.op in ("call_function", "call_method") and isinstance(node.meta.get("val"), torch.Tensor):
                check_sizes(self.table, sizes, node, out, self.dims, checks)
        settle_sizes(self.table, checks)
        self.uses.extend(_heads.head_uses(self))

    def _visit(self, node: fx.Node) -> Any:
        val = node.meta.get("val")
        if node.op == "placeholder":
            if not isinstance(val, torch.Tensor):
                return None
            dims = tuple(const(s) for s in val.shape)
            if val.ndim >= 2:
                dims = (dims[0], self.table.fresh(val.shape[1], "input"), *dims[2:])
                self.input_layout = dims[1]
                self.table.fix(dims[1], "model input")
            return dims
        if node.op == "get_attr":
            return self._param(node, val)
        if node.op == "output":
            for lay in self._flat_layouts(node.args[0]):
                self.table.fix(lay, "model output")
            return None
        if node.op == "call_module":
            return self._visit_module(node)
        rule = (
            _rules.FUNCTION_RULES.get(node.target) or _rules.FUNCTION_TYPE_RULES.get(type(node.target))
            if node.op == "call_function"
            else _rules.METHOD_RULES.get(str(node.target))
        )
        if rule is None:
            return self._default(node)
        return rule(self, node)

    def _visit_module(self, node: fx.Node) -> Any:
        name = str(node.target)
        mod = self.modules[name]
        if name in self._opaque:
            out = self.unknown(node, f"module '{name}' cannot be traced ({self._opaque[name]})")
        else:
            rule = lookup(_rules.MODULE_RULES, type(mod))
            if rule is None:
                has_state = any(True for _ in mod.parameters()) or any(True for _ in mod.buffers())
                if has_state:
                    out = self.unknown(node, f"no rule for module '{name}' ({type(mod).__name__})")
                else:
                    out = _rules_modules.passthrough_module(self, node, mod)
            else:
                out = rule(self, node, mod)
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor) and isinstance(out, tuple):
            self.outputs.append((node.name, name, out, tuple(val.shape)))
        return out

    def _param(self, node: fx.Node, val: Any) -> Any:
        if not isinstance(val, torch.Tensor):
            return None
        target = str(node.target)
        if target not in self._params:
            dims = tuple(const(s) if s == 1 else self.table.fresh(s, f"{target}[{d}]") for d, s in enumerate(val.shape))
            self._params[target] = dims
            is_param = 1 if isinstance(val, nn.Parameter) else 0
            for d, lay in enumerate(dims):
                if lay[0].space is not None:
                    self.uses.append(
                        LayerUse(
                            target,
                            "param",
                            node.name,
                            self._order,
                            None,
                            lay,
                            d,
                            "none",
                            tuple(val.shape),
                            tuple(val.shape),
                            per_channel=is_param,
                        )
                    )
        return self._params[target]

    def _default(self, node: fx.Node) -> Any:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            if isinstance(val, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in val):
                return self.unknown(node)
            return None
        tensors = [a for a in node.all_input_nodes if isinstance(a.meta.get("val"), torch.Tensor)]
        if len(tensors) == 1 and tuple(tensors[0].meta["val"].shape) == tuple(val.shape) and not node.meta.get("macs"):
            _logger.debug("treating %s (%s) as channel-preserving", node.name, node.target)
            return self.dims(tensors[0])
        return self.unknown(node)

    # -- queries --------------------------------------------------------------------------------------------
    def dims(self, arg: Any) -> Any:
        if isinstance(arg, fx.Node):
            return self._dims.get(arg)
        return None

    @property
    def order(self) -> int:
        return self._order

    def group_policy(self, name: str) -> str:
        return self._group_policy(name)

    def _flat_layouts(self, arg: Any) -> list[Layout]:
        out: list[Layout] = []

        def visit(a: Any) -> None:
            if isinstance(a, fx.Node):
                d = self._dims.get(a)
                stack = [d]
                while stack:
                    item = stack.pop()
                    if isinstance(item, tuple):
                        out.extend(item)
                    elif isinstance(item, list):
                        stack.extend(item)
            return None

        fx.node.map_aggregate(arg, visit)
        return out

    # -- records --------------------------------------------------------------------------------------------
    def use_layer(self, node: fx.Node, kind: str, in_l: Layout, out_l: Layout, mode: str = "none") -> None:
        name = str(node.target)
        first = self._first_call.get(name)
        if first is not None:  # a module called twice: both calls see the same weights
            if first[0] is not None:
                self.table.unify(first[0], in_l, node.name)
            if first[1] is not None:
                self.table.unify(first[1], out_l, node.name)
        else:
            self._first_call[name] = (in_l, out_l)
        src = node.args[0]
        in_shape = tuple(src.meta["val"].shape) if isinstance(src, fx.Node) else ()
        out_shape = tuple(node.meta["val"].shape)
        mod = self.modules[name]
        kernel = math.prod(getattr(mod, "kernel_size", (1,)))
        groups = int(getattr(mod, "groups", 1))
        bias = getattr(mod, "bias", None) is not None
        if kind == "conv":
            transposed = bool(getattr(mod, "transposed", False))
            positions = math.prod((in_shape if transposed else out_shape)[2:]) * out_shape[0]
            lead: tuple[Layout, ...] = ()
        else:
            positions, lead = self._linear_positions(src, in_shape)
        extra = extra_per_out_channel(mod)
        self.uses.append(
            LayerUse(
                name,
                kind,
                node.name,
                self._order,
                in_l,
                out_l,
                1,
                mode,
                in_shape,
                out_shape,
                kernel,
                groups,
                bias,
                extra,
                positions,
                lead,
            )
        )

    def mark_cross_channel(self, layout: Layout, node: fx.Node) -> None:
        """Record that ``node`` reduces or normalises across the channels of ``layout`` (a channel mean, softmax,
        LayerNorm, GroupNorm): new channels of its groups change its result, so growing them cannot preserve the
        function."""
        if any(seg.space is not None for seg in layout):
            self.cross_channel.append((layout, node.name))

    def use_member(self, node: fx.Node, kind: str, layout: Layout, dim: int) -> None:
        name = str(node.target)
        first = self._first_call.get(name)
        if first is not None and first[1] is not None:
            self.table.unify(first[1], layout, node.name)
        elif first is None:
            self._first_call[name] = (None, layout)
        size = sum(s.size for s in layout)
        mod = self.modules[name]
        per_channel = sum(1 for p in mod._parameters.values() if p is not None and p.ndim == 1 and p.shape[0] == size)
        self.uses.append(
            LayerUse(
                name,
                kind,
                node.name,
                self._order,
                None,
                layout,
                dim,
                "none",
                (),
                tuple(node.meta["val"].shape),
                per_channel=per_channel,
            )
        )

    def _linear_positions(self, src: Any, in_shape: tuple[int, ...]) -> tuple[int, tuple[Layout, ...]]:
        """How often a Linear's weight is applied: the input's leading dims, as layouts when they are known.

        The layouts matter when a leading dim carries a channel group: a Linear over a transposed map (MLP-Mixer's
        token mixing) is applied once per channel, so its cost follows that group's width.
        """
        dims = self.dims(src)
        if isinstance(dims, tuple) and len(dims) == len(in_shape) and in_shape:
            return 1, tuple(dims[:-1])
        return (math.prod(in_shape[:-1]) if in_shape else 0), ()

    def flops_linear(self, node: fx.Node, in_l: Layout, out_l: Layout) -> None:
        src = node.args[0]
        in_shape = tuple(src.meta["val"].shape) if isinstance(src, fx.Node) else ()
        positions, lead = self._linear_positions(src, in_shape)
        self.uses.append(
            LayerUse(
                node.name,
                "flops",
                node.name,
                self._order,
                in_l,
                out_l,
                -1,
                "none",
                in_shape,
                tuple(node.meta["val"].shape),
                positions=positions,
                position_layouts=lead,
            )
        )

    def require_multiple(self, layout: Layout, multiple: int, why: str) -> None:
        self.multiples.append((layout, int(multiple), why))

    def require_block(self, layout: Layout, block: int, why: str) -> None:
        self.blocks.append((layout, int(block), why))

    def tie(self, dep: Layout, src: Layout, num: int, den: int, why: str) -> None:
        rd, rs = self.table.resolve(dep), self.table.resolve(src)
        if len(rd) == 1 and len(rs) == 1 and rd[0].space is not None and rs[0].space is not None:
            self.table.ties.append((rd[0].space, rs[0].space, num, den))
        else:
            self.table.fix(dep + src, f"{why} ties parts of a concatenation")

    def unknown(self, node: fx.Node, reason: str | None = None) -> Any:
        """Fix every space that reaches ``node`` and give its outputs constant dims."""
        target = getattr(node.target, "__name__", node.target)
        reason = reason or f"unsupported op '{target}' at node '{node.name}'"
        self.unmapped[node.name] = reason
        self._constant_cost(node)
        for lay in self._flat_layouts(list(node.args) + list(node.kwargs.values())):
            self.table.fix(lay, reason)
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            return tuple(const(s) for s in val.shape)
        if isinstance(val, (tuple, list)):
            return [tuple(const(s) for s in v.shape) if isinstance(v, torch.Tensor) else None for v in val]
        return None

    # -- shared shape logic ---------------------------------------------------------------------------------
    def _constant_cost(self, node: fx.Node) -> None:
        """Cost a black box as what its meta run counted (the tracer's ``macs``): a constant, as its groups are
        fixed."""
        macs = node.meta.get("macs")
        if macs and node.name not in self._costed:
            self._costed.add(node.name)
            one = const(1)
            self.uses.append(LayerUse(node.name, "flops", node.name, self._order, one, one, positions=int(macs)))

    def keep_dims(self, node: fx.Node, src: Any) -> Any:
        x = self.dims(src)
        val = node.meta.get("val")
        if not isinstance(x, tuple) or not isinstance(val, torch.Tensor):
            return self.unknown(node)
        if len(x) != val.ndim:
            return self.reshape(node, src)
        out = []
        for lay, size in zip(x, val.shape, strict=False):
            if layout_size(lay) == size:
                out.append(lay)
            else:
                if any(s.space is not None for s in lay):
                    self.table.fix(lay, f"'{node.name}' changes the channel count")
                out.append(const(size))
        return tuple(out)

    def broadcast(self, node: fx.Node, srcs: Sequence[fx.Node]) -> Any:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            return None
        shape = tuple(val.shape)
        out: list[Layout] = []
        for k in range(len(shape)):
            found: list[Layout] = []
            for s in srcs:
                d = self.dims(s)
                if not isinstance(d, tuple) or not d:
                    continue
                pos = k - (len(shape) - len(d))
                if pos < 0:
                    continue
                lay = d[pos]
                if layout_size(lay) == shape[k]:
                    found.append(lay)
                elif any(seg.space is not None for seg in lay):
                    self.table.fix(lay, f"broadcast at '{node.name}'")
            for other in found[1:]:
                self.table.unify(found[0], other, node.name)
            spaced = [f for f in found if any(seg.space is not None for seg in f)]
            out.append(spaced[0] if spaced else const(shape[k]))
        return tuple(out)

    def reshape(self, node: fx.Node, src: Any) -> Any:
        return _layout_ops.reshape(self, node, src)

    def index(self, node: fx.Node, x: tuple[Layout, ...], idx: Any) -> Any:
        return _layout_ops.index(self, node, x, idx)

    def split_layout(self, node: fx.Node, layout: Layout, sizes: list[int]) -> list[Layout]:
        return _layout_ops.split_layout(self, node, layout, sizes)
