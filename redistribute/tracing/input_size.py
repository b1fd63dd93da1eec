"""The input size a model is traced at: parsed from the user's text or sequence, or taken from the model."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import TraceError, UsageError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["check_one_input", "parse_input_size", "resolve_input_size"]

_logger = logging.getLogger(__name__)


def parse_input_size(value: Sequence[Any] | str, min_dims: int = 1) -> tuple[int, ...]:
    """An input size without batch from ``"3,224,224"``, ``"3x224x224"`` or a sequence of integers.

    Raises:
        UsageError: In one line, naming the value, when it is not ``min_dims`` or more positive integers.

    Example:
        >>> parse_input_size("3x64x64")
        (3, 64, 64)
    """
    shown = repr(value) if isinstance(value, str) else str(value)
    try:
        parts = value.replace("x", ",").split(",") if isinstance(value, str) else list(value)
        if any(isinstance(s, float) and s != int(s) for s in parts):
            raise ValueError  # 32.5 is no size
        size = tuple(int(s) for s in parts)
    except (TypeError, ValueError):
        raise UsageError(
            f"input size {shown} is not a list of integers. Hint: give channels and spatial size, e.g. 3,224,224"
        ) from None
    if len(size) < min_dims or any(s <= 0 for s in size):
        raise UsageError(f"input size {shown} is invalid. Hint: give channels and spatial size, e.g. 3,224,224")
    return size


def resolve_input_size(model: nn.Module, input_size: Sequence[Any] | str | None) -> tuple[int, ...]:
    """``input_size`` parsed, or else the model's timm ``pretrained_cfg`` input size, or else ``(3, 224, 224)``."""
    if input_size is not None:
        return parse_input_size(input_size)
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    if "input_size" in cfg:
        return tuple(int(s) for s in cfg["input_size"])
    _logger.info("no input size given and the model has no pretrained_cfg: using 3x224x224")
    return (3, 224, 224)


def check_one_input(model: nn.Module, params: list[inspect.Parameter]) -> None:
    """Refuse a forward with several required inputs: only the first gets the traced tensor."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    required = [p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]
    if len(required) > 1:
        raise TraceError(
            f"{type(model).__name__}.forward takes {len(required)} required inputs ({', '.join(required)}); "
            "redistribute traces a model with one input tensor. Hint: wrap it in a module whose forward takes one "
            "tensor and builds the others"
        )
