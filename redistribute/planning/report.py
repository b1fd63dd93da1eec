"""Summaries of a plan for people and scripts: per-stage widths, cost totals, group rows."""

from __future__ import annotations

import statistics
from typing import Any

from ..groups.graph import ChannelGraph
from .cost import METRICS
from .planner import Plan

__all__ = ["group_rows", "held_groups", "no_change_reason", "plan_group_rows", "plan_summary", "stage_rows", "totals"]

#: What ``k`` means, written beside it in ``--json``.
K_IS = (
    "the width scale found by matching: a free group's new width is k * T(p) * rho (its template value at its depth "
    "position times its width over its stage's median), rounded; k is the stage-trend width, in channels, where the "
    "template is 1 (for 'base', a multiplier of the base widths)"
)

#: Fixed reasons every model has: its input and output widths are never a template's to change.
_BOUNDARY = ("model input", "model output")


def _stage_name(stage: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in stage) if stage else "vector"


def stage_rows(plan: Plan) -> list[dict[str, Any]]:
    """Per stage (output resolution) of the free groups: base and new widths (min, median, max)."""
    by_stage: dict[tuple[int, ...], list[int]] = {}
    for gid in plan.distribution.free:
        by_stage.setdefault(plan.graph.groups[gid].stage, []).append(gid)
    rows = []
    for stage, gids in by_stage.items():
        base = [plan.graph.groups[g].width for g in gids]
        new = [plan.widths[g] for g in gids]
        rows.append(
            {
                "stage": _stage_name(stage),
                "groups": len(gids),
                "base": {"min": min(base), "median": _whole(statistics.median(base)), "max": max(base)},
                "new": {"min": min(new), "median": _whole(statistics.median(new)), "max": max(new)},
            }
        )
    return rows


def _whole(x: float) -> int | float:
    """``x`` as an ``int`` when it is whole (a count, bytes, a median of widths), else as is."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def totals(plan: Plan) -> dict[str, dict[str, float]]:
    """Base and new FLOPs (MACs), parameters and activation memory (bytes) at batch 1, as integers, and the ratio."""
    out = {}
    for m in METRICS:
        b, n = plan.base_cost.get(m), plan.cost.get(m)
        out[m] = {"base": _whole(b), "new": _whole(n), "ratio": n / b if b else float("nan")}
    return out


def held_groups(plan: Plan) -> list[dict[str, Any]]:
    """Groups a template would have changed but that are fixed, with the reason (an unsupported op, a reshape...).

    The model's input and output are left out: no template changes them. Linear-produced groups count only under
    ``scope="all"``.
    """
    kinds = ("conv",) if plan.scope == "conv" else ("conv", "linear")
    return [
        {"id": g.id, "kind": g.kind, "width": g.width, "producers": list(g.producers), "reason": g.fixed}
        for g in plan.graph.groups
        if g.fixed is not None and g.fixed not in _BOUNDARY and g.kind in kinds
    ]


def no_change_reason(plan: Plan) -> str | None:
    """Why no width changed, with the fix, or ``None`` when some did (or the template is ``base``).

    Example: a ViT under ``scope="conv"`` has one free group (the patch embedding and the residual stream), so a
    template has nothing to shape: the reason says so and suggests ``--scope all``.
    """
    if plan.changed() or plan.template == "base":
        return None
    free = len(plan.distribution.free)
    linear = sum(1 for g in plan.graph.groups if g.fixed is None and g.tie is None and g.kind == "linear")
    held = held_groups(plan)
    if plan.scope == "conv" and linear:
        return (
            f"nothing changed: {free} group{'s' if free != 1 else ''} in scope 'conv', too few for a shape over depth, "
            f"and {linear} linear-produced groups are out of scope. Hint: rerun with --scope all"
        )
    if held:
        reasons = sorted({h["reason"] for h in held})
        return (
            f"nothing changed: {len(held)} groups are fixed ({'; '.join(reasons[:2])}"
            f"{'; ...' if len(reasons) > 2 else ''}) and {free} are free. Hint: see the fixed groups listed above"
        )
    return (
        f"nothing changed: the matched widths of the {free} free groups round back to the base. "
        "Hint: try another template, a smaller --divisor or --scope all"
    )


def plan_summary(plan: Plan) -> dict[str, Any]:
    """Everything the CLI prints, as one JSON-ready dict."""
    return {
        "source": plan.source,
        "template": plan.template,
        "match": plan.match,
        "k": plan.k,
        "k_is": K_IS,
        "ratio": plan.ratio,
        "divisor": plan.divisor,
        "scope": plan.scope,
        "tolerance": plan.tolerance,
        "target": _whole(plan.target),
        "achieved": _whole(plan.achieved),
        "changed_groups": len(plan.changed()),
        "free_groups": len(plan.distribution.free),
        "held_groups": held_groups(plan),
        "note": no_change_reason(plan),
        "fidelity": plan.fidelity.to_dict() if plan.fidelity is not None else None,
        "totals": totals(plan),
        "stages": stage_rows(plan),
        "groups": [
            {
                "id": g.id,
                "signature": g.signature,
                "stage": _stage_name(g.stage),
                "position": plan.distribution.position.get(g.id),
                "base": g.width,
                "width": plan.widths[g.id],
                "across": plan.graph.cross_channel.get(g.id),
            }
            for g in plan.graph.groups
            if g.fixed is None
        ],
    }


def plan_group_rows(plan: Plan) -> list[dict[str, Any]]:
    """One row per group of the plan (fixed ones too): :func:`group_rows` plus ``new`` (the planned width)."""
    rows = group_rows(plan.graph, plan.distribution.position)
    for row in rows:
        row["new"] = plan.widths[row["id"]]
    return rows


def group_rows(graph: ChannelGraph, positions: dict[int, float] | None = None) -> list[dict[str, Any]]:
    """One row per group for ``inspect``."""
    rows = []
    for g in graph.groups:
        rows.append(
            {
                "id": g.id,
                "width": g.width,
                "kind": g.kind,
                "stage": _stage_name(g.stage) if g.kind != "none" else "-",
                "position": None if positions is None else positions.get(g.id),
                "producers": list(g.producers),
                "constraints": g.constraints,
                "fixed": g.fixed,
            }
        )
    return rows
