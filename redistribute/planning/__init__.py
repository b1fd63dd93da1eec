"""Stage 3, plan: channel groups in, new widths at a matched cost out.

Takes a :class:`~redistribute.groups.graph.ChannelGraph`; a template (:mod:`~redistribute.planning.templates`)
gives each free group a relative width by its depth position, :mod:`~redistribute.planning.distribute` keeps
the local ratios and constraints, :mod:`~redistribute.planning.cost` evaluates FLOPs, params and activation
memory analytically, and :mod:`~redistribute.planning.match` bisects the width multiplier until the cost matches.
Hands on a :class:`~redistribute.planning.planner.Plan` (widths per group, achieved cost, provenance);
:mod:`~redistribute.planning.report` turns a plan into rows for display.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "Plan": ".planner",
    "plan": ".planner",
    "plan_from_widths": ".planner",
    "CostModel": ".cost",
    "CostReport": ".cost",
    "METRICS": ".cost",
    "Template": ".templates",
    "get_template": ".templates",
    "list_templates": ".templates",
    "register_template": ".templates",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
