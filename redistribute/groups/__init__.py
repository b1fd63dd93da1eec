"""Stage 2, groups: a traced graph in, channel dependency groups out.

Takes the :class:`~redistribute.tracing.tracer.TracedModel` of :mod:`redistribute.tracing`; the walker
(:mod:`~redistribute.groups.walk`) visits every node once and maps each tensor dimension to channel spaces
(:mod:`~redistribute.groups.spaces`) by the rules in :mod:`redistribute.groups.rules`; coupled spaces are merged
into groups. Hands on a :class:`~redistribute.groups.graph.ChannelGraph`: every group with its base width,
producers and consumers, depth position, stage, divisibility constraints and, for a fixed group, the reason.
Attention heads (:mod:`~redistribute.groups.attention`, :mod:`~redistribute.groups.heads`) are a head count kept
and a per-head width that is one group.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "ChannelGraph": ".graph",
    "ChannelGroup": ".graph",
    "register_group_width_block": ".policy",
    "trace": ".graph",
    "HeadSpec": ".attention",
    "register_attention": ".attention",
    "LayerUse": ".uses",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
