"""Cheap meta values for the commonest ops, so tracing does not run torch's Python meta decompositions.

``torch.batch_norm`` on the meta device goes through a Python decomposition that costs about 5 ms a call; norms and
activations keep their input's shape, so their meta value is ``torch.empty_like(input)``. Lookups are by function
identity (``call_function``), method name (``call_method``) and module type along the MRO (leaf modules).
Elementwise binaries (``+ - * /``) broadcast; plain convolutions and linears get their output shape by formula
(torch's Python meta kernels cost 1-5 ms a call). Anything not listed, or any call a rule is unsure of (extra
arguments, mismatched channels), is evaluated for real on meta tensors.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .behaviour import lookup
from .hooked import base_type
from .known import known_values

__all__ = ["EXACT_MODULE_SHAPES", "FUNCTION_SHAPES", "METHOD_SHAPES", "MODULE_SHAPES", "meta_value"]

ShapeFn = Callable[[tuple[Any, ...], dict[str, Any]], Any]


_META = torch.device("meta")  # a device object, not the string: torch.empty skips parsing it (3.3 -> 2.1 us)


def _empty(shape: Any, dtype: torch.dtype) -> torch.Tensor:
    # torch.empty on "meta" is cheap; empty_like/new_empty of a meta tensor go through Python refs (~1.5 ms)
    return torch.empty(tuple(shape), dtype=dtype, device=_META)


def _like_first(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x = args[0] if args else next(iter(kwargs.values()))
    return _empty(x.shape, x.dtype) if isinstance(x, torch.Tensor) else None


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
    return _empty(shape, first.dtype)


def _broadcast(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Elementwise binary ops: the broadcast shape and the promoted dtype."""
    if len(args) != 2 or kwargs:
        return None
    a, b = args
    if not isinstance(a, torch.Tensor | int | float | bool) or not isinstance(b, torch.Tensor | int | float | bool):
        return None
    if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor):
        return None
    shape = _broadcast_shapes(tuple(getattr(a, "shape", ())), tuple(getattr(b, "shape", ())))
    return None if shape is None else _empty(shape, torch.result_type(a, b))


