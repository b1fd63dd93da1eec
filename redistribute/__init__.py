"""redistribute: change how a network's filters are distributed over depth, at the same cost.

The public API is four functions and the results they return::

    import timm, redistribute
    model = timm.create_model("resnet50")
    graph = redistribute.trace(model)                    # channel groups
    plan = redistribute.plan(graph, "d", match="flops")  # new widths at equal FLOPs
    new_model = redistribute.apply(model, plan)          # the rebuilt model (a copy)

or in one call: ``new_model, plan = redistribute.redistribute(model, template="d", match="flops")``.
"""

from __future__ import annotations

from ._api import redistribute as redistribute
from ._cost import CostModel as CostModel
from ._cost import CostReport as CostReport
from ._errors import (
    CheckpointError as CheckpointError,
)
from ._errors import (
    ConstraintError as ConstraintError,
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
from ._plan import Plan as Plan
from ._plan import plan as plan
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
from ._weights import save_weights as save_weights

__version__ = "0.1.0"

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "CheckpointError",
    "ConstraintError",
    "CostModel",
    "CostReport",
    "InfeasibleTargetError",
    "OutputError",
    "Plan",
    "RedistributeError",
    "SourceError",
    "SpecError",
    "SpecMismatchError",
    "Template",
    "TemplateError",
    "TraceError",
    "UnsupportedOpError",
    "UsageError",
    "apply",
    "apply_",
    "get_template",
    "list_templates",
    "load",
    "load_model",
    "plan",
    "redistribute",
    "register_group_width_block",
    "register_template",
    "save_spec",
    "save_weights",
    "spec_from_plan",
    "trace",
]
