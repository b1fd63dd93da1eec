"""Build a model as a *skeleton*: its large tensors on the meta device, its small ones real.

Planning never reads weights, so a model built this way traces and plans exactly like the real one at a cost that
depends on its graph, not on its parameter count (``timm:convnext_xxlarge``: 846 M parameters, no memory for them).
Small tensors (at most :data:`SMALL` elements: layer scales, class tokens, index tables, ``torch.tensor(...)``
constants a forward branches on) are built for real, so their values survive for the rebuilt model and
construction code that reads them back (``torch.linspace(...).tolist()``, ``.item()``) still works.

Example:
    >>> import timm
    >>> with skeleton():
    ...     m = timm.create_model("test_resnet")
    >>> m.fc.weight.is_meta, m.bn1.weight.is_meta  # (1000, 256) and (24,)
    (True, False)
    >>> is_skeleton(m)
    True
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["SMALL", "is_skeleton", "skeleton"]

SMALL = 1 << 16
"""Largest tensor (elements) that a skeleton builds for real: 256 KiB in float32."""


@functools.lru_cache(maxsize=1)
def _factories() -> frozenset[Any]:
    from torch.utils._device import _device_constructors

    return frozenset(_device_constructors())


class _SkeletonMode(TorchFunctionMode):
    """Factory functions without an explicit device build on meta, then for real when the result is small."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func not in _factories() or kwargs.get("device") is not None:
            return func(*args, **kwargs)
        out = func(*args, **{**kwargs, "device": "meta"})
        if isinstance(out, torch.Tensor) and out.numel() <= SMALL:
            return func(*args, **kwargs)
        return out


@contextmanager
def skeleton() -> Iterator[None]:
    """Inside this context, tensors created without a device are meta when larger than :data:`SMALL` elements."""
    with _SkeletonMode():
        yield


def is_skeleton(model: nn.Module) -> bool:
    """Whether any parameter or buffer of ``model`` is on the meta device."""
    return any(t.is_meta for t in (*model.parameters(), *model.buffers()))
