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

from ._api import redistribute as redistribute
from ._attention import HeadSpec as HeadSpec
from ._attention import register_attention as register_attention
from ._calibrate import folder_batches as folder_batches
from ._calibrate import noise_batches as noise_batches
from ._calibrate import recalibrate_bn_ as recalibrate_bn_
from ._checkpoint import load_checkpoint as load_checkpoint
from ._compare import CompareRow as CompareRow
from ._compare import Comparison as Comparison
from ._compare import compare as compare
from ._cost import CostModel as CostModel
from ._cost import CostReport as CostReport
from ._errors import (
    CheckpointError as CheckpointError,
)
from ._errors import (
    ConstraintError as ConstraintError,
)
from ._errors import (
    DataError as DataError,
)
from ._errors import (
    InfeasibleTargetError as InfeasibleTargetError,
)
from ._errors import (
    OutputError as OutputError,
)
from ._errors import (
    RedistributeError as RedistributeError,
)
from ._errors import (
    SourceError as SourceError,
)
from ._errors import (
    SpecError as SpecError,
)
from ._errors import (
    SpecMismatchError as SpecMismatchError,
)
from ._errors import (
    TemplateError as TemplateError,
)
from ._errors import (
    TraceError as TraceError,
)
from ._errors import (
    UnsupportedOpError as UnsupportedOpError,
)
from ._errors import (
    UsageError as UsageError,
)
from ._graph import ChannelGraph as ChannelGraph
from ._graph import ChannelGroup as ChannelGroup
from ._graph import register_group_width_block as register_group_width_block
from ._graph import trace as trace
from ._latency import LatencyMatch as LatencyMatch
from ._latency import match_latency as match_latency
from ._plan import Plan as Plan
from ._plan import plan as plan
from ._plot import plot_comparison as plot_comparison
from ._plot import plot_plans as plot_plans
from ._source import load_model as load_model
from ._spec import load as load
from ._spec import save_spec as save_spec
from ._spec import spec_from_plan as spec_from_plan
from ._surgery import apply as apply
from ._surgery import apply_ as apply_
from ._templates import Template as Template
from ._templates import get_template as get_template
from ._templates import list_templates as list_templates
from ._templates import register_template as register_template
from ._timing import Timing as Timing
from ._timing import measure_latency as measure_latency
from ._timing import peak_memory as peak_memory
from ._train import EpochMetrics as EpochMetrics
from ._train import TrainConfig as TrainConfig
from ._train import TrainProgress as TrainProgress
from ._train import TrainResult as TrainResult
from ._train import train as train
from ._transfer import TransferRow as TransferRow
from ._transfer import transfer_report as transfer_report
from ._weights import save_weights as save_weights

__version__ = "0.1.0"

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
