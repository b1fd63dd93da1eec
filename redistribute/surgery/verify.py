"""Check a rebuilt model before anyone uses it: layer attributes against weights, parameter count, output shapes.

Surgery edits tensors and attributes separately, so a handler that forgets one leaves a model that looks right and
fails (or silently computes something else) at its first forward. :func:`verify` catches that at rebuild time:

* every layer the plan touches has attributes that agree with its weights (``in_channels``/``out_channels``/
  ``groups`` of a conv, ``in_features``/``out_features`` of a linear, ``num_features``/``normalized_shape`` of a
  norm, ``num_parameters`` of a PReLU, ``input_size`` of a recurrent layer), checked by a registry keyed by type;
* the model holds exactly the plan's parameter count (each shared tensor once);
* a forward pass on the meta device (a copy: no data, milliseconds) runs and gives the base's output shapes. Where
  an op has no meta kernel, a zero input on the model's own device is used instead, in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from ..errors import RebuildError
from ..planning.planner import Plan
from ..tracing.clone import meta_copy
from ..tracing.shape_rules import EXACT_MODULE_SHAPES

__all__ = ["ATTRIBUTE_CHECKS", "register_check", "verify"]

#: A check returns what is wrong with a module (one phrase) or ``None``.
Check = Callable[[nn.Module], "str | None"]
ATTRIBUTE_CHECKS: dict[type, Check] = {}


def register_check(*types: type) -> Callable[[Check], Check]:
    """Register an attribute check for modules of these types (and subclasses without their own)."""

    def deco(fn: Check) -> Check:
        for t in types:
            ATTRIBUTE_CHECKS[t] = fn
        return fn

    return deco


@register_check(nn.modules.conv._ConvNd)
def _conv(m: nn.Module) -> str | None:
    assert isinstance(m, nn.modules.conv._ConvNd)
    cin, cout, g = m.in_channels, m.out_channels, m.groups
    if cin % g or cout % g:
        return f"groups={g} does not divide in_channels={cin} and out_channels={cout}"
    want = (cin, cout // g) if m.transposed else (cout, cin // g)
    if tuple(m.weight.shape[:2]) != want:
        return f"weight {tuple(m.weight.shape)} does not fit in={cin}, out={cout}, groups={g}"
    if m.bias is not None and m.bias.shape != (cout,):
        return f"bias {tuple(m.bias.shape)} does not fit out_channels={cout}"
    return None


@register_check(nn.Linear)
def _linear(m: nn.Module) -> str | None:
    assert isinstance(m, nn.Linear)
    if tuple(m.weight.shape) != (m.out_features, m.in_features):
        return f"weight {tuple(m.weight.shape)} does not fit in_features={m.in_features}, out={m.out_features}"
    if m.bias is not None and m.bias.shape != (m.out_features,):
        return f"bias {tuple(m.bias.shape)} does not fit out_features={m.out_features}"
    return None


def _per_channel(m: nn.Module, n: int, what: str) -> str | None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        t = getattr(m, name, None)
        if isinstance(t, torch.Tensor) and t.shape != (n,):
            return f"{name} {tuple(t.shape)} does not fit {what}={n}"
    return None


@register_check(nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
def _batch_norm(m: nn.Module) -> str | None:
    return _per_channel(m, int(m.num_features), "num_features")  # type: ignore[arg-type]


@register_check(nn.GroupNorm)
def _group_norm(m: nn.Module) -> str | None:
    assert isinstance(m, nn.GroupNorm)
    if m.num_channels % m.num_groups:
        return f"num_groups={m.num_groups} does not divide num_channels={m.num_channels}"
    return _per_channel(m, m.num_channels, "num_channels")


@register_check(nn.LayerNorm)
def _layer_norm(m: nn.Module) -> str | None:
    assert isinstance(m, nn.LayerNorm)
    shape = tuple(m.normalized_shape)
    for name in ("weight", "bias"):
        t = getattr(m, name, None)
        if isinstance(t, torch.Tensor) and tuple(t.shape) != shape:
            return f"{name} {tuple(t.shape)} does not fit normalized_shape={shape}"
    return None


@register_check(nn.PReLU)
def _prelu(m: nn.Module) -> str | None:
    assert isinstance(m, nn.PReLU)
    if m.weight.shape != (m.num_parameters,):
        return f"weight {tuple(m.weight.shape)} does not fit num_parameters={m.num_parameters}"
    return None


@register_check(nn.RNNBase)
def _rnn(m: nn.Module) -> str | None:
    assert isinstance(m, nn.RNNBase)
    w = m.weight_ih_l0
    if w.shape[1] != m.input_size:
        return f"weight_ih_l0 {tuple(w.shape)} does not fit input_size={m.input_size}"
    return None


def _check(m: nn.Module) -> str | None:
    for t in type(m).__mro__:
        if t in ATTRIBUTE_CHECKS:
            return ATTRIBUTE_CHECKS[t](m)
    return None


def _unique_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields each shared tensor once


def verify(model: nn.Module, plan: Plan, modules: Mapping[str, nn.Module] | None = None) -> None:
    """Raise :class:`~redistribute.errors.RebuildError` when ``model`` (rebuilt at ``plan``) is inconsistent.

    Args:
        model: The rebuilt model (not modified; the forward runs on a meta copy).
        plan: The plan it was rebuilt at.
        modules: ``model``'s modules by name, aliases included, when the caller has them.

    Raises:
        RebuildError: A layer's attributes disagree with its weights (the layer is named), the parameter count
            differs from the plan's, or the forward fails or changes the output shapes.
    """
    modules = modules if modules is not None else dict(model.named_modules(remove_duplicate=False))
    seen: set[str] = set()
    for u in plan.graph.uses:
        if u.kind in ("conv", "linear", "norm") and u.module not in seen:
            seen.add(u.module)
            m = modules.get(u.module)
            problem = _check(m) if m is not None else None
            if problem is not None:
                raise RebuildError(
                    f"rebuilt layer '{u.module}' ({type(m).__name__}) is inconsistent: {problem}. "
                    "Hint: its resize handler is wrong; please report it with the model"
                )
    params = _unique_params(model)
    if params != round(plan.cost.params):
        raise RebuildError(
            f"the rebuilt {type(model).__name__} holds {params:,} parameters, the plan says {round(plan.cost.params):,}. "
            "Hint: the cost model misses a layer; please report it with the model"
        )
    shapes = _output_shapes(model, plan.graph.input_shape)
    want = plan.graph.output_shapes
    if want and shapes != want:
        raise RebuildError(
            f"the rebuilt {type(model).__name__} returns shapes {list(shapes)}, the base {list(want)}. "
            "Hint: a layer was not resized with its group; please report it with the model"
        )


def _bn_shapes(x: torch.Tensor, running_mean: torch.Tensor | None = None, running_var: torch.Tensor | None = None,
               weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, *args: object, **kwargs: object) -> torch.Tensor:  # fmt: skip
    n = x.shape[1] if x.ndim > 1 else -1
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (n,):
            raise RuntimeError(f"batch_norm: {name} {list(t.shape)} does not fit an input of shape {list(x.shape)}")
    return torch.empty_like(x)


def _ln_shapes(x: torch.Tensor, normalized_shape: Sequence[int], weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, *args: object, **kwargs: object) -> torch.Tensor:  # fmt: skip
    shape = tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(shape) :]) != shape:
        raise RuntimeError(f"layer_norm: normalized_shape={list(shape)} does not fit an input of shape {list(x.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise RuntimeError(f"layer_norm: {name} {list(t.shape)} does not fit normalized_shape={list(shape)}")
    return torch.empty_like(x)


def _gn_shapes(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, *args: object, **kwargs: object) -> torch.Tensor:  # fmt: skip
    n = x.shape[1]
    if n % num_groups:
        raise RuntimeError(f"group_norm: {num_groups} groups do not divide {n} channels")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (n,):
            raise RuntimeError(f"group_norm: {name} {list(t.shape)} does not fit an input of shape {list(x.shape)}")
    return torch.empty_like(x)


#: Norms on meta, shapes only: torch's meta kernels for them are Python decompositions that take most of a meta
#: forward (ResNet50: 90 of 100 ms); these refuse what the real ops refuse (a channel count that is not theirs).
_SHAPE_ONLY: dict[Callable[..., object], Callable[..., torch.Tensor]] = {
    F.batch_norm: _bn_shapes,
    F.layer_norm: _ln_shapes,
    F.group_norm: _gn_shapes,
}


class _ShapeOnlyNorms(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        fast = _SHAPE_ONLY.get(func)
        x = args[0] if args else None
        if fast is not None and isinstance(x, torch.Tensor) and x.device.type == "meta":
            return fast(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


_RNN_FORWARDS = (nn.LSTM.forward, nn.GRU.forward, nn.RNN.forward)
_SHAPE_ONLY_CLASSES: dict[type, type] = {}


def _rnn_shapes(self: nn.RNNBase, input: torch.Tensor, hx: object = None) -> object:
    """A recurrent layer on meta, shapes only (torch runs it step by step in Python there: seconds for Sequencer)."""
    if input.shape[-1] != self.input_size:
        raise RuntimeError(
            f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {input.shape[-1]}"
        )
    shapes = next(EXACT_MODULE_SHAPES[t] for t in type(self).__mro__ if t in EXACT_MODULE_SHAPES)
    out = shapes(self, (input,), {}) if hx is None else None
    return out if out is not None else super(type(self), self).forward(input, hx)  # type: ignore[misc]


def _shape_only_class(cls: type) -> type | None:
    """For the meta copy: torch's own LSTM/GRU/RNN (not a subclass with its own forward) run shapes only."""
    if getattr(cls, "forward", None) not in _RNN_FORWARDS:
        return None
    if cls not in _SHAPE_ONLY_CLASSES:
        _SHAPE_ONLY_CLASSES[cls] = type(cls.__name__, (cls,), {"forward": _rnn_shapes, "__module__": cls.__module__})
    return _SHAPE_ONLY_CLASSES[cls]


