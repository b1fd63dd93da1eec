"""Re-estimate BatchNorm statistics after surgery, from an image folder or from random inputs.

Shrinking keeps channels but changes what flows into each BatchNorm (fewer input channels to the conv before it),
so the running mean and variance of a carried-over model are stale. :func:`recalibrate_bn_` resets them and
averages the statistics of a few forward passes (``momentum=None``: a cumulative average), in eval mode for
everything else (dropout, drop-path off), then restores every module's mode and momentum.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError

__all__ = ["folder_batches", "noise_batches", "recalibrate_bn_"]

_logger = logging.getLogger(__name__)


def recalibrate_bn_(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Reset and re-estimate every BatchNorm's running statistics of ``model`` *in place*.

    Args:
        model: The model (its device is used for the inputs).
        batches: Input tensors, ``(N, C, H, W)``.

    Returns:
        The number of batches used (0 when ``model`` has no BatchNorm: nothing is run).

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
        >>> recalibrate_bn_(m, [torch.randn(8, 3, 4, 4) + 5.0 for _ in range(3)])
        3
        >>> bool(m[1].running_mean.abs().sum() > 0)
        True
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    count = 0
    try:
        model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the batches
            m.train()
        with torch.no_grad():
            for x in batches:
                model(x.to(device))
                count += 1
    finally:
        for m, mode in modes.items():
            m.train(mode)
        for m, momentum in momenta.items():
            m.momentum = momentum
    _logger.info("re-estimated %d BatchNorm layers from %d batches", len(norms), count)
    return count


def noise_batches(
    input_size: tuple[int, ...], batches: int, batch_size: int = 16, seed: int = 0
) -> Iterator[torch.Tensor]:
    """``batches`` batches of standard-normal inputs (smoke tests; real images calibrate far better)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        yield torch.randn((batch_size, *input_size), generator=g)


def folder_batches(
    folder: str | os.PathLike[str], model: nn.Module, batches: int, batch_size: int = 32
) -> Iterator[torch.Tensor]:
    """Up to ``batches`` evaluation-transformed batches from an image folder, through timm's data pipeline.

    Args:
        folder: An image folder (``class/xxx.jpg`` or flat), read by :func:`timm.data.create_dataset`.
        model: Whose ``pretrained_cfg`` sets the input size, mean and std (:func:`timm.data.resolve_data_config`).
        batches: Maximum number of batches.
        batch_size: Images per batch.

    Raises:
        UsageError: The folder does not exist or holds no images.
    """
    from timm.data import create_dataset, create_loader, resolve_data_config

    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"calibration folder {str(root)!r} does not exist. Hint: pass an image folder to --calibrate")
    try:
        dataset = create_dataset("", root=str(root))
    except Exception as exc:  # timm raises RuntimeError/FileNotFoundError for an empty folder
        raise UsageError(f"calibration folder {str(root)!r} holds no readable images ({exc})".splitlines()[0]) from exc
    if len(dataset) == 0:
        raise UsageError(f"calibration folder {str(root)!r} holds no images. Hint: put .jpg/.png files in it")
    cfg = resolve_data_config({}, model=model)
    loader = create_loader(
        dataset,
        input_size=cfg["input_size"],
        batch_size=batch_size,
        is_training=False,
        use_prefetcher=False,
        interpolation=cfg["interpolation"],
        mean=cfg["mean"],
        std=cfg["std"],
        crop_pct=cfg["crop_pct"],
        num_workers=0,
    )
    for i, (x, _) in enumerate(loader):
        if i >= batches:
            break
        yield x


def recalibrate(
    model: nn.Module, input_size: tuple[int, ...], folder: str | os.PathLike[str] | None, batches: int
) -> int:
    """Re-estimate ``model``'s BatchNorm statistics in place from ``folder`` (up to ``batches``, default 20) or, with
    no folder, from ``batches`` batches of random inputs of ``input_size``; return the batches used."""
    if folder is not None:
        return recalibrate_bn_(model, folder_batches(folder, model, batches or 20))
    return recalibrate_bn_(model, noise_batches(tuple(input_size), batches))
