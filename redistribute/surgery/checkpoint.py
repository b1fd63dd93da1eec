"""Weights *into* a base model before surgery: checkpoint files, state dicts, strict key and shape checks.

Files are read with timm's own loader (:func:`timm.models.load_state_dict`), which understands plain state dicts
in ``.pth``/``.pt``/``.bin``, ``.safetensors``, and timm training checkpoints (``state_dict``, ``state_dict_ema``,
``model``, with the ``module.`` prefix of DDP stripped). On top of it we check the state dict against the model
strictly and name the first key that does not fit, before anything is changed.

Tensors are *assigned* (the model's parameter objects are replaced), never copied into in place, so a model that
shares tensors with another one (as surgery's working copy does with the caller's model) never writes through.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = ["assign_state_dict", "check_state_dict", "load_checkpoint", "read_state_dict"]

StateDict = Mapping[str, torch.Tensor]


def read_state_dict(path: str | os.PathLike[str], use_ema: bool = True) -> dict[str, torch.Tensor]:
    """Read a state dict from a checkpoint file (``.pth``, ``.pt``, ``.bin``, ``.safetensors``, timm checkpoints).

    Args:
        path: The file.
        use_ema: For timm training checkpoints holding both, take ``state_dict_ema`` (timm's default).

    Raises:
        CheckpointError: The file is missing, corrupt, or holds no state dict.
    """
    from timm.models import load_state_dict

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(
            f"checkpoint {str(p)!r} does not exist. Hint: pass the path of a .pth/.pt/.safetensors file"
        )
    try:
        state = load_state_dict(str(p), use_ema=use_ema, weights_only=True)
    except Exception as exc:  # corrupt zip, pickle refused, truncated safetensors, ...
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        raise CheckpointError(
            f"cannot read checkpoint {str(p)!r} ({msg}). Hint: is it a complete PyTorch or safetensors file?"
        ) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {str(p)!r} holds no state dict of tensors. Hint: save model.state_dict()")
    return dict(state)


def _storage_key(t: torch.Tensor) -> tuple[int, int, tuple[int, ...], tuple[int, ...]] | int:
    """Where a tensor's data lives: tied tensors (one tensor under two keys) have equal keys."""
    if t.numel() == 0:
        return id(t)  # empty tensors share no data to speak of: each is its own
    return (t.untyped_storage().data_ptr(), int(t.storage_offset()), tuple(t.shape), tuple(t.stride()))


def check_state_dict(
    model: nn.Module, state: StateDict, source: str = "checkpoint", hint: str = "does it belong to this model?"
) -> None:
    """Raise :class:`CheckpointError` naming the first key of ``state`` that does not fit ``model`` (strict).

    Keys are compared in the model's order: a key the checkpoint lacks, then a shape mismatch, then a key the
    model lacks. Tied tensors (one tensor under two keys, stored once by safetensors) may appear once.
    """
    own = model.state_dict(keep_vars=True)
    present = {_storage_key(own[k]) for k in state if k in own}
    for key, value in own.items():
        if key not in state:
            if _storage_key(value) in present:
                continue
            raise CheckpointError(f"{source} lacks {key!r} of {type(model).__name__}. Hint: {hint}")
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{source}: {key!r} has shape {tuple(state[key].shape)}, the model expects {tuple(value.shape)}. "
                f"Hint: {hint}"
            )
    for key in state:
        if key not in own:
            raise CheckpointError(
                f"{source} has key {key!r} that the model ({type(model).__name__}) lacks. Hint: {hint}"
            )


def assign_state_dict(model: nn.Module, state: StateDict) -> None:
    """Replace ``model``'s parameters and persistent buffers by the tensors of ``state`` (checked beforehand).

    The new tensors take the dtype and device of the ones they replace (a meta tensor of a skeleton takes the
    checkpoint tensor's device); nothing is written into old tensors.
    """
    for prefix, m in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        for name, t in list(m._parameters.items()):
            if t is not None and dot + name in state:
                value = state[dot + name].detach()
                value = value.to(dtype=t.dtype, device=value.device if t.is_meta else t.device)
                m._parameters[name] = nn.Parameter(value, requires_grad=t.requires_grad)
        for name, t in list(m._buffers.items()):
            if t is not None and dot + name in state and name not in m._non_persistent_buffers_set:
                value = state[dot + name].detach()
                m._buffers[name] = value.to(dtype=t.dtype, device=value.device if t.is_meta else t.device)


def load_checkpoint(model: nn.Module, weights: str | os.PathLike[str] | StateDict, use_ema: bool = True) -> nn.Module:
    """Load weights into ``model`` *in place* (like :func:`timm.models.load_checkpoint`), strictly; return it.

    Args:
        model: The base architecture the weights were trained for.
        weights: A checkpoint path (see :func:`read_state_dict`) or a state dict.
        use_ema: Prefer EMA weights in timm training checkpoints.

    Raises:
        CheckpointError: Unreadable file, or the first key that does not fit; ``model`` is unchanged then.

    Example:
        >>> import torch
        >>> m = torch.nn.Linear(2, 3)
        >>> _ = load_checkpoint(m, {"weight": torch.ones(3, 2), "bias": torch.zeros(3)})
        >>> float(m.weight.sum())
        6.0
    """
    if isinstance(weights, Mapping):
        state: StateDict = weights
        source = "state dict"
    else:
        state = read_state_dict(weights, use_ema=use_ema)
        source = f"checkpoint {str(weights)!r}"
    check_state_dict(model, state, source)
    with torch.no_grad():
        assign_state_dict(model, state)
    return model
