"""Start-up of a command that needs torch: its heavy imports run with the cyclic collector paused, then frozen.

``import torch`` and ``import timm`` create a few hundred thousand long-lived objects (modules, functions,
classes). With the collector on, every few hundred allocations trigger a collection, and as the heap grows the
older generations' passes walk more and more of those objects: about a fifth of ``import timm``'s time (measured
here, 2 CPUs: 3.0 s with the collector on, 2.4 s paused). The group runs these imports with the collector paused,
then ``gc.freeze()`` moves what they made to the permanent generation, which later collections skip; the collector
is back on before the command itself runs. Commands that need no torch (``--help``, ``--version``, ``templates``)
import nothing here.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

from ..tracing.gcpause import paused_gc

__all__ = ["LIGHT_COMMANDS", "preload"]

#: Subcommands that never import torch: their start-up is left alone.
LIGHT_COMMANDS = frozenset({"templates"})


def preload(args: Sequence[str]) -> None:
    """Import torch (and timm when an argument names a ``timm:`` model) with the collector paused, then freeze.

    Args:
        args: the subcommand's command-line arguments; ``timm:NAME`` among them (any case) also imports timm.

    Example:
        >>> import gc, sys
        >>> preload(["timm:resnet50"])
        >>> "torch" in sys.modules and "timm" in sys.modules and gc.isenabled()
        True
    """
    if any(a in ("-h", "--help") for a in args):
        return
    with paused_gc():
        import torch  # noqa: F401  # the import is the point

        if any(a.lower().startswith("timm:") for a in args):
            import timm  # noqa: F401
    gc.freeze()
