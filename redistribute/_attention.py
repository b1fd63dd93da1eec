"""Attention modules whose head width can change: what they store about their heads, and how to update it.

The walker (see :mod:`redistribute._heads`) maps a reshape that splits a projection into heads,
``(B, N, 3*H*D) -> (B, N, 3, H, D)``, only inside a module whose class is registered here: the head count ``H``
is kept and the per-head width ``D`` becomes one channel group. Integer literals that fx baked into the graph
from the module's attributes (``self.head_dim``, ``self.attn_dim``) are accepted because surgery updates those
attributes; in any other module such a split keeps its group fixed, with the reason.

After surgery resizes the projections, the module's resize handler (registered with
:func:`~redistribute._handlers.register_handler`) sets the attributes named by its :class:`HeadSpec`:

* ``head_dim`` and ``attn_dim`` (= ``num_heads * head_dim``) to the new widths;
* ``scale`` to ``old_scale * sqrt(old_head_dim / new_head_dim)``, i.e. ``new_head_dim ** -0.5`` for the default
  scale: the value a freshly built model has, and the one ``F.scaled_dot_product_attention`` uses on its own when
  given no ``scale``, so the fused and the explicit paths of the module agree.

The softmax temperature of the *kept* channels does not change: the query rows of the projection (or, with a
query norm, its affine parameters) are multiplied by ``sqrt(new_head_dim / old_head_dim)``, which cancels the new
scale on the base channels. New head channels get zero query weights, so they add nothing to ``q . k`` while the
key and value rows train (the output projection already gives their values zero weights). A plan that only grows
head widths therefore keeps the function exactly when the module has no query norm; a query norm (``qk_norm``)
normalises across the grown channels, so there the function changes (as with LayerNorm over any grown group).

Example:
    >>> from torch import nn
    >>> @register_attention(HeadSpec(head_dim=None, attn_dim=None))
    ... class MyAttention(nn.Module):
    ...     ...
    >>> spec_of(MyAttention).scale
    'scale'
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ._handlers import register_handler
from ._uses import LayerUse

__all__ = ["HEAD_SPECS", "HeadSpec", "register_attention", "spec_of"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadSpec:
    """Where an attention class keeps its head geometry (attribute names; ``None``: it has no such attribute).

    Attributes:
        heads: Integer attribute with the head count (kept by surgery).
        head_dim: Integer attribute with the per-head width.
        attn_dim: Integer attribute with ``heads * head_dim``.
        scale: Float attribute with the softmax scale of ``q @ k^T``.
        q: The ``nn.Linear`` whose first ``heads * head_dim`` output rows are the queries (a fused ``qkv`` laid
            out as ``(3, heads, head_dim)``, or a separate query projection).
        q_norm: The norm applied to the queries over ``head_dim`` (``nn.Identity`` when unused).
    """

    heads: str = "num_heads"
    head_dim: str | None = "head_dim"
    attn_dim: str | None = "attn_dim"
    scale: str | None = "scale"
    q: str | None = "qkv"
    q_norm: str | None = "q_norm"


HEAD_SPECS: dict[type, HeadSpec] = {}


def register_attention(spec: HeadSpec | None = None) -> Callable[[type], type]:
    """Class decorator: heads of this attention class (and its subclasses) may change width (see module doc)."""

    def deco(cls: type) -> type:
        HEAD_SPECS[cls] = spec or HeadSpec()
        register_handler(cls)(_resize_heads)
        return cls

    return deco


def spec_of(cls: type) -> HeadSpec | None:
    """The :class:`HeadSpec` of ``cls`` or its nearest registered base class."""
    return next((HEAD_SPECS[t] for t in cls.__mro__ if t in HEAD_SPECS), None)


def _resize_heads(m: nn.Module, use: LayerUse, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None) -> None:
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


def _register_timm() -> None:
    try:
        from timm.layers.attention import Attention
        from timm.models import beit, eva
        from timm.models.swin_transformer import WindowAttention
    except ImportError:  # pragma: no cover
        return
    register_attention(HeadSpec())(Attention)
    register_attention(HeadSpec(head_dim=None, attn_dim=None, q_norm=None))(WindowAttention)
    # Their query bias is a separate parameter: no query rescale. Their heads stay fixed anyway: the merge
    # `reshape(B, N, C)` takes C from the residual stream, and the fused qkv is an F.linear on its weight.
    register_attention(HeadSpec(head_dim=None, attn_dim=None, q=None, q_norm=None))(beit.Attention)
    register_attention(HeadSpec(attn_dim=None, q=None, q_norm=None))(eva.EvaAttention)


_register_timm()
