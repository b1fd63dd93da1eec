"""Start-up of a command that needs torch: its heavy imports run without full collections, then are frozen.

``import torch`` and ``import timm`` create a few hundred thousand long-lived objects (modules, functions,
classes). Each full (oldest-generation) collection during the imports walks all of them so far, and there are
several: here (2 CPUs, loaded) ``import timm`` took 4.6-4.8 s with the default thresholds and 3.9-4.3 s with full
collections held off. Young collections still run, so the imports' cyclic garbage is freed as usual: pausing the
collector altogether was as fast but left 8 MB more resident. After the imports ``gc.freeze()`` moves what they
made to the permanent generation, which later collections skip, and the thresholds are restored before the
command runs. Commands that need no torch (``--help``, ``--version``, ``templates``) import nothing here.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

__all__ = ["LIGHT_COMMANDS", "preload"]

#: Subcommands that never import torch: their start-up is left alone.
LIGHT_COMMANDS = frozenset({"templates"})


def preload(args: Sequence[str]) -> None:
    """Import torch (and timm when an argument names a ``timm:`` model) without full collections, then freeze.

    Args:
        args: the subcommand's command-line arguments; ``timm:NAME`` among them (any case) also imports timm.

    Example:
        >>> import gc, sys
        >>> preload(["timm:resnet50"])
        >>> "torch" in sys.modules and "timm" in sys.modules and gc.get_freeze_count() > 0
        True
    """
    if any(a in ("-h", "--help") for a in args):
        return
    young, middle, _ = thresholds = gc.get_threshold()
    gc.set_threshold(young, middle, 1 << 30)  # no full collection while the imports run
    try:
        import torch  # noqa: F401  # the import is the point

        if any(a.lower().startswith("timm:") for a in args):
            import timm  # noqa: F401
    finally:
        gc.set_threshold(*thresholds)
    gc.freeze()
