"""The command line: exit codes, stdout/stderr separation, outputs, and the issue's acceptance run."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import redistribute
from redistribute.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_resnet50_peak_matches_flops_with_fewer_params_and_a_peak():
    res = invoke("timm:resnet50", "--template", "d", "--match", "flops", "--json")
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert abs(data["totals"]["flops"]["ratio"] - 1) <= 0.005
    assert data["totals"]["params"]["new"] < data["totals"]["params"]["base"]
    groups = sorted(data["groups"], key=lambda g: g["position"])
    thirds = [
        groups[: len(groups) // 3],
        groups[len(groups) // 3 : 2 * len(groups) // 3],
        groups[2 * len(groups) // 3 :],
    ]
    rel = [statistics.mean(g["width"] / g["base"] for g in part) for part in thirds]
    # relative to the pyramid, the peak template widens the middle and narrows the end
    assert rel[1] > rel[2]
    mid = [g for g in groups if 0.4 <= g["position"] <= 0.6]
    ends = [g for g in groups if g["position"] <= 0.1 or g["position"] >= 0.9]
    assert statistics.median(g["width"] for g in mid) > statistics.median(g["width"] for g in ends)


def test_summary_tables_go_to_stdout_and_progress_to_stderr():
    res = invoke("timm:test_resnet", "--template", "b", "--input-size", "3,64,64")
    assert res.exit_code == 0, res.stderr
    assert "totals" in res.stdout and "flops" in res.stdout
    assert "tracing" in res.stderr and "totals" not in res.stderr


def test_out_writes_spec_and_weights_and_refuses_to_overwrite(tmp_path: Path):
    out = tmp_path / "out"
    res = invoke("timm:test_resnet", "-t", "a", "--input-size", "3,64,64", "--out", str(out))
    assert res.exit_code == 0, res.stderr
    assert (out / "spec.json").is_file() and (out / "weights.safetensors").is_file()
    before = (out / "spec.json").read_bytes()
    again = invoke("timm:test_resnet", "-t", "c", "--input-size", "3,64,64", "--out", str(out))
    assert again.exit_code == 1
    assert "already holds spec.json" in again.stderr and "--force" in again.stderr
    assert (out / "spec.json").read_bytes() == before  # nothing lost
    forced = invoke("timm:test_resnet", "-t", "c", "--input-size", "3,64,64", "--out", str(out), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads((out / "spec.json").read_text())["template"] == "c"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left behind


def test_saved_weights_reload_bit_identical(tmp_path: Path):
    out = tmp_path / "o"
    assert invoke("timm:test_resnet", "-t", "d", "--input-size", "3,64,64", "--out", str(out)).exit_code == 0
    a = redistribute.load(out / "spec.json", weights=out / "weights.safetensors").eval()
    b = redistribute.load(out, weights=out / "weights.safetensors").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_same_command_gives_byte_identical_specs(tmp_path: Path):
    for name in ("a", "b"):
        assert (
            invoke(
                "timm:test_resnet",
                "-t",
                "e",
                "--divisor",
                "1",
                "--input-size",
                "3,64,64",
                "--out",
                str(tmp_path / name),
            ).exit_code
            == 0
        )
    assert (tmp_path / "a" / "spec.json").read_bytes() == (tmp_path / "b" / "spec.json").read_bytes()


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("timm:resnet5",), 2, "did you mean resnet50"),
        (("torchvision:resnet1000",), 2, "unknown torchvision model"),
        (("foo:bar",), 2, "unknown model source prefix"),
        (("resnet50",), 2, "has no prefix"),
        (("missing_file.py:make",), 2, "does not exist"),
        (("timm:test_resnet", "--template", "zz"), 2, "valid: a, b, base, c, d, e"),
        (("timm:test_resnet", "--template", "0:1,0.5"), 2, "is not 'position:value'"),
        (("timm:test_resnet", "--template", "0.2:1,1:2"), 2, "positions 0 and 1"),
        (("timm:test_resnet", "--tolerance", "-1"), 2, "tolerance -1.0 is invalid"),
        (("timm:test_resnet", "--tolerance", "nan"), 2, "tolerance nan is invalid"),
        (("timm:test_resnet", "--divisor", "0"), 2, "divisor 0 is invalid"),
        (("timm:test_resnet", "--ratio", "0"), 2, "ratio 0.0 is invalid"),
        (("timm:test_resnet", "--input-size", "3,x"), 2, "not a list of integers"),
        (("timm:test_resnet", "--match", "speed"), 2, "unknown"),
        (("timm:test_resnet", "--input-size", "3,64,64", "--tolerance", "1e-12"), 1, "Hint: use --tolerance"),
        (("timm:test_resnet", "--input-size", "3,64,64", "--divisor", "64"), 1, "below the smallest reachable"),
        (("timm:test_resnet", "--input-size", "5,64,64"), 1, "cannot evaluate node"),
    ],
)
def test_bad_input_is_one_line_with_exit_code(args, code, needle):
    res = invoke(*args)
    assert res.exit_code == code, (res.exit_code, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_file_factory_errors(tmp_path: Path):
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_xyz\n")
    res = invoke(f"{broken}:make")
    assert res.exit_code == 2 and "importing" in res.stderr and "not_a_module_xyz" in res.stderr
    good = tmp_path / "nets.py"
    good.write_text(
        "import torch.nn as nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3),"
        " nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))\n"
        "def fails():\n    raise RuntimeError('boom')\n"
    )
    assert invoke(f"{good}:nope").exit_code == 2
    res = invoke(f"{good}:fails")
    assert res.exit_code == 2 and "boom" in res.stderr
    ok = invoke(f"{good}:make", "--input-size", "3,32,32", "-t", "a", "--divisor", "1", "--json")
    assert ok.exit_code == 0, ok.stderr
    assert abs(json.loads(ok.stdout)["totals"]["flops"]["ratio"] - 1) <= 0.005


def test_debug_shows_the_traceback():
    res = invoke("timm:test_resnet", "--template", "zz", "--debug")
    assert res.exit_code != 0 and isinstance(res.exception, redistribute.TemplateError)


def test_templates_lists_every_builtin():
    res = invoke("templates", "--json")
    assert res.exit_code == 0
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert {"base", "a", "b", "c", "d", "e"} <= set(rows)
    assert rows["d"]["alias"] == "peak"
    assert rows["d"]["samples"] == [0.125, 0.562, 1.0, 0.562, 0.125] and rows["d"]["r"] == 8


def test_inspect_lists_groups_with_fixed_reasons():
    res = invoke("inspect", "timm:resnet50", "--json")
    assert res.exit_code == 0, res.stderr
    groups = json.loads(res.stdout)["groups"]
    assert len(groups) == 39
    fixed = {g["fixed"] for g in groups if g["fixed"]}
    assert fixed == {"model input", "model output"}
    assert max(len(g["producers"]) for g in groups) == 7
    table = invoke("inspect", "timm:test_resnet", "--input-size", "3,64,64")
    assert table.exit_code == 0 and "13 groups, 11 free, 2 fixed" in table.stdout


def test_python_dash_m_is_the_same_cli():
    res = subprocess.run(
        [sys.executable, "-m", "redistribute", "templates"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and "peak" in res.stdout
