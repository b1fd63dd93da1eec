"""Which registered behaviour a module class has: one MRO lookup for every registry (rules, leaves, shapes, handlers).

A subclass inherits its parent's entry only while it does not change what the parent does. A class that defines its
own ``forward`` and has no rule of its own (torchvision's ``LayerNorm2d(nn.LayerNorm)`` permutes to channels-last
inside) ends the search: it is traced into instead of being treated as its parent. Classes that override
``forward`` but keep the parent's channel behaviour (``nn.SyncBatchNorm``, timm's ``Conv2dSame``) are registered
with their own rule, which lets the search go on to their parents' handlers and shapes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TypeVar

__all__ = ["RULED", "lookup"]

V = TypeVar("V")

#: Classes with a channel rule of their own (filled by :func:`redistribute.groups.rules.base.module_rule`).
RULED: set[type] = set()


def lookup(table: Mapping[type, V], cls: type, known: Collection[type] = ()) -> V | None:
    """The entry of ``cls``'s nearest class in ``table`` along its MRO, stopping at a class that defines its own
    ``forward`` without a rule of its own (in :data:`RULED` or ``known``).

    Example:
        >>> from torch import nn
        >>> class Permuted(nn.LayerNorm):
        ...     def forward(self, x):
        ...         return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        >>> lookup({nn.LayerNorm: "norm"}, nn.LayerNorm), lookup({nn.LayerNorm: "norm"}, Permuted)
        ('norm', None)
    """
    for t in cls.__mro__:
        if t in table:
            return table[t]
        if "forward" in t.__dict__ and t not in RULED and t not in known:
            return None
    return None
