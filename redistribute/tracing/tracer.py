"""A ``torch.fx`` tracer whose proxies carry meta values.

Every node the tracer emits gets ``node.meta["val"]``: a meta tensor for tensor values, the concrete Python value
for everything else (shapes, ints, bools). Three things follow:

* shapes are known for every node without a second pass;
* data-dependent control flow on shapes (``if x.shape[-1] < 7``) is resolved at trace time with the concrete
  values, so timm's "no-trace" modules (VGG's ``ConvMlp``, ``NormFreeBlock``) can be traced *through*;
* ``x.shape[1]`` still becomes graph nodes, so a reshape fed by the tensor's own size is told apart from a
  hard-coded one.

The graph is only analysed, never executed: surgery edits the real modules. A module whose forward cannot be
traced at any level is emitted as one opaque ``call_module`` node (a black box) and reported.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from ..errors import TraceError
from .behaviour import lookup
from .clone import meta_copy
from .hooked import LeanTracer, all_hooked, base_type, hooked_class, trace_hooked
from .index import ModuleIndex, index_modules
from .input_size import check_one_input
from .known import is_unknown, unknown_wins
from .macs import CountMacs
from .scripted import ScriptedStandIn, script_functions
from .shape_rules import meta_value

__all__ = ["TracedModel", "trace_model"]

_logger = logging.getLogger(__name__)


def _timm_notrace() -> tuple[set[type], list[Any]]:
    try:
        from timm.layers import get_notrace_functions, get_notrace_modules
    except ImportError:  # pragma: no cover - timm is a dependency, but keep plain-torch use working
        return set(), []
    return set(get_notrace_modules()), list(get_notrace_functions())


def _data_dependent(node: fx.Node, what: str) -> TraceError:
    return TraceError(
        f"the forward needs {what} of a tensor at node '{node.name}' (data-dependent control flow), which "
        "tracing on the meta device cannot know. Hint: make it depend on shapes only, or move it into a submodule, "
        "which is then kept as a black box"
    )


def _concrete(node: fx.Node, what: str) -> Any:
    """The node's meta value as a Python value; a meta tensor's values are unknown."""
    value = node.meta.get("val")
    if what != "len" and is_unknown(value):
        raise _data_dependent(node, what)
    return value


class _MetaProxy(fx.Proxy):
    """A proxy that answers Python's questions (len, index, bool, iter) from its concrete meta value."""

    def _value(self) -> Any:
        return self.node.meta.get("val")

    def __len__(self) -> int:
        return len(_concrete(self.node, "len"))

    def __index__(self) -> int:
        return int(_concrete(self.node, "an int"))

    def __int__(self) -> int:
        return int(_concrete(self.node, "an int"))

    def __float__(self) -> float:
        return float(_concrete(self.node, "a float"))

    def __iter__(self) -> Iterator[fx.Proxy]:
        return (self[i] for i in range(len(self._value())))

    def __getattr__(self, k: str) -> fx.proxy.Attribute:
        return _MetaAttribute(self, k)


class _MetaAttribute(fx.proxy.Attribute, _MetaProxy):
    """``x.shape`` and friends: unpacking them uses the meta value, not fx's bytecode inspection."""


_PROXY_TYPES = frozenset({_MetaProxy, _MetaAttribute, fx.Proxy, fx.proxy.ParameterProxy, fx.proxy.Attribute})
_PLAIN_ARGS = frozenset({int, float, bool, str, type(None), type(...), torch.dtype, torch.device, torch.memory_format})