def _broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b, strict=True):
        if x != y and 1 not in (x, y):
            return None  # not broadcastable: the real op raises the error
        out.append(y if x == 1 else x)
    return tuple(out)


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_module(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Plain ``nn.ConvNd`` (exact types only: subclasses such as timm's Conv2dSame pad in forward)."""
    assert isinstance(module, nn.modules.conv._ConvNd)
    x = args[0]
    n = len(module.kernel_size)
    if (
        kwargs
        or len(args) != 1
        or not isinstance(x, torch.Tensor)
        or x.ndim != n + 2
        or x.shape[1] != module.in_channels
    ):
        return None
    if module.padding == "same":
        spatial = list(x.shape[2:])
    elif module.padding == "valid":
        spatial = [
            _conv_out(x.shape[2 + i], module.kernel_size[i], module.stride[i], 0, module.dilation[i]) for i in range(n)
        ]
    else:
        pad = module.padding
        spatial = [
            _conv_out(x.shape[2 + i], module.kernel_size[i], module.stride[i], pad[i], module.dilation[i])
            for i in range(n)
        ]  # type: ignore[index]
    if any(s <= 0 for s in spatial):
        return None  # let the real meta kernel raise its own error
    return _empty((x.shape[0], module.out_channels, *spatial), x.dtype)


def _linear_module(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    assert isinstance(module, nn.Linear)
    x = args[0]
    if kwargs or len(args) != 1 or not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[-1] != module.in_features:
        return None
    return _empty((*x.shape[:-1], module.out_features), x.dtype)


def _attention(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``F.scaled_dot_product_attention(q, k, v, ...)``: ``q``'s shape with ``v``'s last dim."""
    q = args[0] if args else kwargs.get("query")
    v = args[2] if len(args) > 2 else kwargs.get("value")
    if not isinstance(q, torch.Tensor) or not isinstance(v, torch.Tensor):
        return None
    return _empty((*q.shape[:-1], v.shape[-1]), q.dtype)


def _reduce(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``x.mean(dim, keepdim)`` and friends over explicit dims (SE gates, global pooling)."""
    x = args[0]
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    keepdim = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
    if not isinstance(x, torch.Tensor) or len(args) > 3 or set(kwargs) - {"dim", "keepdim"} or x.ndim == 0:
        return None
    dims = (dim,) if isinstance(dim, int) else dim
    if not isinstance(dims, (tuple, list)) or not dims or not all(isinstance(d, int) for d in dims):
        return None  # a full reduction or dims from proxies: the real op decides
    if not all(-x.ndim <= d < x.ndim for d in dims) or not isinstance(keepdim, bool):
        return None
    axes = {d % x.ndim for d in dims}
    shape = [1 if i in axes else s for i, s in enumerate(x.shape) if keepdim or i not in axes]
    return _empty(shape, x.dtype)


def _matmul(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``a @ b`` with both at least 2-D: broadcast batch dims, then ``(n, k) @ (k, m) -> (n, m)``."""
    if len(args) != 2 or kwargs:
        return None
    a, b = args
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.ndim < 2 or b.ndim < 2:
        return None
    if a.shape[-1] != b.shape[-2] or a.dtype != b.dtype:
        return None
    batch = _broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    return None if batch is None else _empty((*batch, a.shape[-2], b.shape[-1]), a.dtype)


def _flatten(args: tuple[Any, ...], kwargs: dict[str, Any], start: int = 0, end: int = -1) -> Any:
    x = args[0]
    start = kwargs.get("start_dim", args[1] if len(args) > 1 else start)
    end = kwargs.get("end_dim", args[2] if len(args) > 2 else end)
    if not isinstance(x, torch.Tensor) or not isinstance(start, int) or not isinstance(end, int) or x.ndim == 0:
        return None
    if len(args) > 3 or set(kwargs) - {"start_dim", "end_dim"}:
        return None
    s, e = start % x.ndim, end % x.ndim
    if s > e:
        return None
    return _empty((*x.shape[:s], math.prod(x.shape[s : e + 1]), *x.shape[e + 1 :]), x.dtype)


def _flatten_module(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    assert isinstance(module, nn.Flatten)
    if len(args) != 1 or kwargs:
        return None
    return _flatten(args, {"start_dim": module.start_dim, "end_dim": module.end_dim})


def _adaptive_pool_module(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``nn.AdaptiveAvgPool2d`` / ``nn.AdaptiveMaxPool2d`` (without indices): the output size replaces H, W."""
    x = args[0]
    size: Any = getattr(module, "output_size", None)
    if len(args) != 1 or kwargs or not isinstance(x, torch.Tensor) or x.ndim not in (3, 4):
        return None
    if getattr(module, "return_indices", False):
        return None
    if size is None:
        return None
    out = (size, size) if isinstance(size, int) else tuple(size)
    if len(out) != 2:
        return None
    out = tuple(x.shape[-2 + i] if s is None else s for i, s in enumerate(out))
    return _empty((*x.shape[:-2], *out), x.dtype)


def _rnn_module(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``nn.LSTM``/``nn.GRU``/``nn.RNN`` on an unpacked, 3-D input with no initial state: ``(output, h_n[, c_n])``.

    On the meta device torch runs these step by step in Python (seconds for a Sequencer); the shapes are known.
    """
    assert isinstance(module, nn.RNNBase)
    x = args[0] if args else None
    if len(args) != 1 or kwargs or not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != module.input_size:
        return None
    dirs = 2 if module.bidirectional else 1
    out = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
    batch = x.shape[0] if module.batch_first else x.shape[1]
    output = _empty((*x.shape[:-1], dirs * out), x.dtype)
    h_n = _empty((module.num_layers * dirs, batch, out), x.dtype)
    if isinstance(module, nn.LSTM):
        return output, (h_n, _empty((module.num_layers * dirs, batch, module.hidden_size), x.dtype))
    return output, h_n


FUNCTION_SHAPES: dict[Any, ShapeFn] = {f: _like_first for f in _SAME_SHAPE_FUNCTIONS}
FUNCTION_SHAPES.update({torch.mean: _reduce, torch.sum: _reduce, torch.amax: _reduce, torch.flatten: _flatten})
FUNCTION_SHAPES.update({operator.matmul: _matmul, torch.matmul: _matmul, torch.bmm: _matmul})
FUNCTION_SHAPES[F.scaled_dot_product_attention] = _attention
FUNCTION_SHAPES[torch.cat] = _cat
for _op in (operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul):
    FUNCTION_SHAPES[_op] = _broadcast
METHOD_SHAPES: dict[str, ShapeFn] = {n: _like_first for n in ("sigmoid", "relu", "tanh", "contiguous")}
METHOD_SHAPES.update({n: _broadcast for n in ("add", "sub", "mul", "div")})
METHOD_SHAPES.update({n: _reduce for n in ("mean", "sum", "amax", "amin")})
METHOD_SHAPES["flatten"] = _flatten
METHOD_SHAPES.update({"matmul": _matmul, "bmm": _matmul})

_SAME_SHAPE_MODULES: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm,
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.ELU,
    nn.LeakyReLU, nn.PReLU, nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout2d,
)  # fmt: skip
MODULE_SHAPES: dict[type, ShapeFn] = {t: _like_first for t in _SAME_SHAPE_MODULES}
EXACT_MODULE_SHAPES: dict[type, Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], Any]] = {
    nn.Conv1d: _conv_module, nn.Conv2d: _conv_module, nn.Conv3d: _conv_module, nn.Linear: _linear_module,
    nn.Flatten: _flatten_module, nn.AdaptiveAvgPool2d: _adaptive_pool_module, nn.AdaptiveMaxPool2d: _adaptive_pool_module,
    nn.LSTM: _rnn_module, nn.GRU: _rnn_module, nn.RNN: _rnn_module,
}  # fmt: skip


def meta_value(
    op: str, target: Any, module: nn.Module | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[bool, Any]:
    """``(True, value)`` when a cheap rule knows the node's meta value, else ``(False, None)``.

    Modules match along their MRO, like the group rules in :mod:`redistribute.groups.rules.functions`, which treat every norm
    (timm's norm-act layers included) as shape-preserving too. Functions and methods of tensors whose values are
    known (made from Python constants) have no rule: they are evaluated for real.
    """
    if op in ("call_function", "call_method") and known_values(args):
        return False, None
    if op == "call_function":
        try:
            fn = FUNCTION_SHAPES.get(target)
        except TypeError:  # an unhashable target (a functools.partial of a list, say) has no rule
            fn = None
    elif op == "call_method":
        fn = METHOD_SHAPES.get(str(target))
    elif op == "call_module" and module is not None:
        exact = EXACT_MODULE_SHAPES.get(base_type(module))
        if exact is not None:
            value = exact(module, args, kwargs) if args else None
            return value is not None, value
        fn = lookup(MODULE_SHAPES, type(module))
    else:
        fn = None
    if fn is None or not args:
        return False, None
    value = fn(args, kwargs)
    return value is not None, value
