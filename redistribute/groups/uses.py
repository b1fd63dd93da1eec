"""What the walker records about each layer: :class:`LayerUse`, one per call of a layer or loose parameter."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .spaces import Layout

__all__ = ["LayerUse", "extra_per_out_channel"]


@dataclass(frozen=True)
class LayerUse:
    """One call of a layer (or one loose parameter) and the layouts its weights follow.

    Attributes:
        module: Qualified name of the module (for ``param``: of the parameter or buffer).
        kind: ``conv``, ``linear``, ``norm`` (params sized by ``out_layout``), ``param`` (a loose tensor whose
            dimension ``dim`` follows ``out_layout``), ``flops`` (a functional matmul or a black box, cost only) or
            ``attr`` (an int attribute of a module, ``module`` being ``owner.attr``, that equals the width of
            ``out_layout``: surgery sets it to the new width).
        node: Name of the fx node.
        order: Position of the node in execution order.
        in_layout: Input channel layout (conv, linear).
        out_layout: Output channel layout (conv, linear), or the layout of ``dim``.
        dim: The tensor dimension concerned (norm, param).
        mode: Grouped-conv policy: ``none``, ``depthwise``, ``count`` (group count kept) or ``width`` (group width
            kept).
        in_shape: Shape of the input value.
        out_shape: Shape of the output value.
        kernel: Kernel elements of a conv (``prod(kernel_size)``).
        groups: Base ``groups`` of a conv.
        bias: Whether the layer has a bias.
        per_channel: Parameters per channel of a norm (2 for affine BN/LN); for conv/linear: elements per output
            channel of parameters other than weight and bias (NFNet's ``gain``); for ``param``: 1 for an
            ``nn.Parameter``, 0 for a buffer.
        positions: How many times the weight is applied at batch 1 (output pixels of a conv, input pixels of a
            transposed conv, tokens of a linear), times the sizes of ``position_layouts``.
        position_layouts: Layouts of a linear's leading input dims, when known: one that carries a channel group
            (MLP-Mixer's token mixing runs once per channel) makes the cost follow that group's width.
    """

    module: str
    kind: str
    node: str
    order: int
    in_layout: Layout | None
    out_layout: Layout | None
    dim: int = 1
    mode: str = "none"
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    kernel: int = 1
    groups: int = 1
    bias: bool = False
    per_channel: int = 0
    positions: int = 0
    position_layouts: tuple[Layout, ...] = ()


def extra_per_out_channel(mod: nn.Module) -> int:
    """Elements per output channel of a layer's *other* parameters (NFNet's ``gain``), resized with its outputs."""
    cout = getattr(mod, "out_channels", getattr(mod, "out_features", None))
    if cout is None or getattr(mod, "transposed", False):
        return 0
    extra = [
        p
        for n, p in mod._parameters.items()
        if n not in ("weight", "bias") and p is not None and p.ndim and p.shape[0] == cout
    ]
    return sum(p.numel() // cout for p in extra)
