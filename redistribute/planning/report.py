"""Summaries of a plan for people and scripts: per-stage widths, cost totals, group rows."""

from __future__ import annotations

import statistics
from typing import Any

from ..groups.graph import ChannelGraph
from .cost import METRICS
from .planner import Plan

__all__ = ["group_rows", "plan_summary", "stage_rows", "totals"]


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
                "base": {"min": min(base), "median": statistics.median(base), "max": max(base)},
                "new": {"min": min(new), "median": statistics.median(new), "max": max(new)},
            }
        )
    return rows


def totals(plan: Plan) -> dict[str, dict[str, float]]:
    out = {}
    for m in METRICS:
        b, n = plan.base_cost.get(m), plan.cost.get(m)
        out[m] = {"base": b, "new": n, "ratio": n / b if b else float("nan")}
    return out


def plan_summary(plan: Plan) -> dict[str, Any]:
    """Everything the CLI prints, as one JSON-ready dict."""
    return {
        "source": plan.source,
        "template": plan.template,
        "match": plan.match,
        "k": plan.k,
        "ratio": plan.ratio,
        "divisor": plan.divisor,
        "scope": plan.scope,
        "tolerance": plan.tolerance,
        "target": plan.target,
        "achieved": plan.achieved,
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
