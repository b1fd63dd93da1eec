"""Pausing Python's cyclic garbage collector while the pipeline allocates many small objects.

Tracing and surgery create thousands of short-lived Python objects (fx nodes, proxies, module copies). Each few
hundred allocations trigger a collection, and a full one walks every object alive, torch's and timm's included:
on a DenseNet that is about half of the trace time. Nothing is freed late that matters: reference counting still
frees acyclic garbage at once, and the collector runs again as soon as the pause ends.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

__all__ = ["gc_paused", "paused_gc"]

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic collector inside the block; restore its previous state after (nesting is fine).

    Example:
        >>> import gc
        >>> with paused_gc():
        ...     gc.isenabled()
        False
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def gc_paused(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`paused_gc`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with paused_gc():
            return fn(*args, **kwargs)

    return wrapper
