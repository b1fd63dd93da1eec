"""What a training run needs before its first step: the image folders, timm's loaders (or plain ones over in-memory
datasets of ready tensors) and the process group."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DataError, UsageError
from .config import TrainConfig

__all__ = ["dataset", "distributed", "loaders", "splits", "tensor_loaders"]

_logger = logging.getLogger(__name__)

_TRAIN_DIRS, _VAL_DIRS = ("train", "training"), ("val", "valid", "validation", "eval")
_LAYOUT = "lay it out as DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg"


def splits(data_dir: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist. Hint: {_LAYOUT}")
    train = next((root / d for d in _TRAIN_DIRS if (root / d).is_dir()), None)
    if train is None:
        raise DataError(f"data folder {str(root)!r} has no train/ subfolder. Hint: {_LAYOUT}")
    val = next((root / d for d in _VAL_DIRS if (root / d).is_dir()), None)
    if val is None:
        _logger.warning("data folder %r has no val/ subfolder: validation is skipped", str(root))
    return train, val


def dataset(folder: Path, class_map: dict[str, int] | None = None) -> Any:
    from timm.data import create_dataset

    try:
        return create_dataset("", root=str(folder), search_split=False, class_map=class_map or {})
    except (RuntimeError, KeyError) as exc:
        raise DataError(f"no usable images in {str(folder)!r} ({exc})".splitlines()[0] + f". Hint: {_LAYOUT}") from exc


def distributed(device: str) -> tuple[torch.device, int, int, bool]:
    """(device, rank, world size, whether this call started the process group): torchrun's env, or one process."""
    import torch.distributed as dist
    from timm.utils.distributed import init_distributed_device_so

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} was asked for but CUDA is not available. Hint: --device cpu")
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return (
            torch.device(f"cuda:{local}" if device.startswith("cuda") else device),
            dist.get_rank(),
            dist.get_world_size(),
            False,
        )
    info = init_distributed_device_so(device=device)
    return torch.device(info["device"]), info["global_rank"], info["world_size"], bool(info["distributed"])


def loaders(
    model: nn.Module, ds_train: Any, ds_val: Any, cfg: TrainConfig, device: torch.device, world: int
) -> tuple[Any, Any]:
    from timm.data import create_loader, resolve_data_config

    data = resolve_data_config({"img_size": cfg.img_size} if cfg.img_size else {}, model=model)
    common = dict(input_size=data["input_size"], batch_size=cfg.batch_size, mean=data["mean"], std=data["std"], num_workers=cfg.workers,
                  distributed=world > 1, device=device, pin_memory=device.type == "cuda")  # fmt: skip
    train = create_loader(
        ds_train,
        is_training=True,
        no_aug=not cfg.aug,
        interpolation="random" if cfg.aug else data["interpolation"],
        **common,
    )
    val = (
        None
        if ds_val is None
        else create_loader(ds_val, interpolation=data["interpolation"], crop_pct=data["crop_pct"], **common)
    )
    return train, val


class _OnDevice:
    """A ``DataLoader`` whose batches arrive on ``device`` (what timm's prefetching loader does for image folders)."""

    def __init__(self, loader: Any, device: torch.device) -> None:
        self.loader, self.device, self.sampler = loader, device, loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        blocking = self.device.type != "cuda"
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=not blocking), y.to(self.device, non_blocking=not blocking)


def tensor_loaders(
    ds_train: Any, ds_val: Any, cfg: TrainConfig, device: torch.device, world: int, rank: int
) -> tuple[Any, Any]:
    """Loaders over datasets of ready ``(tensor, label)`` items: shuffled with ``cfg.seed`` (per epoch under DDP,
    where each rank takes its share: ``DistributedSampler`` for training, timm's ``OrderedDistributedSampler``
    without padding in the metrics for validation); full batches only for training."""
    from timm.data.distributed_sampler import OrderedDistributedSampler
    from torch.utils.data import DataLoader, DistributedSampler

    generator = torch.Generator().manual_seed(cfg.seed)
    common = dict(batch_size=cfg.batch_size, num_workers=cfg.workers, pin_memory=device.type == "cuda")
    sampler = (
        DistributedSampler(ds_train, world, rank, shuffle=True, seed=cfg.seed, drop_last=True) if world > 1 else None
    )
    train = DataLoader(
        ds_train, shuffle=sampler is None, sampler=sampler, generator=generator, drop_last=True, **common
    )  # type: ignore[arg-type]
    val = None
    if ds_val is not None:
        val_sampler = OrderedDistributedSampler(ds_val, world, rank) if world > 1 else None
        val = _OnDevice(DataLoader(ds_val, sampler=val_sampler, **common), device)  # type: ignore[arg-type]
    return _OnDevice(train, device), val
