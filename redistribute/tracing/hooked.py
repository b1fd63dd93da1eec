"""fx tracing without patching ``nn.Module``: the traced copy's own classes carry fx's two hooks.

``torch.fx.Tracer.trace`` intercepts module calls and parameter reads by assigning ``nn.Module.__call__`` and
``nn.Module.__getattr__`` for the duration of a trace, and restoring them after. Both are type slots: assigning
one makes CPython update the slot of every subclass of ``nn.Module``, well over a thousand with timm imported, at
about 1.5 ms an assignment. Four of them cost more than tracing a small model does.

The tracer works on a meta copy of the model that it owns, so the copy's modules can be built as instances of a
*hooked subclass* of their class instead: same name, same MRO plus one class that defines ``__call__`` and
``__getattr__`` to hand over to the active tracer (or defer to ``nn.Module``'s, whatever they are at that moment,
when none is active: plain modules outside a trace, fx's patches inside fx's own ``trace``).
The subclasses are made once per class and cached. :func:`trace_hooked` is ``fx.Tracer.trace`` minus the two
patches; everything else it patches (``torch.fx.wrap`` functions, autowrapped functions in module globals) is
patched as fx does. When the torch in use lacks one of the fx internals this relies on, or a class cannot be
subclassed, tracing falls back to fx's own ``trace``.
"""

from __future__ import annotations

import contextvars
import logging
import types
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.fx.traceback as fx_traceback
from torch import fx, nn

__all__ = ["LeanTracer", "all_hooked", "base_type", "hooked_class", "trace_hooked"]

_logger = logging.getLogger(__name__)

try:  # fx internals (torch 2.14 has them); without any of them, tracing uses fx's own patching
    from torch.fx._symbolic_trace import (
        _autowrap_check,
        _get_is_fx_tracing,
        _new_patcher,
        _patch_wrapped_functions,
        _set_is_fx_tracing,
    )

    _FX_INTERNALS = True
except ImportError:  # pragma: no cover - older torch
    _FX_INTERNALS = False

_ORIG_CALL: Callable[..., Any] = nn.Module.__call__
_ORIG_GETATTR: Callable[..., Any] = nn.Module.__getattr__
_MODULE_KEYS = frozenset(nn.Module().__dict__)  # nn.Module's own bookkeeping (hook dicts, _parameters, ...)
_NOT_CONSTANT = frozenset({bool, int, float, str, tuple, dict, OrderedDict, list, set, type(None)})  # most attributes


class _Active:
    """What the hooks need while a trace runs: the tracer, fx's parameter-proxy cache and the patcher."""

    __slots__ = ("param_cache", "patcher", "tracer")

    def __init__(self, tracer: fx.Tracer, patcher: Any) -> None:
        self.tracer = tracer
        self.patcher = patcher
        self.param_cache: dict[str, fx.Proxy] = {}


_ACTIVE: contextvars.ContextVar[_Active | None] = contextvars.ContextVar("redistribute_hooked_trace", default=None)


