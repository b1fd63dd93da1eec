"""Copies of a module tree that differ from ``copy.deepcopy`` only in what happens to the tensors.

``copy.deepcopy`` of a model walks every attribute of every module through ``__reduce_ex__``; on a 200-module
network that costs as much as building it. :func:`_copy_module` walks the module tree itself instead: each
module's ``__dict__`` is copied, child modules recursively, parameters and buffers through a memo that says what
each tensor becomes, immutable atoms (numbers, strings, types, functions) are shared, empty containers are
recreated, and anything else (non-empty lists and dicts such as ``feature_info``, bound methods, config objects)
goes through ``copy.deepcopy`` with the same memo. The result is what ``deepcopy`` gives, minus the tensor copies.

* :func:`meta_copy`: every tensor becomes an empty meta tensor of its shape (what the tracer runs on), except
  small constants kept as plain attributes (an adjacency matrix, ``torch.tensor(3)``), which keep their values so
  that control flow on them still resolves.
* :func:`copy_sharing_tensors`: tensors stay shared with the original; surgery replaces the ones it resizes and
  :func:`unshare` then clones the rest, so no weight is copied twice and nothing is left shared.
"""

from __future__ import annotations

import copy
import types
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .scripted import ScriptedStandIn

__all__ = ["copy_sharing_tensors", "meta_copy", "unshare"]

_ATOMS = (
    int, float, complex, bool, str, bytes, type(None), type, types.FunctionType, types.BuiltinFunctionType,
    torch.dtype, torch.device,
)  # fmt: skip
_CONTAINERS = (dict, OrderedDict, list, set)
_META = torch.device("meta")
_ATOM_TYPES = frozenset(_ATOMS)


def _is_atom(value: Any) -> bool:
    if isinstance(value, _ATOMS):
        return True
    return type(value) in (tuple, torch.Size) and all(_is_atom(v) for v in value)


TensorFn = Callable[[torch.Tensor], torch.Tensor]


def _seed_tensors(value: Any, memo: dict[int, Any], tensor_fn: TensorFn, depth: int = 0) -> None:
    """Tell ``deepcopy`` what each loose tensor in ``value`` becomes (caches such as LeViT's attention biases).

    A tensor computed by a forward with autograd on cannot be deep-copied at all; these get ``tensor_fn``.
    """
    if isinstance(value, torch.Tensor):
        if id(value) not in memo:
            memo[id(value)] = tensor_fn(value)
    elif depth < 4 and isinstance(value, (dict, list, tuple)):
        for v in value.values() if isinstance(value, dict) else value:
            _seed_tensors(v, memo, tensor_fn, depth + 1)


def _copy_value(value: Any, memo: dict[int, Any], tensor_fn: TensorFn) -> Any:
    """A module attribute that is neither an atom nor an empty container (those :func:`_copy_module` handles)."""
    if _is_atom(value):  # tuples of atoms: kernel_size, stride, ...
        return value
    _seed_tensors(value, memo, tensor_fn)
    return copy.deepcopy(value, memo)


ClassFn = Callable[[type], "type | None"]


def _copy_module(m: nn.Module, memo: dict[int, Any], tensor_fn: TensorFn, class_fn: ClassFn | None = None) -> nn.Module:
    if id(m) in memo:  # a module registered twice stays one module
        return memo[id(m)]  # type: ignore[no-any-return]
    if isinstance(m, torch.jit.ScriptModule):  # TorchScript: its C++ state cannot be copied attribute-wise
        new_script: nn.Module = (
            ScriptedStandIn(m, memo) if tensor_fn in (_to_meta, _loose_to_meta) else copy.deepcopy(m)
        )
        memo[id(m)] = new_script
        return new_script
    cls: type[nn.Module] = (class_fn(m.__class__) if class_fn is not None else None) or m.__class__
    new = cls.__new__(cls)
    memo[id(m)] = new
    state = m.__dict__.copy()
    for key, value in state.items():
        kind = type(value)
        if kind in _ATOM_TYPES:  # most entries: nothing to do
            continue
        if kind in _CONTAINERS and not value:  # nn.Module's own hook dicts, mostly
            state[key] = value.copy()
        elif key == "_modules":
            state[key] = {
                n: None if c is None else _copy_module(c, memo, tensor_fn, class_fn) for n, c in value.items()
            }
        elif key in ("_parameters", "_buffers"):
            state[key] = {n: None if t is None else memo[id(t)] for n, t in value.items()}
        else:
            state[key] = _copy_value(value, memo, tensor_fn)
    new.__dict__.update(state)
    return new


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    return [t for m in model.modules() for s in (m._parameters, m._buffers) for t in s.values() if t is not None]


