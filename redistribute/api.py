"""The one-call entry point: source or model in, redistributed model and plan out.

From a source string the base is never built for real unless it must be: it is built as a skeleton
(:mod:`redistribute.skeleton`) for planning, and :func:`build` makes the rebuilt model's weights directly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from torch import nn

from .planning.planner import Plan, plan
from .planning.templates import Template
from .skeleton import is_skeleton
from .source import load_model
from .surgery.materialize import materialize_
from .surgery.rebuild import apply

__all__ = ["build", "load_base", "redistribute"]

_logger = logging.getLogger(__name__)


def load_base(
    source: str,
    *,
    pretrained: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    real: bool = False,
) -> nn.Module:
    """The base model for planning: a skeleton (:mod:`redistribute.skeleton`) unless its weights are needed.

    Args:
        source: A model source (``timm:NAME``, ``torchvision:NAME``, ``file.py:factory``).
        pretrained: The zoo's pretrained weights (built for real).
        checkpoint: Base weights to load; they fill a skeleton without building the base's own tensors first.
        real: Build it for real anyway (measuring latency needs a real model).

    Raises:
        SourceError: The source cannot be built. CheckpointError: The checkpoint does not fit.
    """
    from .surgery.checkpoint import load_checkpoint

    base = load_model(source, pretrained=pretrained, meta=not (pretrained or real))
    if checkpoint is not None:
        load_checkpoint(base, checkpoint)
        if is_skeleton(base):  # a large tensor the checkpoint does not hold (a non-persistent buffer)
            _logger.info("%s: the checkpoint leaves tensors without values; building the base for real", source)
            base = load_checkpoint(load_model(source), checkpoint)
    return base


def build(
    base: nn.Module,
    plan: Plan,
    *,
    importance: str = "l1",
    source: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """The model at ``plan``'s widths: :func:`redistribute.apply` on ``base``, materialised if it is a skeleton.

    A skeleton base (``load_model(..., meta=True)``) has no weights to carry: surgery runs on meta and every
    new tensor gets its layer's own initialisation (:func:`~redistribute.surgery.materialize.materialize_`), so
    the base is never allocated. Where some tensor has no initialiser, the base is built for real from
    ``source`` (with ``model_kwargs``, as ``base`` was) and the plan applied to it (plans are identical for both,
    see ``tests/test_skeleton.py``).

    Raises:
        UsageError: ``base`` is a skeleton that cannot be materialised and no ``source`` is given.

    Example:
        >>> import torch
        >>> base = load_model("timm:test_resnet", meta=True)
        >>> p = plan(base, "b", input_size=(3, 64, 64))
        >>> build(base, p, source="timm:test_resnet")(torch.randn(1, 3, 64, 64)).shape
        torch.Size([1, 1000])
    """
    new = apply(base, plan, importance=importance)
    if not is_skeleton(base) or materialize_(new):
        return new
    if source is None:
        from .errors import UsageError

        raise UsageError(
            "this skeleton model cannot be initialised here (a tensor has no initialiser). Hint: build the base for "
            "real, or pass source= so it can be rebuilt"
        )
    _logger.info("%s: some tensor has no initialiser on the meta path; building the base for real", source)
    return apply(load_model(source, **(model_kwargs or {})), plan, importance=importance)


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
        source, model = model, load_model(model, meta=True)
    plan_kwargs.setdefault("source", source)
    p = plan(model, template, match, **plan_kwargs)
    return build(model, p, importance=importance, source=source), p