class _Tracer(LeanTracer):
    """Traces a meta copy of a model, computing each node's value as it goes."""

    def __init__(
        self, model: nn.Module, index: ModuleIndex, leaf_types: frozenset[type], autowrap: list[Any], hooked: bool
    ) -> None:
        fns = tuple(f for f in autowrap if callable(f))
        # No autowrapped modules: fx would patch every function of `math` on each trace; our proxies answer
        # float()/int() from their meta values, so math functions on shapes just work.
        super().__init__(autowrap_modules=(), autowrap_functions=fns, param_shapes_constant=True)
        self._model = model
        # names from one walk of the tree (see _index), not get_submodule's getattr walk per lookup
        self._modules_by_name = index.modules
        self._paths = index.paths
        self._param_names = index.params
        self._buffer_names = index.buffers
        self._hooked = hooked
        self._leaf_types = leaf_types
        self._leaf_map = dict.fromkeys(leaf_types, True)
        self._notrace, _ = _timm_notrace()
        self.forced_leaves: dict[str, str] = {}
        self._leaf_by_type: dict[type, bool] = {}
        self.module_outputs: dict[str, fx.Node] = {}
        self.inlined_calls: list[tuple[str, fx.Node]] = []
        self.marks: dict[str, fx.Node] = {}
        self.meta_input: torch.Tensor | None = None
        self._evaluating = False
        self._placeholders = 0

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        """fx's ``getattr`` with the tensor's qualified name looked up in a dict, not found by a linear scan.

        fx walks ``root.named_parameters()`` on every access of a parameter inside a forward (layer scale,
        position embeddings, class tokens): quadratic in the model size.
        """
        if self._evaluating or not isinstance(attr_val, torch.Tensor):
            return attr_val
        name = self._param_names.get(id(attr_val)) if isinstance(attr_val, nn.Parameter) else None
        if name is None and self.proxy_buffer_attributes:
            name = self._buffer_names.get(id(attr_val))
        if name is None:
            return attr_val
        if name not in parameter_proxy_cache:
            factory = (
                (lambda node: fx.proxy.ParameterProxy(self, node, name, attr_val))  # type: ignore[arg-type]
                if self.param_shapes_constant
                else None
            )
            parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {}, proxy_factory_fn=factory)
        return parameter_proxy_cache[name]

    def create_arg(self, a: Any) -> Any:
        """fx's ``create_arg`` with parameters and buffers found by identity, not by scanning the whole model.

        Proxies, plain scalars and plain tuples/lists of them (nearly every argument) take a fast path by exact type.
        """
        kind = type(a)
        if kind in _PROXY_TYPES:
            return a.node
        if kind in _PLAIN_ARGS:
            return a
        if kind is tuple:
            return tuple([self.create_arg(x) for x in a])
        if kind is list:
            return [self.create_arg(x) for x in a]
        if isinstance(a, torch.Tensor):
            name = self._param_names.get(id(a)) if isinstance(a, nn.Parameter) else self._buffer_names.get(id(a))
            if name is not None:
                return self.create_node("get_attr", name, (), {})
        return super().create_arg(a)

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        """fx's ``trace``; without patching ``nn.Module`` when ``root`` is built of hooked classes."""
        if self._hooked and root is self._model:
            return trace_hooked(self, root, concrete_args, self._paths)
        return super().trace(root, concrete_args)

    # -- leaves ---------------------------------------------------------------------------------------------
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.forced_leaves:
            return True
        if isinstance(m, ScriptedStandIn):
            self.forced_leaves[module_qualified_name] = f"it is TorchScript ({m.original_type}): a black box"
            return True
        leaf = self._leaf_by_type.get(type(m))  # the rest depends on the class only
        if leaf is None:
            leaf = self._leaf_by_type[type(m)] = self._class_is_leaf(m, module_qualified_name)
        return leaf

    def _class_is_leaf(self, m: nn.Module, module_qualified_name: str) -> bool:
        if lookup(self._leaf_map, type(m)):
            return True
        if base_type(m) in self._notrace:
            return False  # try to trace through timm's no-trace blocks; fall back to a black box below
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._evaluating:  # computing a leaf's meta value: run it plainly, record nothing
            return forward(*args, **kwargs)
        name = self.path_of_module(m)
        if self.is_leaf_module(m, name):
            out = super().call_module(m, forward, args, kwargs)
        else:
            last = self.graph._root._prev  # the node before this module's first node
            stack_len = len(self.module_stack)
            try:
                out = super().call_module(m, forward, args, kwargs)
            except Exception as exc:  # any failure inside makes this module a black box
                while len(self.module_stack) > stack_len:
                    self.module_stack.popitem(last=True)
                self._erase_after(last)
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                _logger.info("module %r (%s) cannot be traced through, kept opaque: %s", name, type(m).__name__, reason)
                self.forced_leaves[name] = reason
                out = super().call_module(m, forward, args, kwargs)
        if isinstance(out, fx.Proxy):
            self.module_outputs[name] = out.node
            if not self.is_leaf_module(m, name) and next(m.children(), None) is None:
                self.inlined_calls.append((name, out.node))  # a childless module traced through: its output
        return out

    def _erase_after(self, last: fx.Node) -> None:
        nodes = list(self.graph.nodes)
        idx = nodes.index(last) if last is not self.graph._root else -1
        for node in reversed(nodes[idx + 1 :]):
            self.graph.erase_node(node)

    # -- values ---------------------------------------------------------------------------------------------
    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _MetaProxy(node, self)

    def create_proxy(
        self, kind: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *a: Any, **k: Any
    ) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, *a, **k)
        node = proxy.node
        try:
            node.meta["val"] = self._compute(node)
        except Exception as exc:
            where = f"node '{node.name}' ({kind} {getattr(target, '__name__', target)})"
            raise TraceError(
                f"cannot evaluate {where} on the meta device: {type(exc).__name__}: {exc}".splitlines()[0]
            ) from exc
        return proxy

    def _meta_of(self, a: Any) -> Any:
        """``a`` with every node (in tuples, lists, dicts and slices) replaced by its meta value."""
        kind = type(a)
        if kind in _PLAIN_ARGS:
            return a
        if kind is tuple:
            return tuple([self._meta_of(x) for x in a])
        if isinstance(a, list):  # fx stores lists as immutable_list
            return [self._meta_of(x) for x in a]
        if isinstance(a, dict):
            return {k: self._meta_of(v) for k, v in a.items()}
        if kind is slice:
            return slice(self._meta_of(a.start), self._meta_of(a.stop), self._meta_of(a.step))
        if isinstance(a, tuple):  # torch.Size, named tuples
            items = [self._meta_of(x) for x in a]
            return kind(*items) if hasattr(a, "_fields") else kind(items)
        node = a.node if isinstance(a, fx.Proxy) else a
        if not isinstance(node, fx.Node):
            return a
        if "val" not in node.meta and node.op == "get_attr":  # buffers and constants fx adds via create_arg
            node.meta["val"] = self._attr(str(node.target))
        return node.meta.get("val")

    def _attr(self, target: str) -> Any:
        self._evaluating = True
        try:
            obj: Any = self._model
            for atom in target.split("."):
                obj = getattr(obj, atom)
            return obj
        finally:
            self._evaluating = False

    def _compute(self, node: fx.Node) -> Any:
        args = self._meta_of(node.args)
        kwargs = self._meta_of(node.kwargs) if node.kwargs else {}
        if node.op == "placeholder":  # the first input is the traced tensor; the others keep their defaults
            self._placeholders += 1
            if self._placeholders == 1 and self.meta_input is not None:
                return self.meta_input
            return args[0] if args else None
        module = self._modules_by_name[str(node.target)] if node.op == "call_module" else None
        known, value = meta_value(node.op, node.target, module, args, kwargs)  # type: ignore[arg-type]
        if known:
            return value
        if node.op == "get_attr":
            return self._attr(str(node.target))
        args, kwargs = unknown_wins(args, kwargs)
        if node.op in ("call_function", "call_method") or module is not None:
            self._evaluating = True
            try:
                with CountMacs() as macs:  # what the run costs, should the walker keep it as a black box
                    if node.op == "call_function":
                        out = node.target(*args, **kwargs)  # type: ignore[operator]
                    elif node.op == "call_method":
                        out = getattr(args[0], str(node.target))(*args[1:], **kwargs)
                    else:
                        out = module(*args, **kwargs)  # type: ignore[misc]
            finally:
                self._evaluating = False
            if macs.total:
                node.meta["macs"] = macs.total
            return out
        return None

    def to_bool(self, obj: fx.Proxy) -> bool:
        return bool(_concrete(obj.node, "the truth value"))

    def iter(self, obj: fx.Proxy) -> Iterator[Any]:
        return (obj[i] for i in range(len(obj.node.meta.get("val"))))


