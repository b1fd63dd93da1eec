"""Reading a ``--data`` spec: the registered readers, with the built-in ones (:mod:`.builtin`) registered on first use.

It sits above both the registry and the built-in readers, so neither imports the other's user.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from .registry import _READERS, Reader, ReadOptions, StudyData

__all__ = ["load_data", "reader_names"]


def _builtins() -> dict[str, Reader]:
    """The registry, with the built-in readers (:mod:`.builtin`) registered on first use."""
    from . import builtin  # noqa: F401  (registers folder, cifar10, fsdd, mnist)

    return _READERS


def reader_names() -> list[str]:
    """Names of the registered readers, sorted."""
    return sorted(_builtins())


def load_data(
    spec: str,
    *,
    limit_train: int | None = None,
    limit_val: int | None = None,
    cache_dir: str | Path | None = None,
) -> StudyData:
    """Build the data set a ``--data`` spec names.

    Args:
        spec: ``NAME:ARG``, a bare reader name, or an image folder path.
        limit_train: Keep at most this many training items (class-balanced, deterministic).
        limit_val: Keep at most this many validation items.
        cache_dir: Folder for extracted archives.

    Returns:
        The train and validation sets with their metadata.

    Raises:
        DataError: The spec names no reader or folder, or the data is missing or unreadable.

    """
    opts = ReadOptions(limit_train, limit_val, Path(cache_dir) if cache_dir is not None else None)
    readers = _builtins()
    name, sep, arg = spec.partition(":")
    if name in readers:
        return readers[name](arg if sep else None, opts)
    if Path(spec).is_dir():
        return readers["folder"](spec, opts)
    valid = ", ".join(reader_names())
    if sep:
        raise DataError(f"--data {spec!r}: unknown reader {name!r}; valid readers: {valid}")
    raise DataError(f"--data {spec!r}: no such folder, and not a reader name ({valid})")
