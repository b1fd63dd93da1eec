"""Atomic file output: write to a temporary file in the target folder, then rename over the target.

An interrupted run leaves either the old file or the new one, never a partial file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ._errors import OutputError

__all__ = ["atomic_path", "atomic_write_text", "prepare_out_dir"]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``, on failure it is removed."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write(target: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    with atomic_path(target) as tmp:
        writer(tmp)


def prepare_out_dir(out: str | os.PathLike[str], outputs: tuple[str, ...], force: bool) -> Path:
    """Create ``out`` if needed; refuse when it holds one of ``outputs`` already, unless ``force``."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path {str(path)!r} is a file, not a folder. Hint: pass a folder to --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {str(path)!r}: {exc.strerror}. Hint: choose a writable --out") from exc
    if not os.access(path, os.W_OK):
        raise OutputError(f"output folder {str(path)!r} is not writable. Hint: choose a writable --out")
    existing = [name for name in outputs if (path / name).exists()]
    if existing and not force:
        raise OutputError(f"output folder {str(path)!r} already holds {existing[0]}. Hint: use --force to overwrite")
    return path
