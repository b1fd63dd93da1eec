"""Reading and writing the redistributed model's weights (``safetensors``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ._errors import CheckpointError
from ._io import atomic_path

__all__ = ["save_weights", "load_weights_into"]


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Save ``model``'s state dict as safetensors, atomically (shared tensors stored once)."""
    from safetensors.torch import save_model

    with atomic_path(path) as tmp:
        save_model(model, str(tmp))


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
            raise CheckpointError(f"weights {str(p)!r} have key {key!r} that the model lacks. Hint: use the spec saved with them")
        if tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"weights {str(p)!r}: {key!r} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    missing = [k for k in own if k not in state]
    tied = {id(t) for t in own.values()}
    if missing and len(tied) == len(own):
        raise CheckpointError(f"weights {str(p)!r} lack {missing[0]!r}. Hint: use the weights saved with the spec")
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
