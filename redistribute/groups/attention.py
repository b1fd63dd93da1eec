"""Attention modules whose head width can change, and what they store about their heads.

The walker (see :mod:`redistribute.groups.heads`) maps a reshape that splits a projection into heads,
``(B, N, 3*H*D) -> (B, N, 3, H, D)``, only inside a module whose class is registered here: the head count ``H``
is kept and the per-head width ``D`` becomes one channel group. Integer literals that fx baked into the graph
from the module's attributes (``self.head_dim``, ``self.attn_dim``) are accepted because surgery updates those
attributes; in any other module such a split keeps its group fixed, with the reason.

After surgery resizes the projections, its head handler (:mod:`redistribute.surgery.attention`, used for every
class registered here) sets the attributes named by its :class:`HeadSpec`:

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

from collections.abc import Callable
from dataclasses import dataclass

from ..tracing.behaviour import lookup

__all__ = ["HEAD_SPECS", "HeadSpec", "register_attention", "spec_of"]


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
        return cls

    return deco


def spec_of(cls: type) -> HeadSpec | None:
    """The :class:`HeadSpec` of ``cls`` or its nearest registered base class."""
    return lookup(HEAD_SPECS, cls, HEAD_SPECS)


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
