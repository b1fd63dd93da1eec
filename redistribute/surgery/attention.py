"""Surgery of registered attention modules: head attributes and query temperature follow the new head width.

The classes and their :class:`~redistribute.groups.attention.HeadSpec` are registered in
:mod:`redistribute.groups.attention` (whose docstring gives the rules); :func:`resize_heads` is the handler that
surgery uses for every registered class.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..groups.attention import HeadSpec, spec_of
from ..groups.uses import LayerUse

__all__ = ["resize_heads"]

_logger = logging.getLogger(__name__)


def resize_heads(m: nn.Module, use: LayerUse, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None) -> None:
    """Resize handler of a registered attention module: ``out_idx`` maps its head channels (``-1``: new)."""
    spec = spec_of(type(m))
    if spec is None or out_idx is None:
        return
    old = sum(s.size for s in use.out_layout or ())
    new = int(out_idx.numel())
    heads = int(getattr(m, spec.heads))
    if spec.head_dim is not None:
        setattr(m, spec.head_dim, new)
    if spec.attn_dim is not None:
        setattr(m, spec.attn_dim, heads * new)
    if spec.scale is not None and old and new:
        setattr(m, spec.scale, float(getattr(m, spec.scale)) * (old / new) ** 0.5)
        _keep_temperature(m, spec, out_idx, heads, (new / old) ** 0.5)


def _keep_temperature(m: nn.Module, spec: HeadSpec, out_idx: torch.Tensor, heads: int, factor: float) -> None:
    """Multiply the queries by ``factor`` and zero the new query channels (see module docstring)."""
    norm = getattr(m, spec.q_norm, None) if spec.q_norm is not None else None
    if isinstance(norm, nn.Module) and not isinstance(norm, nn.Identity):
        params = [p for p in norm.parameters(recurse=False) if p.ndim == 1 and p.shape[0] == out_idx.numel()]
        for p in params:  # LayerNorm/RmsNorm: scaling weight and bias scales the normalised queries
            p.data.mul_(factor)
        if not params:
            _logger.info("%s: query norm without affine parameters, softmax temperature changes", type(m).__name__)
        return
    lin = getattr(m, spec.q, None) if spec.q is not None else None
    rows = heads * int(out_idx.numel())
    if not isinstance(lin, nn.Linear) or lin.out_features < rows:
        _logger.info("%s: no query projection to rescale, softmax temperature changes", type(m).__name__)
        return
    fresh = (out_idx < 0).nonzero().flatten()
    new_rows = (torch.arange(heads).view(-1, 1) * out_idx.numel() + fresh.view(1, -1)).flatten()
    for t in (lin.weight, lin.bias):
        if t is None:
            continue
        t.data[:rows].mul_(factor)
        t.data[new_rows.to(t.device)] = 0.0
