"""TorchScript parts of a model: fx cannot trace into them, so they become black boxes.

A ``torch.jit.script`` submodule cannot be copied attribute by attribute; its meta copy is a
:class:`ScriptedStandIn`. A scripted function called in a forward is wrapped by the tracer into one node
(:func:`script_functions` finds them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["ScriptedStandIn", "script_functions"]

_META = torch.device("meta")


class ScriptedStandIn(nn.Module):
    """The meta copy of a TorchScript module (``torch.jit.script``), which cannot be copied attribute by attribute.

    It holds meta copies of the module's parameters and buffers (so counts stay right; dots in their names become
    ``__``) and computes its output by running the original on zeros on the original's device, returning meta
    tensors of the same shapes. The tracer keeps it as a black box.
    """

    def __init__(self, original: torch.jit.ScriptModule, memo: dict[int, Any]) -> None:
        super().__init__()
        self.__dict__["_original"] = original  # not a submodule: its tensors stay out of the meta copy
        self.__dict__["original_type"] = getattr(original, "original_name", type(original).__name__)
        for name, t in original.named_parameters():
            p = memo.get(id(t))
            self.register_parameter(
                name.replace(".", "__"),
                p if p is not None else nn.Parameter(torch.empty(t.shape, dtype=t.dtype, device=_META)),
            )
        for name, t in original.named_buffers():
            b = memo.get(id(t))
            self.register_buffer(
                name.replace(".", "__"), b if b is not None else torch.empty(t.shape, dtype=t.dtype, device=_META)
            )

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        original = self.__dict__["_original"]
        device = next((t.device for t in original.parameters()), torch.device("cpu"))

        def real(v: Any) -> Any:
            return torch.zeros(v.shape, dtype=v.dtype, device=device) if isinstance(v, torch.Tensor) else v

        def meta(v: Any) -> Any:
            return torch.empty(v.shape, dtype=v.dtype, device=_META) if isinstance(v, torch.Tensor) else v

        with torch.no_grad():
            out = original(*torch.utils._pytree.tree_map(real, args), **torch.utils._pytree.tree_map(real, kwargs))
        return torch.utils._pytree.tree_map(meta, out)


def script_functions(modules: Iterable[nn.Module]) -> list[Any]:
    """TorchScript functions (``torch.jit.script`` on a function) named in the globals of the modules' forwards.

    fx cannot trace into them (they take tensors, not proxies); wrapped, each call becomes one node that the
    walker keeps as a black box.
    """
    found: dict[int, Any] = {}
    for cls in {type(m) for m in modules}:
        fn_globals = getattr(getattr(cls, "forward", None), "__globals__", {})
        for value in fn_globals.values():
            if isinstance(value, torch.jit.ScriptFunction):
                found[id(value)] = value
    return list(found.values())
