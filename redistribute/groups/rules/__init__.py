"""Channel rules: how each module, function and tensor method maps channel spaces from its inputs to its outputs.

:mod:`~redistribute.groups.rules.base` holds the registries and the walker protocol that every rule is written
against; :mod:`functions`, :mod:`modules`, :mod:`matmul` and :mod:`layout_ops` hold the rules. The walker imports
them, which registers them; nothing here imports the walker.
"""

from __future__ import annotations

from .base import FUNCTION_RULES as FUNCTION_RULES
from .base import METHOD_RULES as METHOD_RULES
from .base import MODULE_RULES as MODULE_RULES
from .base import Walker as Walker
from .base import function_rule as function_rule
from .base import method_rule as method_rule
from .base import module_rule as module_rule

__all__ = ["FUNCTION_RULES", "METHOD_RULES", "MODULE_RULES", "Walker", "function_rule", "method_rule", "module_rule"]