def _hooked_call(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    active = _ACTIVE.get()
    if active is None:  # nn.Module's own, whatever it is now (fx's patch, when fx's trace runs instead)
        return nn.Module.__call__(self, *args, **kwargs)

    def forward(*a: Any, **k: Any) -> Any:
        return _ORIG_CALL(self, *a, **k)

    tracer = active.tracer
    _autowrap_check(
        active.patcher, getattr(getattr(self, "forward", self), "__globals__", {}), tracer._autowrap_function_ids
    )
    return tracer.call_module(self, forward, args, kwargs)


def _hooked_getattr(self: nn.Module, name: str) -> Any:
    active = _ACTIVE.get()
    if active is None:
        return nn.Module.__getattr__(self, name)
    return active.tracer.getattr(name, _ORIG_GETATTR(self, name), active.param_cache)


_HOOKED: dict[type, type | None] = {}


def hooked_class(cls: type) -> type | None:
    """The cached hooked subclass of module class ``cls``, or ``None`` when it cannot be subclassed.

    Example:
        >>> sub = hooked_class(torch.nn.Conv2d)
        >>> issubclass(sub, torch.nn.Conv2d), sub.__name__, base_type(sub.__new__(sub))
        (True, 'Conv2d', <class 'torch.nn.modules.conv.Conv2d'>)
    """
    if cls in _HOOKED:
        return _HOOKED[cls]
    if not _FX_INTERNALS or cls.__dict__.get("_redistribute_base") is not None:
        return None
    namespace = {
        "__call__": _hooked_call,
        "__getattr__": _hooked_getattr,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "_redistribute_base": cls,
    }
    try:
        sub: type | None = types.new_class(cls.__name__, (cls,), {}, lambda ns: ns.update(namespace))
    except Exception as exc:  # a metaclass or __init_subclass__ that refuses: fx's own tracing handles it
        _logger.debug("cannot subclass %s for tracing (%s); using fx's patching", cls.__qualname__, exc)
        sub = None
    _HOOKED[cls] = sub
    return sub


def base_type(module: nn.Module) -> type:
    """The module's class as the user wrote it (its hooked subclass's base, or its own class)."""
    cls = type(module)
    base = cls.__dict__.get("_redistribute_base")
    return base if base is not None else cls


class _Graph(fx.Graph):
    """An ``fx.Graph`` whose ``create_node`` skips the scan of every argument for symbolic ints.

    fx walks each new node's arguments with pytree to warn about raw ``SymInt`` values; a meta trace has none.
    The node is created without arguments (no scan) and gets them right after, through the public setters.
    """

    def create_node(
        self,
        op: str,
        target: Any,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        type_expr: Any | None = None,
    ) -> fx.Node:
        node = super().create_node(op, target, None, None, name, type_expr)
        if args:
            node.args = args
        if kwargs:
            node.kwargs = kwargs
        return node


class LeanTracer(fx.Tracer):
    """``fx.Tracer`` with its per-node bookkeeping cut to what an analysed (never executed) graph needs.

    Each node keeps ``meta["nn_module_stack"]``; fx's deprecated ``node_name_to_scope`` table is not filled, and a
    leaf module's call skips the ``Scope`` context (two object copies per call) that only fills that table.
    Under ``torch.fx.traceback.preserve_node_meta()`` everything is done as fx does.
    """

    def create_node(
        self,
        kind: str,
        target: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None = None,
        type_expr: Any | None = None,
    ) -> fx.Node:
        if self.check_mutable_operations or self.record_stack_traces or fx_traceback.has_preserved_node_meta():
            return super().create_node(kind, target, args, kwargs, name, type_expr)
        node = self.graph.create_node(kind, target, args, kwargs, name, type_expr)
        if self.module_stack:
            node.meta["nn_module_stack"] = self.module_stack.copy()
        return node

    def call_module(self, m: nn.Module, forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        name = self.path_of_module(m)
        if not self.is_leaf_module(m, name) or fx_traceback.has_preserved_node_meta():
            return super().call_module(m, forward, args, kwargs)
        calls = self.num_calls.get(name, 0)
        key = f"{name}@{calls}" if calls else name
        self.module_stack[key] = (name, type(m))
        self.num_calls[name] = calls + 1
        try:
            return self.create_proxy("call_module", name, args, kwargs)
        finally:
            self.module_stack.popitem(last=True)


def all_hooked(modules: Iterable[nn.Module]) -> bool:
    """Whether every one of ``modules`` is an instance of a hooked subclass."""
    return all("_redistribute_base" in type(m).__dict__ for m in modules)


def trace_hooked(
    tracer: fx.Tracer, root: nn.Module, concrete_args: dict[str, Any] | None, paths: dict[nn.Module, str]
) -> fx.Graph:
    """``fx.Tracer.trace(root, concrete_args)`` for a root whose modules are all hooked (see :func:`all_hooked`);
    ``paths`` names each module of ``root`` (its first qualified name).

    The same steps as fx's ``trace`` (placeholders from the signature, constants collected from module
    attributes, ``torch.fx.wrap`` and autowrap functions patched, an output node), without assigning to
    ``nn.Module``.
    """
    previous = _get_is_fx_tracing()
    _set_is_fx_tracing(True)
    try:
        tracer.root = root
        fn = type(root).forward
        tracer.root_module_name = root._get_name()
        tracer.submodule_paths = paths
        tracer.graph = _Graph(tracer_cls=type(tracer))
        tracer.tensor_attrs = {}
        for mod, prefix in paths.items():  # tensors kept as plain attributes: fx's constants
            state = mod.__dict__
            for key in sorted(state.keys() - _MODULE_KEYS):  # sorted: one name per tensor, whatever the hash seed
                value = state[key]
                if type(value) not in _NOT_CONSTANT and isinstance(value, (torch.Tensor, torch.ScriptObject)):
                    tracer.tensor_attrs[value] = f"{prefix}.{key}" if prefix else key
        fn_globals = fn.__globals__
        fn, args = tracer.create_args_for_root(fn, True, concrete_args)
        with _new_patcher() as patcher:
            _patch_wrapped_functions(patcher)
            _autowrap_check(patcher, fn_globals, tracer._autowrap_function_ids)
            for module in tracer._autowrap_search:
                _autowrap_check(patcher, module.__dict__, tracer._autowrap_function_ids)
            token = _ACTIVE.set(_Active(tracer, patcher))
            try:
                tracer.create_node("output", "output", (tracer.create_arg(fn(*args)),), {})
            finally:
                _ACTIVE.reset(token)
        tracer.submodule_paths = None
    finally:
        _set_is_fx_tracing(previous)
    return tracer.graph