@dataclass(frozen=True)
class TracedModel:
    """The result of tracing: the graph (nodes carry ``meta["val"]``) and what the tracer learnt.

    Attributes:
        graph: The ``torch.fx.Graph``; node targets name modules of the original model.
        input_shape: The shape of the traced input, batch included.
        index: The names of the *original* model's modules and tensors.
        opaque: Qualified names of modules kept as black boxes, mapped to the reason.
        module_outputs: For every module called (leaf or not), the node holding its last output.
        marks: Named points of the forward (``"features"``: the output of ``forward_features``).
        inlined_calls: Childless modules traced through rather than kept as leaves, with their output node.
    """

    graph: fx.Graph
    input_shape: tuple[int, ...]
    index: ModuleIndex
    opaque: dict[str, str] = field(default_factory=dict)
    module_outputs: dict[str, fx.Node] = field(default_factory=dict)
    marks: dict[str, fx.Node] = field(default_factory=dict)
    inlined_calls: tuple[tuple[str, fx.Node], ...] = ()


def _eval(modules: Iterable[nn.Module]) -> None:
    """``root.eval()`` for a tree given as its modules, without ``nn.Module.__setattr__`` on each."""
    for m in modules:
        if type(m).train is nn.Module.train:
            m.__dict__["training"] = False
        else:  # an override (LeViT's attention-bias cache): let it run
            m.train(False)


