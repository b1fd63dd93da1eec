"""Checks of the command line that run before any model is built, so a bad option costs nothing.

Each raises a :class:`~redistribute.errors.RedistributeError` with one line that names the option and the fix.
Only what needs it imports torch (``--device cuda``) or timm (``--pretrained``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import CheckpointError, UsageError

__all__ = [
    "check_calibrate",
    "check_device",
    "check_match",
    "check_weights",
    "input_size_hint",
    "removed_if_failed",
    "template_list",
]

#: Image suffixes timm's folder reader takes.
IMAGES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


def check_weights(pretrained: bool, checkpoint: Path | None, source: str, option: str = "--checkpoint") -> None:
    """``--checkpoint`` exists and is a file, is not given with ``--pretrained``; pretrained weights are reachable."""
    if pretrained and checkpoint is not None:
        raise UsageError(f"--pretrained and {option} both give the base weights. Hint: pass one of them")
    if checkpoint is not None:
        if checkpoint.is_dir():
            raise CheckpointError(f"{option} {str(checkpoint)!r} is a folder. Hint: pass the weights file in it")
        if not checkpoint.is_file():
            raise CheckpointError(f"{option} {str(checkpoint)!r} does not exist. Hint: check the path")
    if pretrained:
        from ..source import check_pretrained

        check_pretrained(source, option)


def check_calibrate(folder: Path | None, batches: int, out: Path | None) -> None:
    """``--calibrate`` is an image folder and, like ``--calibrate-batches``, comes with ``--out``."""
    if batches < 0:
        raise UsageError(f"--calibrate-batches {batches} is negative. Hint: pass 0 (off) or a positive count")
    if folder is None and batches == 0:
        return
    if out is None:
        what = "--calibrate" if folder is not None else "--calibrate-batches"
        raise UsageError(
            f"{what} re-estimates the statistics of the written model and needs --out. Hint: add --out DIR"
        )
    if folder is None:
        return
    if not folder.is_dir():
        raise UsageError(
            f"calibration folder {str(folder)!r} does not exist. Hint: pass an image folder to --calibrate"
        )
    if not any(name.lower().endswith(IMAGES) for _, _, files in os.walk(folder) for name in files):
        raise UsageError(f"calibration folder {str(folder)!r} holds no images. Hint: put .jpg/.png files in it")


def check_match(match: str, command: str = "") -> str:
    """``--match`` lower-cased and checked against every metric, ``latency`` included (``none`` except for
    ``compare``, whose ``command`` is named in the message)."""
    from ..planning.cost import METRICS

    valid = (*METRICS, "latency") if command == "compare" else (*METRICS, "latency", "none")
    if match.lower() not in valid:
        where = f" for {command}" if command else ""
        raise UsageError(f"--match {match!r} is unknown{where}; choose one of {', '.join(valid)}")
    return match.lower()


def template_list(values: list[str]) -> list[str]:
    """``--templates`` values as template names: each value is split at ``;`` and ``,``, and consecutive
    ``position:value`` items are one control-point template (``a,0:1,0.5:4,1:1`` is ``a`` and ``0:1,0.5:4,1:1``).

    Example:
        >>> template_list(["a,0:1,0.5:4,1:1", "d;0:2,1:1"])
        ['a', '0:1,0.5:4,1:1', 'd', '0:2,1:1']
    """
    names: list[str] = []
    for value in values:
        for part in value.split(";"):
            points: list[str] = []
            for item in (i.strip() for i in part.split(",")):
                if ":" in item:
                    points.append(item)
                    continue
                if points:
                    names.append(",".join(points))
                    points = []
                if item:
                    names.append(item)
            if points:
                names.append(",".join(points))
    return names


def check_device(device: str | None) -> None:
    """``--device`` is ``cpu`` or an available ``cuda``/``mps`` device."""
    if device is None or device == "cpu":
        return
    import torch

    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine. Hint: use --device cpu")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device}: MPS is not available on this machine. Hint: use --device cpu")
    if kind not in ("cuda", "mps"):
        raise UsageError(f"--device {device!r} is unknown. Hint: use cpu or cuda")


def _missing_top(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself included) that does not exist yet, or ``None``."""
    top = None
    for p in (path, *path.parents):
        if p.exists():
            break
        top = p
    return top


@contextmanager
def removed_if_failed(out: Path | None) -> Iterator[None]:
    """Remove the folders a failed run created for ``out`` when they are still empty (a result is never touched)."""
    top = None if out is None else _missing_top(out.absolute())
    try:
        yield
    except BaseException:
        if top is not None and out is not None:
            for p in (out.absolute(), *out.absolute().parents):
                try:
                    p.rmdir()  # only empty folders go
                except OSError:
                    break
                if p == top:
                    break
        raise


@contextmanager
def input_size_hint(model: object, size: tuple[int, ...] | None) -> Iterator[None]:
    """A trace failure of a model traced at the default 3x224x224 (no ``--input-size``, no timm ``pretrained_cfg``)
    gets a hint to pass ``--input-size``: a 1-D or small-input model fails there with torch's shape error.

    ``model`` is the built model, or any object standing for a ``file.py:factory`` source; ``None`` never hints.
    """
    from ..errors import TraceError

    try:
        yield
    except TraceError as exc:
        cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
        if model is None or size is not None or "input_size" in cfg or "Hint:" in str(exc):
            raise
        raise TraceError(
            f"{' '.join(str(exc).split())}. Hint: it was traced at the default input 3x224x224; "
            "pass --input-size C,H,W (e.g. --input-size 3,64 for a 1-D model)"
        ) from exc
