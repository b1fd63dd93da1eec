"""Start-up: ``--help``, ``-h``, ``--version`` and ``templates`` never import torch, timm or matplotlib."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "timm", "matplotlib", "torchvision"}


def _imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "redistribute", *args],
                         capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)  # fmt: skip
    names = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    return res, names


@pytest.mark.parametrize("args", [("--help",), ("-h",), ("--version",), ("templates",), ("templates", "--json")])
def test_light_commands_do_not_import_torch(args):
    res, names = _imported(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "redistribute.cli.commands" in names  # the probe sees our imports at all
    assert not (HEAVY & names), HEAVY & names


def test_version_prints_the_package_version(cli):
    from redistribute.version import __version__

    res = cli("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"redistribute {__version__}"


def test_dash_h_is_help_everywhere(cli):
    for args in (("-h",), ("compare", "-h"), ("timm:resnet18", "-h")):
        res = cli(*args)
        assert res.exit_code == 0 and "Usage" in res.stdout, (args, res.stdout)


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (("--bogus",), "see 'redistribute --help'"),
        (("timm:test_resnet", "--divisor", "x"), "see 'redistribute --help'"),
        (("compare", "timm:test_resnet", "--bogus"), "see 'redistribute compare --help'"),
        (("inspect",), "see 'redistribute inspect --help'"),
    ],
)
def test_malformed_command_lines_are_one_line_naming_the_typed_command(fails, args, hint):
    line = fails(*args, code=2)
    assert hint in line and "redistribute run" not in line


def test_help_of_the_default_command_does_not_name_run(cli):
    res = cli("timm:test_resnet", "-h")
    assert res.exit_code == 0 and "redistribute [OPTIONS]" in res.stdout and "redistribute run" not in res.stdout
    typed = cli("run", "timm:test_resnet", "--bogus")  # the user typed `run`: the hint names it
    assert typed.exit_code == 2 and "see 'redistribute run --help'" in typed.stderr


@pytest.mark.parametrize("args", [("timm:test_resnet", "-h"), ("inspect", "--help"), ("compare", "-h")])
def test_help_of_a_heavy_command_does_not_import_torch(args):
    res, names = _imported(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not (HEAVY & names), HEAVY & names


def test_heavy_imports_run_without_full_collections_then_frozen():
    """``preload``: torch and timm imported, what they made frozen (later collections skip it), thresholds back."""
    code = (
        "import gc, sys; from redistribute.cli.startup import preload; t = gc.get_threshold();"
        "preload(['inspect', 'TIMM:resnet50']);"
        "print(gc.isenabled() and gc.get_threshold() == t, gc.get_freeze_count() > 100_000, 'timm' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["True", "True", "True"]


def test_the_group_preloads_for_heavy_commands_only(cli, monkeypatch):
    from redistribute.cli import group

    calls: list[list[str]] = []
    monkeypatch.setattr(group, "preload", lambda args: calls.append(list(args)))
    assert cli("templates").exit_code == 0
    assert calls == []
    assert cli("inspect", "timm:test_resnet", "--input-size", "3,32,32").exit_code == 0
    assert calls == [["timm:test_resnet", "--input-size", "3,32,32"]]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


@pytest.mark.parametrize(("code", "status", "stderr"), [("None", 0, ""), ("3", 3, ""), ("'bad input'", 1, "bad input")])
def test_exit_now_keeps_the_status_runs_atexit_and_flushes(code: str, status: int, stderr: str):
    res = _python(
        "import atexit, sys; from redistribute.cli.startup import exit_now;"
        "atexit.register(lambda: print('atexit ran'));"
        f"sys.stdout.write('unflushed'); exit_now({code})"
    )
    assert res.returncode == status
    assert res.stdout == "unflushedatexit ran\n"
    assert res.stderr.strip() == stderr


def test_the_console_entry_ends_through_exit_now(tmp_path: Path):
    """A real process: the output is complete, the status is the command's, and files are written."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "redistribute"]
    ok = subprocess.run([*run, "timm:test_resnet", "--input-size", "3,32,32", "-t", "d", "--json", "--out",
                         str(tmp_path / "out")], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads(ok.stdout)["template"] == "d"
    assert (tmp_path / "out" / "spec.json").is_file()
    bad = subprocess.run([*run, "timm:test_resnet", "--divisor", "x"], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1