def trace_model(model: nn.Module, input_shape: tuple[int, ...], leaf_types: frozenset[type]) -> TracedModel:
    """Trace ``model`` on the meta device at ``input_shape`` (batch included). The model is not touched."""
    index = index_modules(model)
    memo: dict[int, Any] = {}
    meta = meta_copy(model, hooked_class, memo)
    meta_index = index.mapped(memo)
    _eval(meta_index.paths)
    _, autowrap = _timm_notrace()
    autowrap = [*autowrap, *script_functions(index.modules.values())]
    tracer = _Tracer(meta, meta_index, leaf_types, autowrap, all_hooked(meta_index.paths))
    tracer.meta_input = torch.empty(input_shape, device="meta")
    forward_features = getattr(meta, "forward_features", None)
    if callable(forward_features) and not isinstance(forward_features, nn.Module):

        def _marked_features(*args: Any, **kwargs: Any) -> Any:
            out = forward_features(*args, **kwargs)
            if isinstance(out, fx.Proxy):
                tracer.marks["features"] = out.node
            return out

        meta.forward_features = _marked_features  # type: ignore[method-assign]  # our own copy only
    sig = inspect.signature(meta.forward)
    params = list(sig.parameters.values())
    check_one_input(model, params)
    concrete = {p.name: p.default for p in params[1:] if p.default is not inspect.Parameter.empty}
    try:
        graph = tracer.trace(meta, concrete_args=concrete or None)
    except TraceError:
        raise
    except Exception as exc:
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
        required = [p for p in params[1:] if p.default is inspect.Parameter.empty and p.kind <= p.POSITIONAL_OR_KEYWORD]
        if "not installed as a submodule" in msg:
            hint = "create submodules in __init__, not inside forward"
        elif required:
            hint = f"pass a model whose forward takes one tensor (this one also needs {', '.join(p.name for p in required)})"
        else:
            hint = "run with --debug for the traceback, and wrap the failing part in a submodule (kept as a black box)"
        raise TraceError(f"cannot trace {type(model).__name__}: {msg}. Hint: {hint}") from exc
    return TracedModel(
        graph=graph,
        input_shape=tuple(input_shape),
        opaque=dict(tracer.forced_leaves),
        module_outputs=dict(tracer.module_outputs),
        marks=dict(tracer.marks),
        inlined_calls=tuple(tracer.inlined_calls),
        index=index,
    )
