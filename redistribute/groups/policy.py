"""How a grouped conv is resized: keep its group count (ResNeXt's cardinality, the default) or its group width
(RegNet), chosen by the block class it sits in."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["policy_for", "register_group_width_block"]

_GROUP_WIDTH_BLOCKS: set[type] = set()


def register_group_width_block(cls: type) -> type:
    """Declare that grouped convs inside blocks of this type keep their *group width* (RegNet) when resized.

    By default a grouped conv keeps its group count (ResNeXt's cardinality); the spec records which was used.
    """
    _GROUP_WIDTH_BLOCKS.add(cls)
    return cls


def _register_timm_blocks() -> None:
    try:
        from timm.models import regnet
    except ImportError:  # pragma: no cover
        return
    register_group_width_block(regnet.Bottleneck)
    if hasattr(regnet, "PreBottleneck"):
        register_group_width_block(regnet.PreBottleneck)


_register_timm_blocks()


def policy_for(root: nn.Module) -> Callable[[str], str]:
    """The walker's grouped-conv policy for ``root``: ``"width"`` for a conv inside a registered block, else
    ``"count"``."""

    def policy(name: str) -> str:
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            parent = root.get_submodule(".".join(parts[:cut]))
            if any(t in _GROUP_WIDTH_BLOCKS for t in type(parent).__mro__):
                return "width"
        return "count"

    return policy
