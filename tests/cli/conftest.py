"""Helpers for the CLI tests: run a command in-process and check the one-line error contract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from redistribute.cli import app

_runner = CliRunner()


def _invoke(*args: str):
    return _runner.invoke(app, [str(a) for a in args], prog_name="redistribute")


def _fails(*args: str, code: int = 2, needle: str = "") -> str:
    """Run ``args``, assert it fails with ``code`` and exactly one ``error:`` line containing ``needle``, no
    traceback, nothing on stdout; return the line."""
    res = _invoke(*args)
    assert res.exit_code == code, (res.exit_code, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], res.stderr
    assert "Traceback" not in res.stderr and res.stdout == "", res.stderr
    return errors[0]


@pytest.fixture
def cli() -> Callable[..., object]:
    """``cli(*args)``: the CliRunner result of ``redistribute ARGS``."""
    return _invoke


@pytest.fixture
def fails() -> Callable[..., str]:
    """``fails(*args, code=2, needle="")``: assert the one-line error contract, return the error line."""
    return _fails


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    """A folder that holds nothing, to check that a failed run leaves nothing behind in it."""
    return tmp_path
