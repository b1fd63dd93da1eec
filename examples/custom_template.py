"""Custom filter-distribution templates: register a named one, or write control points inline.

Run from the repository root::

    .venv/bin/python examples/custom_template.py

A template is a function ``T(p, r)`` of the depth position ``p`` in [0, 1] (0 = first layer, 1 = last) and the
range ``r`` of the base model (widest stage / narrowest stage). Only its *shape* matters: the matcher scales it by
a multiplier ``k`` until the model costs as much as the base one (here: the same FLOPs).
"""

from __future__ import annotations

import math

import timm

import redistribute


# 1. A named template, registered once; afterwards "late" (or its alias "late-peak") works everywhere a template
#    name does: redistribute.plan, redistribute.redistribute, and the spec records the name.
@redistribute.register_template("late", alias="late-peak", description="peak at 3/4 of the depth, 1/r at the ends")
def late_peak(p: float, r: float) -> float:
    hump = max(0.0, 1.0 - abs(p - 0.75) / 0.75)  # 0 at p=0, 1 at p=0.75, 2/3 at p=1
    return 1.0 / r + (1.0 - 1.0 / r) * hump


# 2. Control points "position:value,...", piecewise linear in p; values are relative (scaled by k anyway).
#    "0:1,0.5:4,1:1" is a peak four times as wide in the middle as at the ends, whatever the model's range r.
CONTROL_POINTS = "0:1,0.5:4,1:1"


# 3. Any callable p -> float also works, without registering (here: a smooth cosine valley).
def cosine_valley(p: float) -> float:
    return 1.5 + math.cos(2 * math.pi * p)


def stage_widths(plan: redistribute.Plan) -> dict[tuple[int, ...], list[int]]:
    """New widths of the free groups, per spatial stage, in execution order."""
    out: dict[tuple[int, ...], list[int]] = {}
    for g in plan.graph.free_groups():
        out.setdefault(g.stage, []).append(plan.widths[g.id])
    return out


def main() -> None:
    model = timm.create_model("resnet18", pretrained=False)
    graph = redistribute.trace(model)  # trace once, plan many times: each plan only evaluates analytic costs

    plans = {
        "base": redistribute.plan(graph, "base"),
        "d (peak)": redistribute.plan(graph, "d"),
        "late": redistribute.plan(graph, "late"),
        CONTROL_POINTS: redistribute.plan(graph, CONTROL_POINTS),
        "cosine_valley": redistribute.plan(graph, cosine_valley),
    }

    print(
        "registered templates:",
        ", ".join(t.name + (f" ({t.alias})" if t.alias else "") for t in redistribute.list_templates()),
    )
    t = redistribute.get_template("late-peak")
    print(
        f"'late-peak' resolves to {t.name!r}: T(0)={t(0, 8):.3f} T(0.75)={t(0.75, 8):.3f} T(1)={t(1, 8):.3f} at r=8\n"
    )

    stages = list(stage_widths(plans["base"]))
    col = 17
    print(f"resnet18 widths of the free channel groups per stage (base range r = {plans['d (peak)'].ratio:g})")
    print(f"{'stage':<10}" + "".join(f"{name:>{col}}" for name in plans))
    for stage in stages:
        cells = ["/".join(map(str, stage_widths(p).get(stage, []))) for p in plans.values()]
        label = "x".join(map(str, stage)) or "vector"
        print(f"{label:<10}" + "".join(f"{c:>{col}}" for c in cells))
    print(f"{'GMACs':<10}" + "".join(f"{p.cost.flops / 1e9:>{col}.3f}" for p in plans.values()))
    print(f"{'params (M)':<10}" + "".join(f"{p.cost.params / 1e6:>{col}.3f}" for p in plans.values()))
    print(f"{'k':<10}" + "".join(f"{p.k:>{col}.2f}" for p in plans.values()))

    for name, p in plans.items():
        assert abs(p.cost.flops / p.base_cost.flops - 1) <= p.tolerance, name

    # The registered name travels into the spec, so redistribute.load() can rebuild the model later.
    new, plan = redistribute.redistribute(model, "late-peak")
    spec = redistribute.spec_from_plan(plan, source="timm:resnet18")
    print(
        f"\nredistribute(model, 'late-peak'): spec template {spec['template']!r}, "
        f"{sum(q.numel() for q in new.parameters()) / 1e6:.3f} M params"
    )


if __name__ == "__main__":
    main()
