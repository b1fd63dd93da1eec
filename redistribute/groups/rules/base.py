"""The contract a channel rule is written against: the walker's interface and the three rule registries.

Rules live below the walker: they see it only through the :class:`Walker` protocol defined here, so no rule module
imports :mod:`redistribute.groups.walk` (which imports the rules to register them).

Three registries, each a decorator plus a dict, dispatch on *types*, never on substrings of names:

* :data:`MODULE_RULES` keyed by ``nn.Module`` subclass (looked up along the MRO);
* :data:`FUNCTION_RULES` keyed by the function object of a ``call_function`` node;
* :data:`METHOD_RULES` keyed by the tensor method name of a ``call_method`` node.

A rule receives the walker and the node, and returns the output's dims: one
:data:`~redistribute.groups.spaces.Layout` per tensor dimension, a list of those for tuple outputs, or ``None`` for
non-tensor values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from torch import fx, nn

from ...tracing.behaviour import RULED
from ..spaces import Layout, SpaceTable
from ..uses import LayerUse

__all__ = [
    "FUNCTION_RULES", "METHOD_RULES", "MODULE_RULES", "Dims", "Walker", "function_rule", "method_rule", "module_rule",
    "shape_of",
]  # fmt: skip


class Walker(Protocol):
    """What a rule may ask of the walker (implemented by :class:`redistribute.groups.walk.Walker`)."""

    table: SpaceTable
    uses: list[LayerUse]
    modules: dict[str, nn.Module]
    heads: dict[str, tuple[Layout, str, int]]

    @property
    def order(self) -> int: ...
    def dims(self, arg: Any) -> Any: ...
    def group_policy(self, name: str) -> str: ...
    def unknown(self, node: fx.Node, reason: str | None = None) -> Any: ...
    def keep_dims(self, node: fx.Node, src: Any) -> Any: ...
    def broadcast(self, node: fx.Node, srcs: Sequence[fx.Node]) -> Any: ...
    def use_layer(self, node: fx.Node, kind: str, in_l: Layout, out_l: Layout, mode: str = "none") -> None: ...
    def use_member(self, node: fx.Node, kind: str, layout: Layout, dim: int) -> None: ...
    def flops_linear(self, node: fx.Node, in_l: Layout, out_l: Layout) -> None: ...
    def require_multiple(self, layout: Layout, multiple: int, why: str) -> None: ...
    def mark_cross_channel(self, layout: Layout, node: fx.Node) -> None: ...
    def require_block(self, layout: Layout, block: int, why: str) -> None: ...
    def tie(self, dep: Layout, src: Layout, num: int, den: int, why: str) -> None: ...
    def reshape(self, node: fx.Node, src: Any) -> Any: ...
    def index(self, node: fx.Node, x: tuple[Layout, ...], idx: Any) -> Any: ...
    def split_layout(self, node: fx.Node, layout: Layout, sizes: list[int]) -> list[Layout]: ...


Dims = Any  # tuple[Layout, ...] | list[Dims] | None
Rule = Callable[[Walker, fx.Node], Dims]
ModuleRule = Callable[[Walker, fx.Node, nn.Module], Dims]

MODULE_RULES: dict[type, ModuleRule] = {}
FUNCTION_RULES: dict[Any, Rule] = {}
METHOD_RULES: dict[str, Rule] = {}
#: Rules for call targets by their type, when no rule names the target itself (TorchScript functions).
FUNCTION_TYPE_RULES: dict[type, Rule] = {}


def module_rule(*types: type) -> Callable[[ModuleRule], ModuleRule]:
    """Register a rule for modules of these types (and their subclasses that do not define their own ``forward``;
    see :func:`redistribute.tracing.behaviour.lookup`)."""

    def deco(fn: ModuleRule) -> ModuleRule:
        for t in types:
            MODULE_RULES[t] = fn
            RULED.add(t)
        return fn

    return deco


def function_rule(*targets: Any) -> Callable[[Rule], Rule]:
    """Register a rule for ``call_function`` nodes with these targets."""

    def deco(fn: Rule) -> Rule:
        for t in targets:
            FUNCTION_RULES[t] = fn
        return fn

    return deco


def function_type_rule(*types: type) -> Callable[[Rule], Rule]:
    """Register a rule for every call target of these types (checked after :data:`FUNCTION_RULES`)."""

    def deco(fn: Rule) -> Rule:
        for t in types:
            FUNCTION_TYPE_RULES[t] = fn
        return fn

    return deco


def method_rule(*names: str) -> Callable[[Rule], Rule]:
    """Register a rule for ``call_method`` nodes calling these tensor methods."""

    def deco(fn: Rule) -> Rule:
        for n in names:
            METHOD_RULES[n] = fn
        return fn

    return deco


def shape_of(node: fx.Node) -> tuple[int, ...]:
    """The shape of a node's (tensor) value."""
    return tuple(node.meta["val"].shape)
