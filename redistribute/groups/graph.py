"""Channel groups: what the walker found, as frozen results, and :func:`trace`, the public entry point.

A *group* is a set of channels that must keep the same width and the same order everywhere it appears: the
output of a conv, the BN after it, the residual stream it is added to, the depthwise conv that reads it. Groups are
numbered in execution order of their first appearance.

Example (torch-pruning's canonical coupling, a residual add):
    >>> import torch
    >>> from torch import fx, nn
    >>> class Block(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.stem, self.a, self.b = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1)
    ...         self.head = nn.Linear(8, 10)
    ...     def forward(self, x):
    ...         x = self.stem(x)
    ...         x = x + self.b(self.a(x).relu())
    ...         return self.head(x.mean((2, 3)))
    >>> g = trace(Block(), input_size=(3, 16, 16))
    >>> [grp.producers for grp in g.free_groups()]
    [('stem', 'b'), ('a',)]
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import torch
from torch import fx, nn

from ..errors import TraceError, UsageError
from ..source import class_label
from ..tracing.gcpause import gc_paused
from ..tracing.input_size import resolve_input_size
from ..tracing.tracer import TracedModel, trace_model
from .meta import meta_layouts
from .policy import policy_for
from .rules.base import MODULE_RULES
from .spaces import Layout, Segment
from .uses import LayerUse
from .walk import Walker

__all__ = ["ChannelGraph", "ChannelGroup", "trace"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelGroup:
    """A set of coupled channels with one width.

    Attributes:
        id: Index in execution order.
        width: Base width (channels in the model as traced).
        producers: Layers whose output channels are this group (convs, linears), in execution order.
        consumers: Layers that read this group as input channels.
        members: Norm layers and loose parameters sized by this group.
        kind: ``conv`` when a convolution (or a pointwise linear on a feature map) produces it, ``linear`` when
            only token/vector linears do, ``none`` when no layer produces it (model input, loose parameters).
        stage: Output spatial size of its first producer (``()`` for vectors and tokens).
        producer_orders: Execution index of each producer.
        multiple: The width must be a multiple of this (grouped convs keeping their group count, GroupNorm).
        block: Channels are kept and added in whole blocks of this size (grouped convs keeping group width).
        tie: ``(source group id, num, den)``: the width is derived as ``source * num / den``.
        fixed: Why the width cannot change, or ``None``.
    """

    id: int
    width: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    members: tuple[str, ...]
    kind: str
    stage: tuple[int, ...]
    producer_orders: tuple[int, ...] = ()
    multiple: int = 1
    block: int = 1
    tie: tuple[int, int, int] | None = None
    fixed: str | None = None

    @property
    def signature(self) -> str:
        """A stable name for the group: its producer names, or its members where it has no producer."""
        names = self.producers or self.members or self.consumers
        return "|".join(names) if names else f"group{self.id}"

    @property
    def constraints(self) -> str:
        parts = []
        if self.multiple > 1:
            parts.append(f"multiple of {self.multiple}")
        if self.block > 1:
            parts.append(f"blocks of {self.block}")
        if self.tie is not None:
            parts.append(f"= g{self.tie[0]} x {self.tie[1]}/{self.tie[2]}")
        return ", ".join(parts)


@dataclass(frozen=True)
class ChannelGraph:
    """Everything later stages need about a traced model.

    Attributes:
        groups: All groups, by id.
        uses: Every layer use, with layouts whose segments name group ids.
        outputs: ``(node, module, dims, shape)`` of every leaf-module output (activation memory).
        input_shape: Traced input shape, batch included.
        base_params: ``sum(p.numel())`` of the traced model.
        opaque: Modules kept as black boxes, with the reason.
        unmapped: Nodes whose op could not be mapped, with the reason.
        meta_layouts: Channel layouts behind timm metadata (``num_features``, ``head_hidden_size``,
            ``feature_info.<i>``).
        model_class: Qualified class name of the traced model.
        cross_channel: Groups that some op reduces or normalises across (channel mean/sum/softmax, LayerNorm,
            GroupNorm), mapped to the first such node: growing them cannot preserve the function.
        output_shapes: Shapes of the model's output tensors (flattened in order), which surgery must keep.
    """

    groups: tuple[ChannelGroup, ...]
    uses: tuple[LayerUse, ...]
    outputs: tuple[tuple[str, str, tuple[Layout, ...], tuple[int, ...]], ...]
    input_shape: tuple[int, ...]
    base_params: int
    opaque: dict[str, str] = field(default_factory=dict)
    unmapped: dict[str, str] = field(default_factory=dict)
    meta_layouts: dict[str, Layout] = field(default_factory=dict)
    model_class: str = ""
    cross_channel: dict[int, str] = field(default_factory=dict)
    output_shapes: tuple[tuple[int, ...], ...] = ()

    def free_groups(self, scope: str = "conv") -> list[ChannelGroup]:
        """Groups a template redistributes: not fixed, not tied, produced by a conv (``scope="all"``: any layer)."""
        kinds = ("conv",) if scope == "conv" else ("conv", "linear")
        return [g for g in self.groups if g.fixed is None and g.tie is None and g.kind in kinds]

    def base_widths(self) -> dict[int, int]:
        return {g.id: g.width for g in self.groups}

    def by_signature(self) -> dict[str, ChannelGroup]:
        return {g.signature: g for g in self.groups}


@gc_paused
def trace(model: nn.Module, input_size: tuple[int, ...] | str | None = None) -> ChannelGraph:
    """Trace ``model`` and find its channel groups. The model is not modified.

    Args:
        model: Any ``nn.Module`` whose forward takes one image-like tensor.
        input_size: Input size without batch, e.g. ``(3, 224, 224)`` or ``"3,224,224"``. Defaults to the timm
            ``pretrained_cfg`` input size when the model has one.

    Returns:
        The :class:`ChannelGraph`.

    Raises:
        TraceError: The model cannot be traced even with black boxes; the message names the node.
        UsageError: No input size given and none can be inferred.

    Example:
        >>> import timm
        >>> g = trace(timm.create_model("test_resnet"))
        >>> sum(1 for grp in g.groups if grp.fixed is None) > 0
        True
    """
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"model {model!r} is not an nn.Module. Hint: build it first, e.g. timm.create_model('resnet50'), "
            "or use redistribute.load_model('timm:resnet50')"
        )
    input_size = resolve_input_size(model, input_size)
    leaf_types = frozenset(MODULE_RULES)
    traced = trace_model(model, (1, *tuple(input_size)), leaf_types)
    walker = Walker(model, policy_for(model), traced.opaque, traced.index.modules)
    walker.run(traced.graph)
    return _finalize(model, traced, walker)


def _finalize(model: nn.Module, traced: TracedModel, w: Walker) -> ChannelGraph:
    table = w.table
    gid: dict[int, int] = {}
    # by id, holding the layout so its id stays unique: many uses share one layout (a concat feeds a whole block)
    mapped: dict[int, tuple[Layout, Layout]] = {}

    def seg_map(layout: Layout | None) -> Layout | None:
        if layout is None:
            return None
        done = mapped.get(id(layout))
        if done is not None:
            return done[1]
        out = []
        for s in table.resolve(layout):
            if s.space is None:
                out.append(s)
            else:
                root = table.find(s.space)
                if root not in gid:
                    gid[root] = len(gid)
                out.append(Segment(gid[root], s.width, s.repeat))
        result = tuple(out)
        mapped[id(layout)] = (layout, result)
        return result

    if w.input_layout is not None:
        seg_map(w.input_layout)
    uses = tuple(
        replace(
            u,
            in_layout=seg_map(u.in_layout),
            out_layout=seg_map(u.out_layout),
            position_layouts=tuple(seg_map(lay) for lay in u.position_layouts),  # type: ignore[misc]
        )
        for u in w.uses
    )
    inlined = [
        (node.name, name, w.dims(node), tuple(node.meta["val"].shape))
        for name, node in traced.inlined_calls
        if isinstance(node.meta.get("val"), torch.Tensor) and isinstance(w.dims(node), tuple)
    ]
    outputs = tuple((n, m, tuple(seg_map(d) for d in dims), shape) for n, m, dims, shape in [*w.outputs, *inlined])  # type: ignore[misc]
    roots = {v: k for k, v in gid.items()}
    n = len(gid)
    producers: list[list[tuple[int, str, LayerUse]]] = [[] for _ in range(n)]
    consumers: list[list[str]] = [[] for _ in range(n)]
    members: list[list[str]] = [[] for _ in range(n)]
    for u in uses:
        if u.kind in ("conv", "linear"):
            for s in u.out_layout or ():
                if s.space is not None and u.module not in [p[1] for p in producers[s.space]]:
                    producers[s.space].append((u.order, u.module, u))
            for s in u.in_layout or ():
                if s.space is not None and u.module not in consumers[s.space]:
                    consumers[s.space].append(u.module)
        elif u.kind in ("norm", "param"):
            for s in u.out_layout or ():
                if s.space is not None and u.module not in members[s.space]:
                    members[s.space].append(u.module)
    multiple = [1] * n
    block = [1] * n
    for layout, m, _why in w.multiples:
        for s in seg_map(layout) or ():
            if s.space is not None:
                multiple[s.space] = math.lcm(multiple[s.space], m)
    for layout, b, _why in w.blocks:
        for s in seg_map(layout) or ():
            if s.space is not None:
                block[s.space] = math.lcm(block[s.space], b)
    ties: dict[int, tuple[int, int, int]] = {}
    for dep, src, num, den in table.ties:
        d, s = seg_map(table.atom(dep)), seg_map(table.atom(src))
        if d and s and len(d) == 1 and len(s) == 1 and d[0].space != s[0].space:
            ties[d[0].space] = (s[0].space, num, den)  # type: ignore[index]
    head_from = _head_order(traced)
    groups = []
    for g in range(n):
        root = roots[g]
        prods = sorted(producers[g], key=lambda p: p[0])
        # a Linear over channels-last feature maps (ConvNeXt) filters like a conv; one over another 4-D tensor whose
        # last dim carries no channel group (CaiT's talking heads mix attention heads) does not
        filters = [
            p
            for p in prods
            if (
                p[2].kind == "conv"
                or (len(p[2].in_shape) >= 4 and any(seg.space is not None for seg in p[2].in_layout or ()))
            )
            and not _classifier_layer(p[2], head_from)
        ]
        kind = "conv" if filters else ("linear" if prods else "none")
        first = (filters or prods)[0][2] if prods else None
        stage: tuple[int, ...] = ()
        if first is not None:
            stage = tuple(first.out_shape[2:]) if first.kind == "conv" else tuple(first.out_shape[1:-1])
        reasons = table.fixed.get(root)
        fixed = "; ".join(reasons) if reasons else None
        if fixed is None and not prods:
            fixed = "no layer produces it" if members[g] or consumers[g] else "unused"
        groups.append(
            ChannelGroup(
                id=g,
                width=table.width[root],
                producers=tuple(p[1] for p in prods),
                consumers=tuple(consumers[g]),
                members=tuple(members[g]),
                kind=kind,
                stage=stage,
                producer_orders=tuple(p[0] for p in prods),
                multiple=multiple[g],
                block=block[g],
                tie=ties.get(g),
                fixed=fixed,
            )
        )
    groups = _propagate_tie_fixes(groups)
    base_params = traced.index.num_params
    meta = meta_layouts(model, traced, w, seg_map)
    cross: dict[int, str] = {}
    for layout, node_name in w.cross_channel:
        for seg in seg_map(layout) or ():
            if seg.space is not None:
                cross.setdefault(seg.space, node_name)
    if not any(g.fixed is None for g in groups):
        _logger.info("no free channel group found in %s", type(model).__name__)
    return ChannelGraph(
        groups=tuple(groups),
        uses=uses,
        outputs=outputs,
        input_shape=traced.input_shape,
        base_params=base_params,
        opaque=dict(traced.opaque),
        unmapped=dict(w.unmapped),
        meta_layouts=meta,
        model_class=class_label(type(model)),
        cross_channel=cross,
        output_shapes=_output_shapes(traced),
    )


def _output_shapes(traced: TracedModel) -> tuple[tuple[int, ...], ...]:
    nodes: list[fx.Node] = []
    for out in (n for n in traced.graph.nodes if n.op == "output"):
        fx.node.map_arg(out.args[0], nodes.append)
    vals = [n.meta.get("val") for n in nodes]
    return tuple(tuple(v.shape) for v in vals if isinstance(v, torch.Tensor))


def _propagate_tie_fixes(groups: list[ChannelGroup]) -> list[ChannelGroup]:
    changed = True
    while changed:
        changed = False
        for g in groups:
            if g.tie is None:
                continue
            src = groups[g.tie[0]]
            if (src.fixed is None) != (g.fixed is None):
                reason = f"tied to g{src.id if g.fixed is None else g.id} which is fixed"
                groups[g.id] = replace(g, fixed=g.fixed or reason)
                groups[src.id] = replace(src, fixed=src.fixed or reason)
                changed = True
    return groups


def _head_order(traced: TracedModel) -> int | None:
    """The walker's order of the trunk's output (timm's ``forward_features``): layers after it are the head."""
    mark = traced.marks.get("features")
    return next((i for i, node in enumerate(traced.graph.nodes, 1) if node is mark), None) if mark else None


def _classifier_layer(u: LayerUse, head_from: int | None) -> bool:
    """A layer of the classifier, not a filter: run by timm's ``forward_head`` (VGG's ``pre_logits`` ConvMlp), or
    a conv whose kernel covers its whole input and leaves one position (a dense layer written as a conv)."""
    if head_from is not None and u.order > head_from:
        return True
    spatial_in, spatial_out = math.prod(u.in_shape[2:]), math.prod(u.out_shape[2:])
    return u.kind == "conv" and spatial_in > 1 and spatial_out == 1 and u.kernel == spatial_in


def check_traceable(graph: ChannelGraph) -> None:
    """Raise when nothing can be redistributed, naming the first reason."""
    if not any(g.fixed is None and g.tie is None and g.kind != "none" for g in graph.groups):
        reasons = sorted({g.fixed for g in graph.groups if g.fixed})
        raise TraceError(
            f"no channel group of {graph.model_class} can change width ({reasons[0] if reasons else 'no layers'}). "
            "Hint: run 'redistribute inspect' to see every group and why it is fixed"
        )
