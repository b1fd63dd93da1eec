"""Cheap meta values for the commonest ops, so tracing does not run torch's Python meta decompositions.

``torch.batch_norm`` on the meta device goes through a Python decomposition that costs about 5 ms a call; norms and
activations keep their input's shape, so their meta value is ``torch.empty_like(input)``. Lookups are by function
identity (``call_function``), method name (``call_method``) and module type along the MRO (leaf modules).
Anything not listed is evaluated for real on meta tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FUNCTION_SHAPES", "METHOD_SHAPES", "MODULE_SHAPES", "meta_value"]

ShapeFn = Callable[[tuple[Any, ...], dict[str, Any]], Any]


def _like_first(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x = args[0] if args else next(iter(kwargs.values()))
    return torch.empty_like(x) if isinstance(x, torch.Tensor) else None


_SAME_SHAPE_FUNCTIONS: tuple[Callable[..., Any], ...] = (
    F.batch_norm, torch.batch_norm, F.layer_norm, torch.layer_norm, F.group_norm, torch.group_norm,
    F.instance_norm, F.relu, torch.relu, F.relu6, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid,
    F.sigmoid, torch.sigmoid, F.tanh, torch.tanh, F.elu, F.leaky_relu, F.dropout, F.softplus,
)  # fmt: skip
def _cat(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    tensors = args[0]
    dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
    if not isinstance(tensors, (list, tuple)) or not tensors or not isinstance(dim, int):
        return None
    first = tensors[0]
    if not all(isinstance(t, torch.Tensor) and t.ndim == first.ndim for t in tensors) or first.ndim == 0:
        return None
    d = dim % first.ndim
    shape = list(first.shape)
    shape[d] = sum(t.shape[d] for t in tensors)
    return first.new_empty(shape)


FUNCTION_SHAPES: dict[Any, ShapeFn] = {f: _like_first for f in _SAME_SHAPE_FUNCTIONS}
FUNCTION_SHAPES[torch.cat] = _cat
METHOD_SHAPES: dict[str, ShapeFn] = {n: _like_first for n in ("sigmoid", "relu", "tanh", "contiguous")}

_SAME_SHAPE_MODULES: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm,
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.ELU,
    nn.LeakyReLU, nn.PReLU, nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout2d,
)  # fmt: skip
MODULE_SHAPES: dict[type, ShapeFn] = {t: _like_first for t in _SAME_SHAPE_MODULES}


def meta_value(op: str, target: Any, module: nn.Module | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bool, Any]:
    """``(True, value)`` when a cheap rule knows the node's meta value, else ``(False, None)``.

    Modules match along their MRO, like the group rules in :mod:`redistribute._rules`, which treat every norm
    (timm's norm-act layers included) as shape-preserving too.
    """
    if op == "call_function":
        fn = FUNCTION_SHAPES.get(target) if _hashable(target) else None
    elif op == "call_method":
        fn = METHOD_SHAPES.get(str(target))
    elif op == "call_module" and module is not None:
        fn = next((MODULE_SHAPES[t] for t in type(module).__mro__ if t in MODULE_SHAPES), None)
    else:
        fn = None
    if fn is None or not args:
        return False, None
    value = fn(args, kwargs)
    return value is not None, value


def _hashable(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True
