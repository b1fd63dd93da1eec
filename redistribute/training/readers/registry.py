"""Training data for ``redistribute study``: the registry of named readers a ``--data`` spec picks from.

A spec is ``NAME:ARG`` for a registered reader (``cifar10:DIR``, ``fsdd:DIR``), a bare reader name (``mnist``), or
a plain folder laid out as ``DIR/train/<class>/*`` and ``DIR/val/<class>/*`` (``DIR/test/`` is accepted for
``val/``). Every reader returns a :class:`StudyData`. A reader name wins over a folder of the same name; write
``./mnist`` to mean the folder.

Problems a user can fix (missing tar, no class folders, a class missing from ``val/``, an unreadable file) raise
:class:`redistribute.DataError` while the data is being built, before any training starts: each class's first
file in each split is decoded then. Tars are extracted once into a cache folder (only the members a limited
subset needs), atomically, and reused on later calls.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from torch.utils.data import Dataset

__all__ = [
    "SEED",
    "STATS_SAMPLES",
    "ReadOptions",
    "StudyData",
    "balanced_subset",
    "register_reader",
]

STATS_SAMPLES = 256  # files decoded to estimate normalisation statistics
SEED = 0

Key = TypeVar("Key", Path, str, int)


@dataclass(frozen=True)
class StudyData:
    """Train and validation sets of one classification task.

    Attributes:
        train: Training set; items are ``(tensor of shape input_size, class index)``.
        val: Validation set, same item format.
        num_classes: Number of classes.
        class_names: Class names, indexed by class index.
        input_size: Shape ``(C, H, W)`` of one input.
        description: One line for logs and reports.

    """

    train: Dataset
    val: Dataset
    num_classes: int
    class_names: tuple[str, ...]
    input_size: tuple[int, int, int]
    description: str

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    def verify(self) -> None:
        """Check that every file of both splits can be read (datasets held in memory need no check).

        Raises:
            DataError: Naming the first unreadable file.
        """
        for split in (self.train, self.val):
            check = getattr(split, "verify", None)
            if callable(check):
                check()


@dataclass(frozen=True)
class ReadOptions:
    """Options shared by all readers.

    Attributes:
        limit_train: Keep at most this many training items, class-balanced and deterministic (None: all).
        limit_val: The same for the validation set.
        cache_dir: Folder to extract archives into (None: ``$XDG_CACHE_HOME/redistribute/data``).

    """

    limit_train: int | None = None
    limit_val: int | None = None
    cache_dir: Path | None = None

    @property
    def cache(self) -> Path:
        """The cache folder to use."""
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "redistribute" / "data"


Reader = Callable[[str | None, ReadOptions], StudyData]
_READERS: dict[str, Reader] = {}


def register_reader(name: str) -> Callable[[Reader], Reader]:
    """Register a reader under ``name`` (decorator).

    Args:
        name: The name used in ``--data NAME:ARG``.

    Returns:
        A decorator that records the reader and returns it unchanged.

    """

    def decorate(reader: Reader) -> Reader:
        _READERS[name] = reader
        return reader

    return decorate


def balanced_subset(samples: Sequence[tuple[Key, int]], limit: int | None, num_classes: int) -> list[tuple[Key, int]]:
    """Take a deterministic, class-balanced subset.

    Each class gets ``limit // num_classes`` items (the first ``limit % num_classes`` classes one more) from a
    fixed-seed shuffle of its items sorted by key; the result is ordered by class, then key.

    Args:
        samples: ``(key, class index)`` pairs; the key (a path, a name, a row number) identifies the item.
        limit: Largest number of items to keep; None keeps all.
        num_classes: Number of classes.

    Returns:
        The chosen samples.

    """
    if limit is None or limit >= len(samples):
        return sorted(samples, key=lambda s: (s[1], s[0]))
    chosen: list[tuple[Key, int]] = []
    for label in range(num_classes):
        items = sorted(s for s in samples if s[1] == label)
        random.Random(SEED + label).shuffle(items)
        quota = limit // num_classes + (1 if label < limit % num_classes else 0)
        chosen.extend(sorted(items[:quota]))
    return chosen
