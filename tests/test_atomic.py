"""Atomic outputs: an interrupted write leaves the old file or the new one, never a partial file.

Interruptions are simulated three ways: an exception raised half-way through a write (in process), a signal at a
chosen moment (in process, by sending it to ourselves), and SIGINT/SIGTERM from outside while a real ``redistribute``
process is writing, both at one chosen moment and at many random ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import INPUT, make_net
from torch import nn

import redistribute
import redistribute.io
import redistribute.surgery.weights
from redistribute import OutputError
from redistribute.io import atomic_path, atomic_paths, atomic_write_text
from redistribute.spec import save_result

ROOT = Path(__file__).resolve().parents[1]


class Boom(RuntimeError):
    pass


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def result() -> tuple[dict, nn.Module]:
    m = make_net("plain")
    p = redistribute.plan(m, "a", divisor=1, tolerance=0.05, input_size=INPUT)
    return redistribute.spec_from_plan(p), redistribute.apply(m, p)


@pytest.fixture
def old_pair(tmp_path: Path) -> dict[str, bytes]:
    old = {"spec.json": b'{"old": true}\n', "weights.safetensors": b"old weights"}
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)
    return old


def _assert_old(folder: Path, old: dict[str, bytes]) -> None:
    assert {name: (folder / name).read_bytes() for name in old} == old
    assert _leftovers(folder) == []


# -- exceptions mid-write --------------------------------------------------------------------------------------
def test_exception_mid_write_keeps_the_old_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, result) -> None:  # type: ignore[no-untyped-def]
    spec, _ = result
    target = tmp_path / "spec.json"
    target.write_text("old")

    def half_then_boom(self: Path, text: str, encoding: str | None = None) -> int:
        with open(self, "w", encoding=encoding) as fh:
            fh.write(text[: len(text) // 2])
        raise Boom("disk went away")

    monkeypatch.setattr(Path, "write_text", half_then_boom)
    with pytest.raises(Boom):
        redistribute.save_spec(spec, target)
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_exception_mid_write_keeps_the_old_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, result) -> None:  # type: ignore[no-untyped-def]
    _, model = result
    target = tmp_path / "weights.safetensors"
    target.write_bytes(b"old")
    real = redistribute.surgery.weights.write_weights

    def write_then_boom(m: nn.Module, path: str | os.PathLike[str]) -> None:
        real(m, path)
        Path(path).write_bytes(Path(path).read_bytes()[:50])  # a partial file ...
        raise Boom("killed")  # ... and then the failure

    monkeypatch.setattr(redistribute.surgery.weights, "write_weights", write_then_boom)
    with pytest.raises(Boom):
        redistribute.save_weights(model, target)
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_exception_while_writing_the_second_file_keeps_the_old_pair(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    result,
    old_pair: dict[str, bytes],  # type: ignore[no-untyped-def]
) -> None:
    """The spec is fully written when the weights fail: neither file is replaced (no new spec with old weights)."""
    spec, model = result

    def boom(m: nn.Module, path: str | os.PathLike[str]) -> None:
        Path(path).write_bytes(b"partial")
        raise Boom("out of memory")

    monkeypatch.setattr(redistribute.surgery.weights, "write_weights", boom)
    with pytest.raises(Boom):
        save_result(tmp_path, spec, model)
    _assert_old(tmp_path, old_pair)


def test_save_result_replaces_both_files(tmp_path: Path, result, old_pair: dict[str, bytes]) -> None:  # type: ignore[no-untyped-def]
    spec, model = result
    paths = save_result(tmp_path, spec, model)
    assert json.loads(paths["spec"].read_text()) == json.loads(json.dumps(spec))
    loaded = redistribute.load(paths["spec"], model=make_net("plain"), weights=paths["weights"])
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())
    assert _leftovers(tmp_path) == []
    mask = os.umask(0)
    os.umask(mask)
    assert paths["spec"].stat().st_mode & 0o777 == 0o666 & ~mask  # what a plain write gives, not mkstemp's 0o600


def test_failed_rename_is_an_output_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(redistribute.io.os, "replace", refuse)
    with pytest.raises(OutputError, match=r"cannot replace '.*a\.txt': Permission denied"):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


# -- signals at chosen moments, in process ---------------------------------------------------------------------
@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt, even where the test runner was started with SIGINT ignored (``nohup``, ``&``)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_raises")
def test_sigint_while_writing_removes_the_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the interrupt arrives here
        tmp.write_text("new")  # pragma: no cover
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


@pytest.mark.usefixtures("ctrl_c_raises")
def test_sigint_between_renames_is_held_until_both_are_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C that arrives after the first rename must not leave a new spec beside old weights."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("old a")
    b.write_text("old b")
    real_replace = os.replace
    calls = []

    def replace_then_interrupt(src: str, dst: str) -> None:
        real_replace(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # without the hold, KeyboardInterrupt would be raised here

    monkeypatch.setattr(redistribute.io.os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt), atomic_paths([a, b]) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert len(calls) == 2 and _leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored


def test_sigterm_in_the_cli_unwinds_and_removes_the_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``main()`` turns SIGTERM into SystemExit(143), so a write in progress is cleaned up like after Ctrl-C; the
    process then ends with status 143."""
    import redistribute.cli
    import redistribute.cli.commands

    target = tmp_path / "a.txt"
    target.write_text("old")

    def fake_app(standalone_mode: bool) -> None:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # SIGTERM arrives here
            tmp.write_text("new")  # pragma: no cover

    previous = signal.getsignal(signal.SIGTERM)
    codes: list[object] = []
    monkeypatch.setattr(redistribute.cli.commands, "app", fake_app)
    monkeypatch.setattr(redistribute.cli.commands, "exit_now", codes.append)  # the real one ends the process
    try:
        redistribute.cli.main()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert codes == [128 + signal.SIGTERM]
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


