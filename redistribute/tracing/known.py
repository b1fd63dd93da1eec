"""What the trace knows: tensors made from Python constants keep their values, tensors from the input do not.

The tracer runs the model on the meta device, so every tensor computed from the input is *unknown*: its shape is
there, its values are not. Tensors made from Python constants are *known*: a small tensor kept as a plain module
attribute (NAS-Bench-101's adjacency matrix, see :func:`redistribute.tracing.clone.meta_copy`), ``torch.tensor(3)``
or ``torch.as_tensor([8, 4])`` in a forward, and arithmetic on them or comparisons with sizes. They stay real CPU
tensors, so ``if``/``assert``/``int()`` on them resolve at trace time like shape arithmetic does; control flow on
an unknown tensor (``if x.sum() > 0``) is data-dependent and still refused. Known meeting unknown gives unknown.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["is_unknown", "known_values", "unknown_wins"]

_SEQUENCES = (tuple, list)


def is_unknown(value: Any) -> bool:
    """Whether ``value`` is a tensor whose values the trace does not know: one on the meta device."""
    return isinstance(value, torch.Tensor) and value.device.type == "meta"


def known_values(args: tuple[Any, ...]) -> bool:
    """Whether the positional arguments hold a known tensor and no unknown one (evaluate for real, no shape rule).

    ``torch.tensor(3) - x.size(1)`` must stay a real CPU tensor so that ``if``/``assert`` on it resolves; a shape
    rule would turn it into a meta tensor whose value is lost. Tensors inside one level of tuples and lists
    (``torch.cat([a, b])``) count too.
    """
    kinds = [t.device.type == "meta" for t in _tensors(args)]
    return bool(kinds) and not any(kinds)


def _tensors(values: Any) -> list[torch.Tensor]:
    flat = [*values, *(v for a in values if type(a) in _SEQUENCES for v in a)]
    return [t for t in flat if isinstance(t, torch.Tensor)]


def unknown_wins(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` with their known tensors moved to meta if an unknown one is among them.

    Without this, ``x + table`` or ``x.masked_fill(mask, 0)`` with a constant kept on the CPU would fail with a
    device mismatch. Tensors inside one level of tuples and lists (``torch.cat([x, const])``) count too.
    """
    metas = [t.device.type == "meta" for t in _tensors([*args, *kwargs.values()])]
    if all(metas) or not any(metas):
        return args, kwargs

    def move(a: Any) -> Any:
        if isinstance(a, torch.Tensor):
            return a.to("meta")
        if type(a) in _SEQUENCES:
            return type(a)(move(v) for v in a)
        return a

    return tuple(move(a) for a in args), {k: move(v) for k, v in kwargs.items()}
