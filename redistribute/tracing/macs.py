"""Multiply-accumulates of code run on the meta device, counted the way the cost model counts them.

The tracer runs a module or function on meta tensors when no shape rule knows its output (black boxes,
fx-wrapped functions such as torchvision's ``shifted_window_attention``). :class:`CountMacs` counts what such a
run costs under the cost model's convention (:mod:`redistribute.planning.cost`): convolutions, ``mm``, ``addmm``,
``bmm`` and scaled-dot-product attention, halved from ``FlopCounterMode``'s formulas, bias excluded. The walker
then costs that node as a constant, so black boxes are never left out of the FLOPs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["CountMacs"]


def _formulas() -> dict[Any, Any]:
    from torch.utils import flop_counter as fc  # lazy: keeps torch's flop counter out of import time

    aten = torch.ops.aten
    ops = [
        aten.convolution,
        aten._convolution,
        aten.mm,
        aten.addmm,
        aten.bmm,
        aten._scaled_dot_product_flash_attention,
        aten._scaled_dot_product_efficient_attention,
    ]
    table = {op: fc.flop_registry[op] for op in ops if op in fc.flop_registry}
    cpu = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu is not None:  # no formula in torch: flash attention's fits (see study.flop_counters.sdpa_on_cpu)
        table[cpu] = lambda q, k, v, *_, out_val=None, **__: fc.sdpa_flop_count(q.shape, k.shape, v.shape)
    return table


_TABLE: dict[Any, Any] | None = None


class CountMacs(TorchDispatchMode):
    """Count multiply-accumulates (``total``) of the aten ops run inside the context, on any device.

    Example:
        >>> with CountMacs() as c:
        ...     _ = torch.empty(1, 8, device="meta") @ torch.empty(8, 4, device="meta")
        >>> c.total
        32
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        global _TABLE
        if _TABLE is None:
            _TABLE = _formulas()
        self._table = _TABLE

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = self._table.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out)) // 2
        return out
