"""From a template to widths: depth positions, stage trends, local ratios, and rounding.

For every free group ``g`` (see ``DESIGN.md``):

* ``p_g``: mean execution index of its producers among all producers of free groups, over ``count - 1``;
* stage ``s(g)``: the output spatial size of its producers; the stage **trend** ``W_s`` is the median base width
  of the free groups in the stage, and the **local ratio** is ``rho_g = w_g / W_s`` (a ResNet bottleneck's stream
  is 4, an inverted residual's expansion its expansion ratio);
* range ``r = max W_s / min W_s`` (8 when below 2, e.g. isotropic nets), unless overridden;
* new width ``w'_g = fit(k * T(p_g, r) * rho_g)``; for ``base``, ``T`` is ``W_s`` itself so ``k = 1`` is the model.

``fit`` rounds to a multiple of ``lcm(divisor, group multiple, group block)`` and keeps at least one such step.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from ..errors import UsageError
from ..groups.graph import ChannelGraph
from .match import shape_fit
from .templates import Template

__all__ = ["Distribution", "Fidelity", "distribution", "fidelity", "step_of", "template_widths", "widths_at"]


@dataclass(frozen=True)
class Distribution:
    """Where each free group sits in depth and in its stage.

    Attributes:
        free: Ids of the groups the template sets.
        position: ``p_g`` per free group.
        trend: ``W_s(g)`` per free group.
        rho: Local ratio per free group.
        ratio: The range ``r`` used.
        steps: Rounding step per group (all groups).
    """

    free: tuple[int, ...]
    position: dict[int, float]
    trend: dict[int, float]
    rho: dict[int, float]
    ratio: float
    steps: dict[int, int]


def step_of(multiple: int, block: int, divisor: int) -> int:
    return math.lcm(max(1, divisor), max(1, multiple), max(1, block))


def distribution(
    graph: ChannelGraph, scope: str = "conv", ratio: float | None = None, divisor: int = 8
) -> Distribution:
    """Compute positions, trends and local ratios of ``graph``'s free groups."""
    if scope not in ("conv", "all"):
        raise UsageError(f"scope {scope!r} is unknown; use 'conv' or 'all'")
    if ratio is not None and not (
        isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and math.isfinite(ratio) and ratio >= 1
    ):
        raise UsageError(f"ratio {ratio!r} is invalid: it must be a number >= 1 (e.g. --ratio 8)")
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 1:
        raise UsageError(f"divisor {divisor!r} is invalid: it must be a whole number >= 1 (e.g. --divisor 8)")
    free = graph.free_groups(scope)
    orders = sorted({o for g in free for o in g.producer_orders})
    index = {o: i for i, o in enumerate(orders)}
    denom = max(len(orders) - 1, 1)
    position = {g.id: statistics.fmean(index[o] for o in g.producer_orders) / denom for g in free}
    by_stage: dict[tuple[int, ...], list[int]] = {}
    for g in free:
        by_stage.setdefault(g.stage, []).append(g.width)
    trend_of = {s: float(statistics.median(ws)) for s, ws in by_stage.items()}
    trend = {g.id: trend_of[g.stage] for g in free}
    rho = {g.id: g.width / trend[g.id] for g in free}
    if ratio is None:
        values = list(trend_of.values())
        ratio = max(values) / min(values) if values else 8.0
        if ratio < 2:
            ratio = 8.0
    steps = {g.id: step_of(g.multiple, g.block, divisor) for g in graph.groups}
    return Distribution(tuple(g.id for g in free), position, trend, rho, float(ratio), steps)


def _fit(x: float, step: int) -> int:
    return max(step, round(x / step) * step)


def widths_at(graph: ChannelGraph, dist: Distribution, template: Template, k: float) -> dict[int, int]:
    """Widths of every group at multiplier ``k`` (fixed and non-free groups keep their base width)."""
    widths = graph.base_widths()
    if template.is_base and k == 1.0:
        return widths
    for gid in dist.free:
        shape = dist.trend[gid] if template.is_base else template(dist.position[gid], dist.ratio)
        widths[gid] = _fit(k * shape * dist.rho[gid], dist.steps[gid])
    apply_ties(graph, widths, dist.steps)
    return widths


def template_widths(dist: Distribution, template: Template, k: float) -> dict[int, float]:
    """The template's unrounded widths ``k * T(p_g) * rho_g`` of the free groups (``W_s`` for ``base``)."""
    out = {}
    for gid in dist.free:
        shape = dist.trend[gid] if template.is_base else template(dist.position[gid], dist.ratio)
        out[gid] = k * shape * dist.rho[gid]
    return out


@dataclass(frozen=True)
class Fidelity:
    """How closely integer widths follow the template.

    Attributes:
        deviation: The largest relative deviation of any free group from ``k * T(p) * rho`` at the ``k`` that
            fits best (``|w - t| / t``; 0 for a perfect fit, NaN when no group is free): the shape, not the size.
        group: The group with that deviation, or ``None``.
        realised: At one ``k``, every free group is within one rounding step of its template width (the template
            rounded down or up): the bound the rounding alone allows.
    """

    deviation: float
    group: int | None
    realised: bool

    def to_dict(self) -> dict[str, object]:
        return {"deviation": self.deviation, "group": self.group, "realised": self.realised}


def fidelity(dist: Distribution, template: Template, k: float, widths: dict[int, int]) -> Fidelity:
    """Measure how closely ``widths`` follow ``template`` (see :class:`Fidelity`; ``k`` only scales the shape)."""
    return Fidelity(*shape_fit(widths, template_widths(dist, template, k), dist.steps))


def apply_ties(graph: ChannelGraph, widths: dict[int, int], steps: dict[int, int]) -> None:
    """Set every tied group from its source (in id order, sources come first)."""
    for g in graph.groups:
        if g.tie is not None and g.fixed is None:
            src, num, den = g.tie
            widths[g.id] = _fit(widths[src] * num / den, steps[g.id])
