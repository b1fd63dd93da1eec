"""One walk over a module tree: every qualified name, each module's first name, and tensor names by identity.

``named_modules``, ``named_parameters`` and ``named_buffers`` each walk the whole tree; tracing needs all three,
for the model and for its meta copy, and the walker and the graph need the names again. :func:`index_modules`
walks once, and :meth:`ModuleIndex.mapped` gives the copy's index from the original's without walking at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = ["ModuleIndex", "index_modules"]


@dataclass(frozen=True)
class ModuleIndex:
    """Names in a module tree.

    Attributes:
        modules: Every qualified name, aliases of a module registered twice included (as
            ``named_modules(remove_duplicate=False)``).
        paths: Each module's first qualified name (as ``named_modules()``).
        params: ``id`` of each parameter to its first qualified name (as ``named_parameters()``).
        buffers: ``id`` of each buffer to its first qualified name (as ``named_buffers()``).
        num_params: Elements in all parameters, each shared one counted once.
    """

    modules: dict[str, nn.Module]
    paths: dict[nn.Module, str]
    params: dict[int, str]
    buffers: dict[int, str]
    num_params: int = 0

    def mapped(self, memo: Mapping[int, Any]) -> ModuleIndex:
        """The index of a copy of the tree, given the copy's memo (``id`` of an original to its copy).

        Modules the copy has no counterpart for (the insides of a TorchScript module, whose copy is one black box)
        are left out.
        """
        return ModuleIndex(
            modules={n: memo[id(m)] for n, m in self.modules.items() if id(m) in memo},
            paths={memo[id(m)]: n for m, n in self.paths.items() if id(m) in memo},
            params={id(memo[k]): n for k, n in self.params.items()},
            buffers={id(memo[k]): n for k, n in self.buffers.items()},
            num_params=self.num_params,
        )


def index_modules(root: nn.Module) -> ModuleIndex:
    """Index ``root`` in one walk.

    Example:
        >>> import torch
        >>> idx = index_modules(torch.nn.Sequential(torch.nn.Linear(2, 3)))
        >>> sorted(idx.modules), sorted(idx.params.values())
        (['', '0'], ['0.bias', '0.weight'])
    """
    modules = dict(root.named_modules(remove_duplicate=False))
    paths: dict[nn.Module, str] = {}
    params: dict[int, str] = {}
    buffers: dict[int, str] = {}
    num_params = 0
    for name, m in modules.items():
        if m in paths:  # an alias: its tensors were named under the first name
            continue
        paths[m] = name
        prefix = f"{name}." if name else ""
        for key, p in m._parameters.items():
            if p is not None and id(p) not in params:
                params[id(p)] = prefix + key
                num_params += p.numel()
        for key, b in m._buffers.items():
            if b is not None and id(b) not in buffers:
                buffers[id(b)] = prefix + key
    return ModuleIndex(modules=modules, paths=paths, params=params, buffers=buffers, num_params=num_params)
