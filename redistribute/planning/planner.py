"""A plan: the new width of every channel group, how it was chosen, and what it costs.

:func:`plan` is the discovery half of the pipeline (trace, template, match); :func:`redistribute.apply` is the
action half (surgery). A plan is a frozen value: nothing in it refers to the caller's model except names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..errors import InfeasibleTargetError, UsageError
from ..groups.graph import ChannelGraph, check_traceable, trace
from ..tracing.gcpause import gc_paused
from .cost import METRICS, CostModel, CostReport
from .distribute import Distribution, Fidelity, apply_ties, distribution, fidelity, template_widths, widths_at
from .match import match_k
from .templates import Template, get_template

__all__ = ["MAX_WIDTH", "Plan", "check_options", "plan", "plan_from_widths", "unrealised_message"]

_logger = logging.getLogger(__name__)

#: The widest group redistribute builds: no real layer has a million channels, and one would not fit in memory.
MAX_WIDTH = 1 << 20


def _check_buildable(graph: ChannelGraph, widths: dict[int, int], match: str, target: float, k: float) -> None:
    gid = max(widths, key=widths.__getitem__)
    if widths[gid] <= MAX_WIDTH:
        return
    g = graph.groups[gid]
    asked = f"k={k:.4g}" if match == "none" else f"target {match} {target:.4g}"
    raise InfeasibleTargetError(
        f"{asked} needs group g{gid} ({g.signature}) at {widths[gid]} channels, above the {MAX_WIDTH} redistribute "
        "builds. Hint: lower the target (or k)"
    )


@dataclass(frozen=True)
class Plan:
    """New widths for a traced model.

    Attributes:
        graph: The channel graph the plan is for.
        widths: Width per group id (every group; fixed ones at their base width).
        template: Template name.
        match: Matched metric (``flops``, ``params``, ``memory``) or ``none``.
        k: Width multiplier found by matching.
        ratio: Range ``r`` used by the template.
        divisor: Rounding divisor.
        scope: ``conv`` or ``all``.
        tolerance: Relative tolerance of the match.
        target: Target value of the matched metric.
        base_cost: Cost of the base widths.
        cost: Cost of the plan's widths.
        distribution: Positions, trends and local ratios used.
        source: Where the model came from (``timm:resnet50``), when known.
        fidelity: How closely the widths follow the template (largest relative deviation of any free group from
            ``k * T(p) * rho``, and whether every group is within one rounding step of it); ``None`` for a plan
            built from given widths.
    """

    graph: ChannelGraph = field(repr=False)
    widths: dict[int, int]
    template: str
    match: str
    k: float
    ratio: float
    divisor: int
    scope: str
    tolerance: float
    target: float
    base_cost: CostReport
    cost: CostReport
    distribution: Distribution = field(repr=False)
    source: str | None = None
    fidelity: Fidelity | None = None

    @property
    def achieved(self) -> float:
        return self.cost.get(self.match) if self.match in METRICS else float("nan")

    def changed(self) -> dict[int, tuple[int, int]]:
        """``{group id: (base, new)}`` for the groups whose width changes."""
        return {g.id: (g.width, self.widths[g.id]) for g in self.graph.groups if self.widths[g.id] != g.width}


def unrealised_message(template: str, divisor: int, fit: Fidelity, signature: str) -> str:
    """The warning for a plan whose widths do not follow its template (see :class:`Fidelity`)."""
    hint = "--divisor 1 or a looser --tolerance" if divisor > 1 else "a looser --tolerance or another template"
    return (
        f"template {template} cannot be realised on this model at divisor {divisor}: group g{fit.group} "
        f"({signature}) is {fit.deviation:.1%} off the template's shape, more than one rounding step; these are "
        f"the closest widths within the tolerance. Hint: {hint}"
    )


def _positive_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


#: How shrinking ranks a group's channels: L1 or L2 norm of the producing weights, or the BN scale.
IMPORTANCE = ("l1", "l2", "bn")


def check_options(
    *,
    template: str | Template | Callable[[float], float] | None = None,
    match: str | None = None,
    target: float | None = None,
    tolerance: float | None = None,
    divisor: int | None = None,
    ratio: float | None = None,
    scope: str | None = None,
    k: float | None = None,
    importance: str | None = None,
) -> Template | None:
    """Validate :func:`plan`'s options (and :func:`~redistribute.apply`'s ``importance``) before any work is done.

    ``None`` skips a check.

    The CLI calls this before it builds and traces the model, so a bad option costs nothing.

    Returns:
        The resolved template, when one is given.

    Raises:
        TemplateError: Unknown template or malformed control points.
        UsageError: Any other option out of range (NaN, zero or negative tolerance, divisor < 1, ratio < 1, ...).

    Example:
        >>> check_options(template="peak", tolerance=0.01).name
        'd'
    """
    if importance is not None and importance not in IMPORTANCE:
        raise UsageError(f"importance {importance!r} is unknown; choose one of {', '.join(IMPORTANCE)}")
    if match is not None and match not in METRICS and match != "none":
        raise UsageError(f"match metric {match!r} is unknown; choose one of {', '.join(METRICS)} or none")
    if divisor is not None and (not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 1):
        raise UsageError(f"divisor {divisor!r} is invalid: it must be a whole number >= 1 (e.g. --divisor 8)")
    if tolerance is not None and not _positive_number(tolerance):
        raise UsageError(f"tolerance {tolerance!r} is invalid: it must be a positive fraction (e.g. --tolerance 0.005)")
    if ratio is not None and not (_positive_number(ratio) and ratio >= 1):
        raise UsageError(f"ratio {ratio!r} is invalid: it must be a number >= 1 (e.g. --ratio 8)")
    if scope is not None and scope not in ("conv", "all"):
        raise UsageError(f"scope {scope!r} is unknown; use 'conv' or 'all'")
    if k is not None and not _positive_number(k):
        raise UsageError(f"width multiplier k={k!r} is invalid: it must be a positive number (e.g. k=1.0)")
    if target is not None and not _positive_number(target):
        raise UsageError(f"target {target!r} is invalid: it must be a positive number (e.g. the base model's FLOPs)")
    return get_template(template) if template is not None else None


@gc_paused
def plan(
    model: nn.Module | ChannelGraph,
    template: str | Template | Callable[[float], float] = "d",
    match: str = "flops",
    *,
    target: float | None = None,
    tolerance: float = 0.005,
    divisor: int = 8,
    ratio: float | None = None,
    scope: str = "conv",
    k: float | None = None,
    input_size: tuple[int, ...] | None = None,
    source: str | None = None,
) -> Plan:
    """Choose new widths for ``model`` following ``template`` at the cost of the base model.

    Args:
        model: A model (traced first) or a :class:`ChannelGraph` from :func:`redistribute.trace`.
        template: Template name or alias (``"d"``, ``"peak"``), control points (``"0:1,0.5:4,1:1"``) or a callable.
        match: Metric to hold equal: ``flops``, ``params``, ``memory``, or ``none`` (use ``k`` as given).
        target: Target value of ``match``; defaults to the base model's own.
        tolerance: Relative tolerance of the match (0.005 = 0.5 %).
        divisor: Widths are multiples of this (and of each group's own constraints).
        ratio: Range ``r`` of the template (default: the base model's widest over narrowest stage).
        scope: ``conv`` redistributes conv-produced groups; ``all`` also linear-produced ones.
        k: Width multiplier to use when ``match="none"``.
        input_size: Input size (C, H, W) when tracing ``model``.
        source: A label recorded in the plan and spec (``timm:resnet50``).

    Returns:
        The :class:`Plan`.

    Raises:
        TemplateError: Unknown template, or a custom one that fails or gives a non-positive value.
        UsageError: An option out of range (see :func:`check_options`), or ``model`` is not a model.
        TraceError: The model cannot be traced, or none of its groups can change width.
        InfeasibleTargetError: The target or tolerance cannot be met; the message gives the reachable range.

    Example:
        >>> import timm
        >>> p = plan(timm.create_model("test_resnet"), "d", input_size=(3, 64, 64))
        >>> abs(p.cost.flops / p.base_cost.flops - 1) <= 0.005
        True
    """
    tmpl = get_template(template)
    check_options(match=match, target=target, tolerance=tolerance, divisor=divisor, ratio=ratio, scope=scope, k=k)
    if not isinstance(model, (nn.Module, ChannelGraph)):
        raise UsageError(
            f"plan needs an nn.Module or a ChannelGraph from redistribute.trace, not {type(model).__name__}"
        )
    graph = model if isinstance(model, ChannelGraph) else trace(model, input_size)
    check_traceable(graph)
    dist = distribution(graph, scope, ratio, divisor)
    cost_model = CostModel(graph)
    base = graph.base_widths()
    base_cost = cost_model.report(base)
    k0 = 1.0 if tmpl.is_base else max(dist.trend.values(), default=1.0)
    if match == "none":
        kk = 1.0 if k is None and tmpl.is_base else (k if k is not None else k0)
        widths, target_value = widths_at(graph, dist, tmpl, kk), float("nan")
    else:
        target_value = float(target) if target is not None else base_cost.get(match)

        def after_move(w: dict[int, int]) -> None:
            apply_ties(graph, w, dist.steps)

        result = match_k(
            lambda kk: widths_at(graph, dist, tmpl, kk),
            lambda w: cost_model.evaluate(match, w),
            target_value,
            tolerance,
            k0,
            dist.free,
            dist.steps,
            delta_fn=lambda w, gid, new: cost_model.delta(match, w, gid, new),
            metric=match,
            after_move=after_move,
            shape_fn=lambda kk: template_widths(dist, tmpl, kk),
            divisor=divisor,
        )
        kk, widths = result.k, result.widths
        _logger.info("matched %s: k=%.4f after %d steps and %d fix-ups", match, kk, result.steps, result.fixups)
    _check_buildable(graph, widths, match, target_value, kk)
    fit = fidelity(dist, tmpl, float(kk), widths)
    if not fit.realised:
        g = graph.groups[fit.group] if fit.group is not None else None
        _logger.warning("%s", unrealised_message(tmpl.name, divisor, fit, g.signature if g is not None else "-"))
    return Plan(
        graph=graph,
        widths=widths,
        template=tmpl.name,
        match=match,
        k=float(kk),
        ratio=dist.ratio,
        divisor=divisor,
        scope=scope,
        tolerance=float(tolerance),
        target=target_value,
        base_cost=base_cost,
        cost=cost_model.report(widths),
        distribution=dist,
        source=source,
        fidelity=fit,
    )


def plan_from_widths(graph: ChannelGraph, widths: dict[int, int], **fields: object) -> Plan:
    """A :class:`Plan` with given widths (no matching), e.g. read back from a spec. Constraints are checked."""
    from ..errors import ConstraintError

    dist = distribution(graph, str(fields.get("scope", "conv")), None, int(fields.get("divisor", 1)))  # type: ignore[call-overload]
    for g in graph.groups:
        w = widths.get(g.id, g.width)
        if g.tie is not None and g.fixed is None:  # checked even when unchanged: its source may have moved
            src, num, den = g.tie
            if w * den != widths.get(src, graph.groups[src].width) * num:
                raise ConstraintError(
                    f"width {w} of group g{g.id} ({g.signature}) breaks its tie: it must be g{src} x {num}/{den}"
                )
        if w == g.width:
            continue
        if g.fixed is not None:
            raise ConstraintError(
                f"group g{g.id} ({g.signature}) is fixed ({g.fixed}); its width must stay {g.width}, not {w}"
            )
        step = math.lcm(max(g.multiple, 1), max(g.block, 1))
        if not isinstance(w, int) or isinstance(w, bool) or w < 1 or w % step or w > MAX_WIDTH:
            raise ConstraintError(
                f"width {w!r} of group g{g.id} ({g.signature}) breaks its constraint ({g.constraints or 'none'}): "
                f"use a positive multiple of {step} up to {MAX_WIDTH}"
            )
    full = {g.id: int(widths.get(g.id, g.width)) for g in graph.groups}
    cost_model = CostModel(graph)
    match = str(fields.get("match", "none"))
    return Plan(
        graph=graph,
        widths=full,
        template=str(fields.get("template", "custom")),
        match=match,
        k=float(fields.get("k", float("nan"))),  # type: ignore[arg-type]
        ratio=float(fields.get("ratio", dist.ratio)),  # type: ignore[arg-type]
        divisor=int(fields.get("divisor", 1)),  # type: ignore[call-overload]
        scope=str(fields.get("scope", "conv")),
        tolerance=float(fields.get("tolerance", float("nan"))),  # type: ignore[arg-type]
        target=float(fields.get("target", float("nan"))),  # type: ignore[arg-type]
        base_cost=cost_model.report(graph.base_widths()),
        cost=cost_model.report(full),
        distribution=dist,
        source=fields.get("source"),  # type: ignore[arg-type]
    )
