"""Analytic cost of a model as a polynomial in its group widths: FLOPs, parameters, activation memory.

Conventions (the ones behind "ResNet50 = 4.1 GFLOPs"):

* **FLOPs** are multiply-accumulates of convolutions and linear layers (and functional ``F.linear`` and matrix
  products such as attention's ``q @ k^T`` and ``attn @ v``), bias excluded, batch 1, at the traced input size.
  ``F.scaled_dot_product_attention`` costs its two products, as the explicit path of the same module does. This
  equals ``torch.utils.flop_counter.FlopCounterMode``'s convolution + mm + addmm + bmm count divided by two (on
  the CPU, ``FlopCounterMode`` needs the flash-attention formula for the SDPA kernel: see ``tests/conftest.py``).
  Grouped and depthwise convs are costed with their width-dependent group count; attention head widths enter
  through the layouts of the projections (``3 * heads`` copies of the head group) and of the products.
* **params** equal ``sum(p.numel() for p in model.parameters())`` of the rebuilt model: a module called several
  times (weight sharing) counts once, its FLOPs once per call.
* **memory** is activation memory: the bytes of every leaf module's output at batch 1 in float32, the quantity
  a forward hook on each leaf module would add up.

Evaluating a plan costs microseconds: no model is rebuilt.

Example:
    >>> import timm
    >>> from redistribute import trace
    >>> g = trace(timm.create_model("resnet50"))
    >>> round(CostModel(g).flops(g.base_widths()) / 1e9, 2)
    4.09
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..groups.graph import ChannelGraph
from ..groups.spaces import Layout
from ..groups.uses import LayerUse

__all__ = ["METRICS", "CostModel", "CostReport"]

METRICS = ("flops", "params", "memory")

# A linear expression in group widths: (constant, ((coef, group id), ...)).
_Expr = tuple[int, tuple[tuple[int, int], ...]]
# A term: coef * prod(expr values).
_Term = tuple[float, tuple[_Expr, ...]]


def _expr(layout: Layout | None) -> _Expr:
    const, parts = 0, []
    for s in layout or ():
        if s.space is None:
            const += s.size
        else:
            parts.append((s.repeat, s.space))
    return const, tuple(parts)


def _value(expr: _Expr, widths: Mapping[int, int]) -> int:
    const, parts = expr
    return const + sum(c * widths[g] for c, g in parts)


def _weight_terms(u: LayerUse, positions: int, applied: tuple[_Expr, ...] = ()) -> list[_Term]:
    """Multiply-accumulates of a conv/linear weight applied ``positions`` times ``prod(applied)``."""
    cin, cout = _expr(u.in_layout), _expr(u.out_layout)
    if u.kind != "conv":
        return [(float(positions), (cin, cout, *applied))]
    if u.mode == "depthwise":
        return [(float(positions * u.kernel), (cout,))]
    if u.mode == "width":  # the group width (input channels per group) stays; the group count follows the width
        return [(float(positions * u.kernel * (u.in_shape[1] // u.groups)), (cout,))]
    return [(positions * u.kernel / u.groups, (cin, cout))]


def _flops_terms(u: LayerUse) -> list[_Term]:
    if u.kind in ("conv", "linear", "flops"):
        return _weight_terms(u, u.positions, tuple(_expr(lay) for lay in u.position_layouts))
    return []


def _params_terms(u: LayerUse) -> list[_Term]:
    if u.kind in ("conv", "linear"):
        terms = _weight_terms(u, 1)
        if u.bias:
            terms.append((1.0, (_expr(u.out_layout),)))
        if u.per_channel:  # other per-output-channel parameters (NFNet's gain)
            terms.append((float(u.per_channel), (_expr(u.out_layout),)))
        return terms
    if u.kind == "norm" and u.per_channel:
        return [(float(u.per_channel), (_expr(u.out_layout),))]
    return []


@dataclass(frozen=True)
class CostReport:
    """Cost of one set of widths.

    Attributes:
        flops: Multiply-accumulates at batch 1 (see module docstring).
        params: Number of parameters.
        memory: Activation memory in bytes at batch 1, float32.
    """

    flops: float
    params: float
    memory: float

    def get(self, metric: str) -> float:
        return float(getattr(self, metric))

    def ratios(self, base: CostReport) -> dict[str, float]:
        return {m: self.get(m) / base.get(m) if base.get(m) else float("nan") for m in METRICS}


class CostModel:
    """Evaluates FLOPs, params and activation memory of any widths over a :class:`ChannelGraph`."""

    def __init__(self, graph: ChannelGraph) -> None:
        self.graph = graph
        self._terms: dict[str, list[_Term]] = {"flops": [], "params": [], "memory": []}
        params_by_tensor: dict[str, list[LayerUse]] = {}
        costed: set[str] = set()  # a module called several times (weight sharing) holds its parameters once
        for u in graph.uses:
            self._terms["flops"].extend(_flops_terms(u))
            if u.kind in ("conv", "linear", "norm") and u.module not in costed:
                costed.add(u.module)
                self._terms["params"].extend(_params_terms(u))
            if u.kind == "param" and u.per_channel:
                params_by_tensor.setdefault(u.module, []).append(u)
        for _name, uses in params_by_tensor.items():
            shape = uses[0].out_shape
            spaced = {u.dim: u.out_layout for u in uses}
            coef = math.prod(s for d, s in enumerate(shape) if d not in spaced)
            self._terms["params"].append((float(coef), tuple(_expr(lay) for lay in spaced.values())))
        for _node, _module, dims, _shape in graph.outputs:
            const = 1
            exprs = []
            for lay in dims:
                e = _expr(lay)
                if e[1]:
                    exprs.append(e)
                else:
                    const *= e[0]
            self._terms["memory"].append((4.0 * const, tuple(exprs)))
        base = graph.base_widths()
        self._params_offset = graph.base_params - self._eval("params", base)
        self._by_group: dict[str, dict[int, list[_Term]]] = {}
        for metric, terms in self._terms.items():
            index: dict[int, list[_Term]] = {}
            for term in terms:
                for gid in {g for e in term[1] for _, g in e[1]}:
                    index.setdefault(gid, []).append(term)
            self._by_group[metric] = index

    def delta(self, metric: str, widths: dict[int, int], gid: int, new_width: int) -> float:
        """Change of ``metric`` when group ``gid`` alone goes to ``new_width`` (ties not followed)."""
        terms = self._by_group[metric].get(gid, [])
        old = widths[gid]
        before = sum(c * math.prod(_value(e, widths) for e in es) for c, es in terms)
        widths[gid] = new_width
        try:
            after = sum(c * math.prod(_value(e, widths) for e in es) for c, es in terms)
        finally:
            widths[gid] = old
        return after - before

    def _eval(self, metric: str, widths: Mapping[int, int]) -> float:
        total = 0.0
        for coef, exprs in self._terms[metric]:
            v = coef
            for e in exprs:
                v *= _value(e, widths)
            total += v
        return total

    def flops(self, widths: Mapping[int, int]) -> float:
        return self._eval("flops", widths)

    def params(self, widths: Mapping[int, int]) -> float:
        return self._eval("params", widths) + self._params_offset

    def memory(self, widths: Mapping[int, int]) -> float:
        return self._eval("memory", widths)

    def evaluate(self, metric: str, widths: Mapping[int, int]) -> float:
        if metric == "flops":
            return self.flops(widths)
        if metric == "params":
            return self.params(widths)
        if metric == "memory":
            return self.memory(widths)
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")

    def report(self, widths: Mapping[int, int]) -> CostReport:
        return CostReport(self.flops(widths), self.params(widths), self.memory(widths))