# -- signals from outside, in a real process --------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    import redistribute.surgery.weights
    from redistribute.cli import main

    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when the test runner ignores SIGINT (nohup, &)

    real = redistribute.surgery.weights.write_weights
    ready = Path(sys.argv[1])

    def slow(model, path):
        real(model, path)
        ready.write_text(str(path))  # the parent may interrupt now: the weights file is half-way
        time.sleep(60)

    redistribute.surgery.weights.write_weights = slow
    sys.argv = ["redistribute", *sys.argv[2:]]
    main()
    """
)


def test_sigint_during_cli_write_keeps_the_old_pair(tmp_path: Path, old_pair: dict[str, bytes]) -> None:
    """Ctrl-C while a real ``redistribute --out DIR --force`` writes its weights: the old pair stays, exit 130."""
    nets = tmp_path / "nets.py"
    nets.write_text(
        "from torch import nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.AdaptiveAvgPool2d(1),"
        " nn.Flatten(), nn.Linear(16, 4))\n"
    )
    (tmp_path / "child.py").write_text(CHILD)
    ready = tmp_path / "ready"
    args = [f"{nets}:make", "--input-size", "3,16,16", "--divisor", "1", "--tolerance", "0.2", "--out", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "child.py"), str(ready), *args, "--force"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.communicate(timeout=10)
        half_written = Path(ready.read_text())
        assert half_written.exists() and half_written.parent == tmp_path  # a temporary file beside the targets
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # pragma: no cover - only when the child hangs
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    ready.unlink()
    _assert_old(tmp_path, old_pair)


STRESS = textwrap.dedent(
    """
    import signal, sys, types
    from pathlib import Path

    package = types.ModuleType("redistribute")  # load redistribute.io without the package's torch imports
    package.__path__ = [sys.argv[3]]
    sys.modules["redistribute"] = package
    from redistribute.io import atomic_paths

    folder, stop = Path(sys.argv[1]), Path(sys.argv[2])
    names = ["spec.json", "weights.safetensors"]
    armed, version, interrupted, bad = False, 0, 0, []

    def on_sigint(signum, frame):  # Ctrl-C only while a write is under way; the checks below run undisturbed
        global armed
        if armed:
            armed = False
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    for n in names:
        (folder / n).write_text("v0 " * 100000)
    print("ready", flush=True)
    while not stop.exists():
        try:
            armed = True
            with atomic_paths([folder / n for n in names]) as temps:
                for tmp in temps:
                    with open(tmp, "w") as fh:
                        for _ in range(100):
                            fh.write(f"v{version + 1} " * 1000)
            armed = False
            version += 1
        except KeyboardInterrupt:
            interrupted += 1
        contents = {(folder / n).read_text() for n in names}
        if len(contents) != 1 or contents.pop() not in (f"v{version} " * 100000, f"v{version + 1} " * 100000):
            bad.append(("mixed or partial", version))
        left = [p.name for p in folder.iterdir() if p.name.startswith(".")]
        if left:
            bad.append(("left behind", left))
    print(interrupted, version, bad, flush=True)
    """
)


def test_random_sigints_never_leave_a_partial_or_mixed_pair(tmp_path: Path) -> None:
    """Fifty Ctrl-Cs at random moments of a write loop: after each, both files are whole and of one version."""
    import random

    folder = tmp_path / "out"
    folder.mkdir()
    (tmp_path / "stress.py").write_text(STRESS)
    stop = tmp_path / "stop"
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "stress.py"), str(folder), str(stop), str(ROOT / "redistribute")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr
        rng = random.Random(0)
        for _ in range(50):
            time.sleep(rng.uniform(0.0, 0.05))
            proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        stop.touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # pragma: no cover
            proc.kill()
    assert proc.returncode == 0, err
    interrupted, versions, bad = out.strip().split(" ", 2)
    assert bad == "[]", bad
    assert int(interrupted) >= 10 and int(versions) >= 1  # the signals did land, and writes did complete
