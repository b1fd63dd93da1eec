"""Atomic file output: write to a temporary file in the target folder, then rename over the target.

An interrupted run (an exception, Ctrl-C, ``SIGTERM`` in the CLI) leaves either the old file or the new one, never a
partial file: the temporary file is fully written and flushed to disk before the rename, and removed when anything
goes wrong (Ctrl-C and ``SIGTERM`` are held while temporary files are created, renamed or removed, so they cannot
leave one behind). :func:`atomic_paths` does the same for several files that belong together (``spec.json`` and
``weights.safetensors``): every file is written first, then all are renamed in one step that Ctrl-C and ``SIGTERM``
cannot cut (they are held until the renames are done). A hard kill (``SIGKILL``, power loss) between those renames
is the one case that can mix old and new files; it can also leave a hidden ``.NAME.*.tmp`` file, never a partial
``NAME``.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_text(folder / "a.txt", "new")
    >>> (folder / "a.txt").read_text()
    'new'
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType

from .errors import OutputError

__all__ = ["atomic_path", "atomic_paths", "atomic_write", "atomic_write_text", "prepare_out_dir"]

_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _output_error(action: str, path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    return OutputError(f"cannot {action} {str(path)!r}: {reason}. Hint: choose a writable folder with free space")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    """Make renames in ``path`` durable; best effort (some file systems cannot open a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver the first one that came (main thread only)."""
    if threading.current_thread() is not threading.main_thread() or any(
        signal.getsignal(sig) is None
        for sig in _HELD_SIGNALS  # a handler set outside Python: leave it alone
    ):
        yield
        return
    caught: list[signal.Signals] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        caught.append(signal.Signals(signum))

    previous = {sig: signal.signal(sig, hold) for sig in _HELD_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(caught[0])


def _file_mode(target: Path) -> int:
    """The mode the target gets: its current one, or what ``open()`` would give a new file (0o666 less umask)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _temp_beside(target: Path) -> Path:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _output_error("write in", target.parent, exc) from exc
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_paths(targets: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """Yield one temporary path beside each target; on success all replace their targets together.

    The caller writes every temporary file completely. Then each is flushed to disk and renamed over its target,
    with Ctrl-C and ``SIGTERM`` held until the last rename is done. On any failure (an exception, Ctrl-C while
    writing) the temporary files are removed and the targets keep their old contents.

    Raises:
        OutputError: A temporary file cannot be created, written or renamed (read-only folder, full disk); the
            targets are untouched.
    """
    paths = [Path(t) for t in targets]
    temps: list[Path] = []
    try:
        with _signals_held():  # a Ctrl-C here must not leave an untracked temporary file
            for target in paths:
                temps.append(_temp_beside(target))
        try:
            yield temps
            for tmp, target in zip(temps, paths, strict=True):
                os.chmod(tmp, _file_mode(target))  # mkstemp makes 0o600 files; give the mode a plain write would
                _fsync_file(tmp)
        except OSError as exc:
            raise _output_error("write", paths[0] if len(paths) == 1 else paths[0].parent, exc) from exc
        with _signals_held():
            for tmp, target in zip(temps, paths, strict=True):
                try:
                    os.replace(tmp, target)
                except OSError as exc:
                    raise _output_error("replace", target, exc) from exc
        for folder in {p.parent for p in paths}:
            _fsync_dir(folder)
    finally:
        with _signals_held():  # nor here, while cleaning up after a failure
            for tmp in temps:
                with contextlib.suppress(OSError):
                    tmp.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``, on failure it is removed."""
    with atomic_paths([target]) as (tmp,):
        yield tmp


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write(target: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Let ``writer`` write a temporary path, then move it over ``target`` atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)


def prepare_out_dir(out: str | os.PathLike[str], outputs: tuple[str, ...], force: bool) -> Path:
    """Create ``out`` if needed; refuse when it holds one of ``outputs`` already, unless ``force``.

    Writability is probed by creating (and removing) a temporary file, so a read-only file system or a folder
    even root cannot write to (``/sys``) is refused before any work is done.

    Raises:
        OutputError: ``out`` is a file, cannot be created or written, or already holds a result.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path {str(path)!r} is a file, not a folder. Hint: pass a folder to --out")
    existing = [name for name in outputs if (path / name).exists()]
    if existing and not force:
        raise OutputError(f"output folder {str(path)!r} already holds {existing[0]}. Hint: use --force to overwrite")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create output folder {str(path)!r}: {exc.strerror}. Hint: choose a writable --out"
        ) from exc
    if not os.access(path, os.W_OK):
        raise OutputError(f"output folder {str(path)!r} is not writable. Hint: choose a writable --out")
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise OutputError(
            f"output folder {str(path)!r} is not writable ({exc.strerror}). Hint: choose a writable --out"
        ) from exc
    return path