def _output_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Shapes of ``model``'s output tensors at ``input_shape``: on a meta copy, or on zeros where meta cannot."""
    try:
        copy = meta_copy(model, _shape_only_class)
        copy.eval()
        with torch.no_grad(), _ShapeOnlyNorms():
            out = copy(torch.empty(input_shape, device="meta", dtype=_dtype(model)))
    except Exception as meta_exc:  # an op without a meta kernel, or a real fault: a real forward tells which
        try:
            out = _real_forward(model, input_shape)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RebuildError(
                f"the rebuilt {type(model).__name__} fails at forward: {type(exc).__name__}: {first}. "
                "Hint: a layer was not resized with its group; please report it with the model"
            ) from meta_exc
    return tuple(tuple(t.shape) for t in tree_leaves(out) if isinstance(t, torch.Tensor))


def _dtype(model: nn.Module) -> torch.dtype:
    """The input dtype the model computes in: its first floating-point parameter's (a half model gets halves)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def _real_forward(model: nn.Module, input_shape: tuple[int, ...]) -> object:
    """A forward of ``model`` on zeros in eval mode, restoring every module's mode (running stats untouched)."""
    modes = {m: m.training for m in model.modules()}
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    try:
        model.eval()
        with torch.no_grad():
            return model(torch.zeros(input_shape, device=device, dtype=_dtype(model)))
    finally:
        for m, mode in modes.items():
            m.training = mode
