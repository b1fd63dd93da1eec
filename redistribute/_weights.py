"""Reading and writing the redistributed model's weights (``safetensors``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ._errors import CheckpointError
from ._io import atomic_path

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


def _storage_key(t: torch.Tensor) -> tuple[int, int, tuple[int, ...], tuple[int, ...]] | None:
    """Where a tensor's data lives: equal keys are the same (tied) tensor; ``None`` for empty tensors."""
    if t.numel() == 0:
        return None
    return (t.untyped_storage().data_ptr(), int(t.storage_offset()), tuple(t.shape), tuple(t.stride()))


def load_weights_into(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a safetensors state dict into ``model`` strictly; errors name the first mismatched key."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    try:
        state = load_file(str(p))
    except (OSError, SafetensorError, ValueError) as exc:
        raise CheckpointError(f"cannot read weights {str(p)!r}: {exc}".splitlines()[0]) from exc
    own = model.state_dict()
    for key, value in state.items():
        if key not in own:
            raise CheckpointError(
                f"weights {str(p)!r} have key {key!r} that the model lacks. Hint: use the spec saved with them"
            )
        if tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"weights {str(p)!r}: {key!r} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    present = {_storage_key(own[k]) for k in state} - {None}
    missing = [k for k in own if k not in state and _storage_key(own[k]) not in present]  # tied tensors are stored once
    if missing:
        raise CheckpointError(f"weights {str(p)!r} lack {missing[0]!r}. Hint: use the weights saved with the spec")
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
