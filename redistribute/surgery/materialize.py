"""Give a rebuilt skeleton real, freshly initialised weights, without ever building the base for real.

A model built under :func:`redistribute.skeleton.skeleton` keeps its large tensors on the meta device; surgery
resizes it like any model. :func:`materialize_` then allocates every meta tensor on the CPU and initialises it the
way a fresh model of those widths is initialised: each owning layer's own ``reset_parameters()`` (PyTorch's
defaults for conv, linear and norm layers), then the model's ``init_weights()`` where it has one (timm's ResNet,
ViT, ...). Tensors that were real (small ones) keep their values.

Whether that covered every tensor is *checked*, not assumed: the new tensors are filled with NaN first, and any
NaN left after initialisation means some tensor has no initialiser here (a loose parameter of a custom block).
Then :func:`materialize_` returns ``False`` and the caller builds the base for real instead.
"""

from __future__ import annotations

import inspect
import logging

import torch
from torch import nn

__all__ = ["materialize_"]

_logger = logging.getLogger(__name__)


def _unset(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A tensor shaped like ``t`` on ``device`` that shows it was never initialised: NaN (zeros for integers)."""
    if t.is_floating_point():
        return torch.full(t.shape, float("nan"), dtype=t.dtype, device=device)
    return torch.zeros(t.shape, dtype=t.dtype, device=device)


def _owners_of_meta(model: nn.Module, device: torch.device) -> list[nn.Module]:
    """Replace every meta parameter and buffer by an uninitialised NaN tensor on ``device``; return their owners."""
    owners = []
    for module in model.modules():
        touched = False
        for name, p in list(module._parameters.items()):
            if p is not None and p.is_meta:
                module._parameters[name] = nn.Parameter(_unset(p, device), requires_grad=p.requires_grad)
                touched = True
        for name, b in list(module._buffers.items()):
            if b is not None and b.is_meta:
                module._buffers[name] = _unset(b, device)
                touched = True
        if touched:
            owners.append(module)
    return owners


def _init_weights(model: nn.Module) -> None:
    """Call the model's own ``init_weights()`` (timm's convention) when it takes no required argument."""
    fn = getattr(model, "init_weights", None)
    if not callable(fn):
        return
    try:
        required = [
            p for p in inspect.signature(fn).parameters.values()
            if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]  # fmt: skip
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return
    if not required:
        fn()


@torch.no_grad()
def materialize_(model: nn.Module, device: str | torch.device = "cpu") -> bool:
    """Allocate and initialise ``model``'s meta tensors in place (see module docstring).

    Args:
        model: A model whose parameters and buffers are partly on the meta device (modified in place).
        device: Where the new tensors go.

    Returns:
        ``True`` when every tensor is initialised; ``False`` when some tensor has no initialiser here (it is
        left NaN: build the model from a real base instead).

    Example:
        >>> from redistribute.skeleton import skeleton
        >>> with skeleton():
        ...     lin = nn.Sequential(nn.Linear(512, 512), nn.LayerNorm(512))
        >>> materialize_(lin), lin[0].weight.is_meta, bool(lin[0].weight.isnan().any())
        (True, False, False)
    """
    device = torch.device(device)
    owners = _owners_of_meta(model, device)
    if not owners:
        return True
    for module in owners:
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    _init_weights(model)
    left = [
        name for name, t in (*model.named_parameters(), *model.named_buffers())
        if t.is_floating_point() and bool(t.isnan().any())
    ]  # fmt: skip
    if left:
        _logger.info("%d tensors have no initialiser here (first: %s)", len(left), left[0])
        return False
    return True
