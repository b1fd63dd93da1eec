"""The cheap meta-value rules agree with torch's own meta kernels, shape and dtype, or decline."""

from __future__ import annotations

import operator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from redistribute.tracing.shape_rules import meta_value


def _meta(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def _check(op: str, target: Any, module: nn.Module | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    known, value = meta_value(op, target, module, args, kwargs)
    if op == "call_function":
        real = target(*args, **kwargs)
    elif op == "call_method":
        real = getattr(args[0], target)(*args[1:], **kwargs)
    else:
        assert module is not None
        real = module.to("meta")(*args, **kwargs)
    assert known, f"no rule answered {target!r}"
    assert value.device.type == "meta"
    assert (tuple(value.shape), value.dtype) == (tuple(real.shape), real.dtype)


X = _meta(2, 8, 5, 7)

REDUCTIONS = [
    ((X, (2, 3)), {"keepdim": True}),
    ((X, (2, 3)), {}),
    ((X, -1), {}),
    ((X,), {"dim": [1, -1], "keepdim": False}),
    ((X, 1, True), {}),
    ((_meta(3, 4, dtype=torch.float16), 0), {}),
]


@pytest.mark.parametrize("method", ["mean", "sum", "amax", "amin"])
@pytest.mark.parametrize(("args", "kwargs"), REDUCTIONS)
def test_reductions(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    _check("call_method", method, None, args, kwargs)


@pytest.mark.parametrize("fn", [torch.mean, torch.sum, torch.amax])
def test_reduction_functions(fn: Any) -> None:
    _check("call_function", fn, None, (X, (2, 3)), {"keepdim": True})


def test_full_reduction_and_dtype_argument_are_left_to_torch() -> None:
    assert meta_value("call_method", "mean", None, (X,), {}) == (False, None)
    assert meta_value("call_method", "sum", None, (X, 1), {"dtype": torch.float64}) == (False, None)


@pytest.mark.parametrize(("args", "kwargs"), [((X, 1), {}), ((X,), {}), ((X, 1, 2), {}), ((X,), {"start_dim": -2})])
def test_flatten(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    _check("call_function", torch.flatten, None, args, kwargs)
    _check("call_method", "flatten", None, args, kwargs)


@pytest.mark.parametrize(
    "module",
    [
        nn.Flatten(),
        nn.Flatten(2),
        nn.AdaptiveAvgPool2d(1),
        nn.AdaptiveAvgPool2d((3, None)),
        nn.AdaptiveMaxPool2d((2, 4)),
        nn.Conv2d(8, 6, 3, stride=2, padding=1),
        nn.Conv2d(8, 8, 3, padding="same", groups=8),
        nn.BatchNorm2d(8),
        nn.SiLU(),
    ],
    ids=repr,
)
def test_modules(module: nn.Module) -> None:
    _check("call_module", None, module, (X,), {})


def test_linear_and_binary_ops() -> None:
    _check("call_module", None, nn.Linear(7, 3), (X,), {})
    _check("call_function", operator.mul, None, (X, _meta(2, 8, 1, 1)), {})
    _check("call_function", operator.add, None, (X, 1.5), {})
    _check("call_function", torch.cat, None, ([X, X],), {"dim": 1})
    q, v = _meta(2, 3, 10, 16), _meta(2, 3, 10, 8)
    _check("call_function", F.scaled_dot_product_attention, None, (q, _meta(2, 3, 10, 16), v), {})


def test_mismatched_inputs_are_left_to_torch() -> None:
    """A rule never invents a shape for a call the real op would reject."""
    assert meta_value("call_module", None, nn.Conv2d(4, 6, 3), (X,), {}) == (False, None)
    assert meta_value("call_module", None, nn.Linear(5, 3), (X,), {}) == (False, None)
    assert meta_value("call_function", operator.add, None, (X, _meta(3, 1, 1)), {}) == (False, None)
    assert meta_value("call_method", "mean", None, (X, 4), {}) == (False, None)


@pytest.mark.parametrize(
    ("a", "b"),
    [((2, 3, 5, 7), (2, 3, 7, 4)), ((3, 5, 7), (7, 4)), ((1, 3, 5, 7), (2, 1, 7, 4)), ((5, 7), (2, 7, 4))],
)
def test_matmul(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    _check("call_function", operator.matmul, None, (_meta(*a), _meta(*b)), {})
    _check("call_method", "matmul", None, (_meta(*a), _meta(*b)), {})


def test_matmul_of_vectors_and_mismatches_is_left_to_torch() -> None:
    assert meta_value("call_function", operator.matmul, None, (_meta(7), _meta(7, 4)), {}) == (False, None)
    assert meta_value("call_function", operator.matmul, None, (_meta(5, 6), _meta(7, 4)), {}) == (False, None)


@pytest.mark.parametrize(
    "module",
    [
        nn.LSTM(7, 6, batch_first=True),
        nn.LSTM(7, 6, num_layers=2, bidirectional=True, proj_size=4),
        nn.GRU(7, 5, bidirectional=True),
        nn.RNN(7, 3, num_layers=3),
    ],
    ids=repr,
)
def test_recurrent_modules(module: nn.Module) -> None:
    x = _meta(2, 9, 7)
    known, value = meta_value("call_module", None, module, (x,), {})
    real = module.to("meta")(x)
    assert known
    flat = lambda v: [v] if isinstance(v, torch.Tensor) else [t for item in v for t in flat(item)]  # noqa: E731
    assert [tuple(t.shape) for t in flat(value)] == [tuple(t.shape) for t in flat(real)]
