"""Reading and writing the redistributed model's weights (``safetensors``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..io import atomic_path
from .checkpoint import check_state_dict

__all__ = ["load_weights_into", "save_weights", "write_weights"]


def write_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write ``model``'s state dict to ``path`` as safetensors (shared tensors stored once), not atomically."""
    from safetensors.torch import save_model

    save_model(model, str(path))


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Save ``model``'s state dict as safetensors, atomically: ``path`` holds the old file or the new one.

    Raises:
        OutputError: ``path`` cannot be written (the old file, if any, is kept).
    """
    with atomic_path(path) as tmp:
        write_weights(model, tmp)


def load_weights_into(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a safetensors state dict into ``model`` strictly; errors name the first mismatched key."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    try:
        state = load_file(str(p))
    except (OSError, SafetensorError, ValueError) as exc:
        raise CheckpointError(f"cannot read weights {str(p)!r}: {exc}".splitlines()[0]) from exc
    check_state_dict(model, state, f"weights {str(p)!r}", hint="use the weights saved with the spec")
    with torch.no_grad():
        model.load_state_dict(state, strict=False)  # copies into the tensors: tied ones stay tied
