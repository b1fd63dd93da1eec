"""redistribute: change how a network's filters are distributed over depth, at the same cost.

The public API is four functions and the results they return::

    import timm, redistribute
    model = timm.create_model("resnet50")
    graph = redistribute.trace(model)                    # channel groups
    plan = redistribute.plan(graph, "d", match="flops")  # new widths at equal FLOPs
    new_model = redistribute.apply(model, plan)          # the rebuilt model (a copy)

or in one call: ``new_model, plan = redistribute.redistribute(model, template="d", match="flops")``.

The template study: ``redistribute.compare("timm:resnet50")`` plans every template at the base's FLOPs (or params,
activation memory, measured latency), builds each variant and measures its latency, throughput and peak memory;
``redistribute.plot_comparison`` draws width per layer for each template.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from .version import __version__ as __version__

if TYPE_CHECKING:  # the real imports, for type checkers and IDEs; at run time names load on first use
    from .api import redistribute as redistribute
    from .errors import CheckpointError as CheckpointError
    from .errors import ConstraintError as ConstraintError
    from .errors import DataError as DataError
    from .errors import InfeasibleTargetError as InfeasibleTargetError
    from .errors import OutputError as OutputError
    from .errors import RebuildError as RebuildError
    from .errors import RedistributeError as RedistributeError
    from .errors import SourceError as SourceError
    from .errors import SpecError as SpecError
    from .errors import SpecMismatchError as SpecMismatchError
    from .errors import TemplateError as TemplateError
    from .errors import TraceError as TraceError
    from .errors import UnsupportedOpError as UnsupportedOpError
    from .errors import UsageError as UsageError
    from .groups.attention import HeadSpec as HeadSpec
    from .groups.attention import register_attention as register_attention
    from .groups.graph import ChannelGraph as ChannelGraph
    from .groups.graph import ChannelGroup as ChannelGroup
    from .groups.graph import trace as trace
    from .groups.policy import register_group_width_block as register_group_width_block
    from .planning.cost import CostModel as CostModel
    from .planning.cost import CostReport as CostReport
    from .planning.planner import Plan as Plan
    from .planning.planner import plan as plan
    from .planning.templates import Template as Template
    from .planning.templates import get_template as get_template
    from .planning.templates import list_templates as list_templates
    from .planning.templates import register_template as register_template
    from .source import load_model as load_model
    from .spec import load as load
    from .spec import save_spec as save_spec
    from .spec import spec_from_plan as spec_from_plan
    from .study.comparison import CompareRow as CompareRow
    from .study.comparison import Comparison as Comparison
    from .study.comparison import compare as compare
    from .study.latency import LatencyMatch as LatencyMatch
    from .study.latency import match_latency as match_latency
    from .study.plot import plot_comparison as plot_comparison
    from .study.plot import plot_plans as plot_plans
    from .study.timing import Timing as Timing
    from .study.timing import measure_latency as measure_latency
    from .study.timing import peak_memory as peak_memory
    from .surgery.calibrate import folder_batches as folder_batches
    from .surgery.calibrate import noise_batches as noise_batches
    from .surgery.calibrate import recalibrate_bn_ as recalibrate_bn_
    from .surgery.checkpoint import load_checkpoint as load_checkpoint
    from .surgery.rebuild import apply as apply
    from .surgery.rebuild import apply_ as apply_
    from .surgery.transfer import TransferRow as TransferRow
    from .surgery.transfer import transfer_report as transfer_report
    from .surgery.weights import save_weights as save_weights
    from .training.loop import EpochMetrics as EpochMetrics
    from .training.loop import TrainConfig as TrainConfig
    from .training.loop import TrainProgress as TrainProgress
    from .training.loop import TrainResult as TrainResult
    from .training.loop import train as train

# Public name -> module: ``import redistribute`` imports none of them (no torch) until one is used.
_EXPORTS = {
    "ChannelGraph": ".groups.graph",
    "ChannelGroup": ".groups.graph",
    "CheckpointError": ".errors",
    "CompareRow": ".study.comparison",
    "Comparison": ".study.comparison",
    "ConstraintError": ".errors",
    "CostModel": ".planning.cost",
    "CostReport": ".planning.cost",
    "DataError": ".errors",
    "EpochMetrics": ".training.loop",
    "HeadSpec": ".groups.attention",
    "InfeasibleTargetError": ".errors",
    "LatencyMatch": ".study.latency",
    "OutputError": ".errors",
    "RebuildError": ".errors",
    "Plan": ".planning.planner",
    "RedistributeError": ".errors",
    "SourceError": ".errors",
    "SpecError": ".errors",
    "SpecMismatchError": ".errors",
    "Template": ".planning.templates",
    "TemplateError": ".errors",
    "Timing": ".study.timing",
    "TraceError": ".errors",
    "TrainConfig": ".training.loop",
    "TrainProgress": ".training.loop",
    "TrainResult": ".training.loop",
    "TransferRow": ".surgery.transfer",
    "UnsupportedOpError": ".errors",
    "UsageError": ".errors",
    "apply": ".surgery.rebuild",
    "apply_": ".surgery.rebuild",
    "compare": ".study.comparison",
    "folder_batches": ".surgery.calibrate",
    "get_template": ".planning.templates",
    "list_templates": ".planning.templates",
    "load": ".spec",
    "load_checkpoint": ".surgery.checkpoint",
    "load_model": ".source",
    "match_latency": ".study.latency",
    "measure_latency": ".study.timing",
    "noise_batches": ".surgery.calibrate",
    "peak_memory": ".study.timing",
    "plan": ".planning.planner",
    "plot_comparison": ".study.plot",
    "plot_plans": ".study.plot",
    "recalibrate_bn_": ".surgery.calibrate",
    "redistribute": ".api",
    "register_attention": ".groups.attention",
    "register_group_width_block": ".groups.policy",
    "register_template": ".planning.templates",
    "save_spec": ".spec",
    "save_weights": ".surgery.weights",
    "spec_from_plan": ".spec",
    "trace": ".groups.graph",
    "train": ".training.loop",
    "transfer_report": ".surgery.transfer",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "CheckpointError",
    "CompareRow",
    "Comparison",
    "ConstraintError",
    "CostModel",
    "CostReport",
    "DataError",
    "EpochMetrics",
    "HeadSpec",
    "InfeasibleTargetError",
    "LatencyMatch",
    "OutputError",
    "Plan",
    "RebuildError",
    "RedistributeError",
    "SourceError",
    "SpecError",
    "SpecMismatchError",
    "Template",
    "TemplateError",
    "Timing",
    "TraceError",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "TransferRow",
    "UnsupportedOpError",
    "UsageError",
    "apply",
    "apply_",
    "compare",
    "folder_batches",
    "get_template",
    "list_templates",
    "load",
    "load_checkpoint",
    "load_model",
    "match_latency",
    "measure_latency",
    "noise_batches",
    "peak_memory",
    "plan",
    "plot_comparison",
    "plot_plans",
    "recalibrate_bn_",
    "redistribute",
    "register_attention",
    "register_group_width_block",
    "register_template",
    "save_spec",
    "save_weights",
    "spec_from_plan",
    "trace",
    "train",
    "transfer_report",
]