def meta_copy(model: nn.Module, class_fn: ClassFn | None = None, memo: dict[int, Any] | None = None) -> nn.Module:
    """A copy of ``model`` with every parameter and buffer on the meta device; no weight is copied.

    Small constant tensors kept as plain attributes keep their values (see :func:`_is_constant`).

    ``class_fn`` maps a module's class to the class its copy is made of (``None``: the same class); the tracer
    uses it to build the copy from subclasses that carry its hooks. ``memo``, when given, is filled with what
    each original module and tensor became, by ``id``.

    Example:
        >>> import torch
        >>> meta_copy(torch.nn.Conv2d(3, 8, 3)).weight.device.type
        'meta'
    """
    memo = {} if memo is None else memo
    for t in _tensors(model):
        if id(t) not in memo:
            meta = torch.empty_like(t, device=_META)
            memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return _copy_module(model, memo, _loose_to_meta, class_fn)


_CONSTANT_NUMEL = 4096  # 32 KB of int64 at most: a constant copied for its value, never a cache or a weight


def _to_meta(t: torch.Tensor) -> torch.Tensor:
    return torch.empty(t.shape, dtype=t.dtype, device=_META)


def _is_constant(t: torch.Tensor) -> bool:
    """Whether a loose tensor (a plain attribute, not a parameter or buffer) holds configuration, not data.

    Such a tensor keeps its value in the meta copy, so that control flow on it resolves at trace time: NAS-Bench-101's
    cell keeps its adjacency matrix this way and branches on ``self.matrix[0, t]``. The rule is what a value can
    cost and what it can mean: parameters and buffers are the model's data and always become meta (they are
    seeded before this runs); a tensor that requires grad is trainable data; one on an accelerator would put device
    work in the trace; and one over :data:`_CONSTANT_NUMEL` elements is a cache (attention biases, masks) whose
    copy would cost as much as a weight's and whose values no ``if`` reads. A kept tensor that later meets a meta
    one becomes meta there (see the tracer), so keeping too much costs a copy, never a wrong or failed trace.
    """
    return t.device.type == "cpu" and not t.requires_grad and t.numel() <= _CONSTANT_NUMEL


def _loose_to_meta(t: torch.Tensor) -> torch.Tensor:
    """A loose tensor's counterpart in the meta copy: a detached copy if :func:`_is_constant`, else meta."""
    return t.detach().clone() if _is_constant(t) else _to_meta(t)


def _detached_clone(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone()


def copy_sharing_tensors(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are still ``model``'s own (see :func:`unshare`)."""
    return _copy_module(model, {id(t): t for t in _tensors(model)}, _detached_clone)


def unshare(new: nn.Module, *owners: nn.Module | Iterable[torch.Tensor]) -> nn.Module:
    """Clone, in place, every parameter or buffer of ``new`` whose memory belongs to one of ``owners``.

    Args:
        new: The module to make independent.
        *owners: Modules, or iterables of tensors (a state dict's values), whose memory ``new`` must not share.

    Returns:
        ``new``.
    """
    shared: set[int] = set()
    for owner in owners:
        tensors = _tensors(owner) if isinstance(owner, nn.Module) else list(owner)
        shared.update(t.untyped_storage().data_ptr() for t in tensors if t.device.type != "meta" and t.numel())
    for m in new.modules():
        for store in (m._parameters, m._buffers):
            for name, t in store.items():
                if t is not None and t.device.type != "meta" and t.numel() and t.untyped_storage().data_ptr() in shared:
                    c = t.detach().clone()
                    store[name] = nn.Parameter(c, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else c
    return new
