"""The one-call entry point: source or model in, redistributed model and plan out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .planning.planner import Plan, plan
from .planning.templates import Template
from .source import load_model
from .surgery.rebuild import apply

__all__ = ["redistribute"]


def redistribute(
    model: nn.Module | str,
    template: str | Template | Callable[[float], float] = "d",
    match: str = "flops",
    *,
    importance: str = "l1",
    **plan_kwargs: Any,
) -> tuple[nn.Module, Plan]:
    """Redistribute ``model``'s filters following ``template`` at equal ``match`` cost.

    Args:
        model: A model, or a source string (``timm:resnet50``, ``torchvision:resnet18``, ``file.py:factory``).
        template: See :func:`redistribute.plan`.
        match: ``flops``, ``params``, ``memory`` or ``none``.
        importance: How shrinking picks channels (``l1``, ``l2``, ``bn``).
        **plan_kwargs: ``tolerance``, ``divisor``, ``ratio``, ``scope``, ``input_size``, ``target``.

    Returns:
        ``(new_model, plan)``; the input model is not modified.

    Example:
        >>> import torch
        >>> import redistribute
        >>> new, plan = redistribute.redistribute("timm:test_resnet", "peak", input_size=(3, 64, 64))
        >>> new(torch.randn(1, 3, 64, 64)).shape
        torch.Size([1, 1000])
    """
    source = None
    if isinstance(model, str):
        source, model = model, load_model(model)
    plan_kwargs.setdefault("source", source)
    p = plan(model, template, match, **plan_kwargs)
    return apply(model, p, importance=importance), p
