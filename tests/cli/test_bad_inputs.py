"""The bad-input catalogue: every way a user can get the input wrong gives one line and the right exit code.

``tests/test_cli.py`` and ``tests/test_spec.py`` hold the first cases (unknown model, template, tolerance, spec
versions, ...); this file extends them. Every CLI case checks: exit code 2 for usage errors and 1 for failures,
exactly one ``error:`` line on stderr that names the problem, no traceback, nothing on stdout. Every API case checks
the exception class, its exit code, and that its message is one line naming the problem.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import INPUT, make_net
from torch import nn
from typer.testing import CliRunner

import redistribute
from redistribute import (
    CheckpointError,
    ConstraintError,
    InfeasibleTargetError,
    OutputError,
    RedistributeError,
    SourceError,
    SpecError,
    SpecMismatchError,
    TemplateError,
    TraceError,
    UsageError,
)
from redistribute.cli import app
from redistribute.planning.planner import plan_from_widths

runner = CliRunner()

NETS = """
import sys
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x).relu()).relu().mean((2, 3)))


class ItemNet(Tiny):
    def forward(self, x):
        x = self.conv1(x)
        scale = x.abs().max().item()
        return self.fc(self.conv2(x / scale).mean((2, 3)))


class ControlFlowNet(Tiny):
    def forward(self, x):
        x = self.conv1(x)
        if x.sum() > 0:
            x = x.relu()
        return self.fc(self.conv2(x).mean((2, 3)))


def tiny():
    return Tiny()


def item():
    return ItemNet()


def control_flow():
    return ControlFlowNet()


def not_a_module():
    return 42


def needs_width(width):
    return Tiny()


def multiline():
    raise RuntimeError("first line\\nsecond line")


def exits():
    sys.exit(3)


NOT_CALLABLE = 1
"""


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nets")
    (folder / "nets.py").write_text(NETS)
    (folder / "syntax.py").write_text("def make(:\n")
    (folder / "exits_on_import.py").write_text("import sys\nsys.exit(4)\n")
    (folder / "folder.py").mkdir()
    (folder / "brackets[v2].py").write_text(NETS)
    return folder


def _one_error_line(res, code: int, needle: str) -> str:  # type: ignore[no-untyped-def]
    assert res.exit_code == code, (res.exit_code, res.stderr, res.exception)
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, res.stderr
    assert needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    return lines[0]


def _cli(nets: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [a.replace("NETS/", f"{nets}/") for a in args])


# -- the command line ----------------------------------------------------------------------------------------
TINY = ("NETS/nets.py:tiny", "--input-size", "3,16,16")

CLI_CASES = [
    # model sources
    (("timm:",), 2, "unknown timm model ''"),
    (("torchvision:",), 2, "unknown torchvision model ''"),
    ((":tiny",), 2, "unknown model source prefix ''"),
    (("NETS/nets.txt:tiny",), 2, "unknown model source prefix"),
    (("timm:resnet[/]",), 2, "unknown timm model 'resnet[/]'"),  # rich markup in a name must not crash the CLI
    (("NETS/brackets[v2].py:nope",), 2, "brackets[v2].py' has no callable 'nope'"),
    (("NETS/folder.py:make",), 2, "is a folder, not a Python file"),
    (("NETS/nets.py:",), 2, "names no factory"),
    (("NETS/nets.py:NOT_CALLABLE",), 2, "has no callable 'NOT_CALLABLE'"),
    (("NETS/nets.py:tinny",), 2, "did you mean tiny"),
    (("NETS/nets.py:not_a_module",), 2, "returned int, not an nn.Module"),
    (("NETS/nets.py:needs_width",), 2, "missing 1 required positional argument: 'width'"),
    (("NETS/nets.py:multiline",), 2, "RuntimeError: first line"),
    (("NETS/nets.py:exits",), 2, "failed: SystemExit: 3"),
    (("NETS/syntax.py:make",), 2, "importing"),
    (("NETS/exits_on_import.py:make",), 2, "SystemExit: 4"),
    # templates and control points
    ((*TINY, "--template", "0:1,,1:1"), 2, "control point '' in template '0:1,,1:1' is not 'position:value'"),
    ((*TINY, "--template", "0:1:2,1:1"), 2, "is not 'position:value'"),
    ((*TINY, "--template", "0:nan,1:1"), 2, "is out of range"),
    ((*TINY, "--template", "0:-1,1:1"), 2, "values must be positive"),
    ((*TINY, "--template", "0:1,2:1"), 2, "positions go from 0 to 1"),
    ((*TINY, "--template", "0:1,0.5:2"), 2, "peak, uniform, valley"),  # the message lists the template names too
    ((*TINY, "--template", ""), 2, "is not a name"),
    # tolerance, divisor, ratio, scope
    ((*TINY, "--tolerance", "0"), 2, "tolerance 0.0 is invalid"),
    ((*TINY, "--tolerance", "inf"), 2, "tolerance inf is invalid"),
    ((*TINY, "--tolerance", "-0.01"), 2, "tolerance -0.01 is invalid"),
    ((*TINY, "--divisor", "-8"), 2, "divisor -8 is invalid"),
    ((*TINY, "--ratio", "nan"), 2, "ratio nan is invalid"),
    ((*TINY, "--ratio", "inf"), 2, "ratio inf is invalid"),
    ((*TINY, "--ratio", "-2"), 2, "ratio -2.0 is invalid"),
    ((*TINY, "--ratio", "0.5"), 2, "ratio 0.5 is invalid"),
    ((*TINY, "--scope", "everything"), 2, "scope 'everything' is unknown"),
    # malformed command lines (click's own errors, also one line)
    ((*TINY, "--divisor", "abc"), 2, "Invalid value for '--divisor'"),
    ((*TINY, "--tolerance", "x"), 2, "Invalid value for '--tolerance'"),
    ((*TINY, "--bogus"), 2, "No such option: --bogus"),
    (("inspect",), 2, "Missing argument"),
    (("templates", "--bogus"), 2, "No such option: --bogus"),
    # input sizes: malformed (usage) or rejected by the model (failure, naming the node)
    (("NETS/nets.py:tiny", "--input-size", "3"), 1, "cannot evaluate node 'conv1'"),  # 1-D: fine, not for a conv
    (("NETS/nets.py:tiny", "--input-size", "3,0,16"), 2, "input size '3,0,16' is invalid"),
    (("NETS/nets.py:tiny", "--input-size", "3,16,"), 2, "not a list of integers"),
    (("NETS/nets.py:tiny", "--input-size", "3,2,2"), 1, "cannot evaluate node 'conv1'"),
    (("NETS/nets.py:tiny", "--input-size", "4,16,16"), 1, "cannot evaluate node 'conv1'"),
    (("NETS/nets.py:tiny", "--input-size", "3,16,16,16"), 1, "cannot evaluate node 'conv1'"),
    (("inspect", "NETS/nets.py:tiny", "--input-size", "1,16,16"), 1, "cannot evaluate node 'conv1'"),
    # a model that cannot be traced: the node and the reason
    (("NETS/nets.py:item", "--input-size", "3,16,16"), 1, "cannot evaluate node 'item'"),
    (("inspect", "NETS/nets.py:item", "--input-size", "3,16,16"), 1, "cannot evaluate node 'item'"),
    # infeasible targets
    ((*TINY, "--divisor", "16"), 1, "below the smallest reachable"),
]


@pytest.mark.parametrize(("args", "code", "needle"), CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_cli_bad_input_is_one_line(nets: Path, args: tuple[str, ...], code: int, needle: str) -> None:
    _one_error_line(_cli(nets, *args), code, needle)


def test_cli_validates_options_before_building_the_model(nets: Path, tmp_path: Path) -> None:
    """A bad option is refused before the (slow) model build, and before --out is created."""
    out = tmp_path / "out"
    res = _cli(nets, "NETS/nets.py:tiny", "--tolerance", "nan", "--out", str(out))
    _one_error_line(res, 2, "tolerance nan is invalid")
    assert "building" not in res.stderr
    assert not out.exists()


def test_cli_untraceable_control_flow_names_the_node(nets: Path) -> None:
    line = _one_error_line(_cli(nets, "NETS/nets.py:control_flow", "--input-size", "3,16,16"), 1, "cannot")
    assert "'gt'" in line and "forward takes one tensor" not in line


def test_cli_unexpected_error_is_one_line_and_debug_shows_it(nets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug inside redistribute is still one line (exit 1) that points at --debug; --debug shows the traceback."""
    import redistribute.planning.planner

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("internal\nstate")

    monkeypatch.setattr(redistribute.planning.planner, "plan", broken)
    line = _one_error_line(_cli(nets, *TINY), 1, "unexpected KeyError")
    assert "--debug" in line
    res = _cli(nets, *TINY, "--debug")
    assert res.exit_code != 0 and isinstance(res.exception, KeyError)


# -- output folders --------------------------------------------------------------------------------------------
def test_out_is_a_file(nets: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("mine")
    _one_error_line(_cli(nets, *TINY, "--out", str(target)), 1, "is a file, not a folder")
    assert target.read_text() == "mine"


def test_out_below_a_file(nets: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("mine")
    _one_error_line(_cli(nets, *TINY, "--out", str(tmp_path / "taken" / "sub")), 1, "cannot create output folder")


def test_out_already_holds_weights_only(nets: Path, tmp_path: Path) -> None:
    (tmp_path / "weights.safetensors").write_bytes(b"old")
    _one_error_line(_cli(nets, *TINY, "--out", str(tmp_path)), 1, "already holds weights.safetensors")
    assert (tmp_path / "weights.safetensors").read_bytes() == b"old"
    assert not (tmp_path / "spec.json").exists()


def _unwritable_for_root() -> Path | None:
    """A folder that even root cannot write to (sysfs), when this machine has one."""
    path = Path("/sys")
    try:
        (path / ".redistribute-probe").touch()
    except OSError:
        return path
    return None  # pragma: no cover


@pytest.mark.skipif(_unwritable_for_root() is None, reason="needs a folder nobody can write to")
def test_out_not_writable_even_for_root(nets: Path) -> None:
    """os.access says yes to root everywhere; the probe file finds the truth before any work is done."""
    res = _cli(nets, *TINY, "--out", "/sys")
    _one_error_line(res, 1, "output folder '/sys' is not writable")
    assert "building" not in res.stderr


def test_out_not_writable_by_permissions(nets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import redistribute.io

    access = os.access
    monkeypatch.setattr(redistribute.io.os, "access", lambda path, mode: mode != os.W_OK and access(path, mode))
    _one_error_line(_cli(nets, *TINY, "--out", str(tmp_path)), 1, "is not writable")


def test_disk_full_while_writing_is_an_output_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError while writing (ENOSPC) becomes an OutputError naming the file; the old file stays."""
    import errno

    import redistribute.surgery.weights

    target = tmp_path / "w.safetensors"
    target.write_bytes(b"old")

    def full(model: nn.Module, path: str | os.PathLike[str]) -> None:
        Path(path).write_bytes(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(redistribute.surgery.weights, "write_weights", full)
    with pytest.raises(OutputError, match="No space left on device") as exc:
        redistribute.save_weights(make_net("plain"), target)
    assert str(target) in str(exc.value) and exc.value.exit_code == 1
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


@pytest.mark.parametrize("save", ["spec", "weights"])
def test_save_into_missing_folder(tmp_path: Path, save: str) -> None:
    target = tmp_path / "missing" / "file"
    with pytest.raises(OutputError, match="No such file or directory"):
        if save == "spec":
            redistribute.save_spec({"format": "redistribute.spec"}, target)
        else:
            redistribute.save_weights(make_net("plain"), target)


# -- the Python API --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph() -> redistribute.ChannelGraph:
    return redistribute.trace(make_net("plain"), INPUT)


def _raises(cls: type[RedistributeError], needle: str, fn, *args, **kwargs) -> RedistributeError:  # type: ignore[no-untyped-def]
    with pytest.raises(cls) as exc:
        fn(*args, **kwargs)
    msg = str(exc.value)
    assert needle in msg, msg
    assert "\n" not in msg
    assert exc.value.exit_code == (2 if issubclass(cls, UsageError) else 1)
    return exc.value


API_PLAN_CASES = [
    (UsageError, "k=nan is invalid", {"match": "none", "k": float("nan")}),
    (UsageError, "k=inf is invalid", {"match": "none", "k": float("inf")}),
    (UsageError, "k=-1.0 is invalid", {"match": "none", "k": -1.0}),
    (UsageError, "k='x' is invalid", {"match": "none", "k": "x"}),
    (UsageError, "tolerance True is invalid", {"tolerance": True}),
    (UsageError, "tolerance 'x' is invalid", {"tolerance": "x"}),
    (UsageError, "tolerance 0 is invalid", {"tolerance": 0}),
    (UsageError, "divisor True is invalid", {"divisor": True}),
    (UsageError, "divisor 2.5 is invalid", {"divisor": 2.5}),
    (UsageError, "ratio 'x' is invalid", {"ratio": "x"}),
    (UsageError, "ratio 0.5 is invalid", {"ratio": 0.5}),
    (UsageError, "target nan is invalid", {"target": float("nan")}),
    (UsageError, "target -5.0 is invalid", {"target": -5.0}),
    (UsageError, "match metric 'speed' is unknown", {"match": "speed"}),
    (InfeasibleTargetError, "below the smallest reachable", {"target": 1.0}),
    (InfeasibleTargetError, "below the smallest reachable", {"match": "params", "target": 10.0}),
    (InfeasibleTargetError, "above the 1048576 redistribute builds", {"target": 1e20}),
]


@pytest.mark.parametrize(("cls", "needle", "kwargs"), API_PLAN_CASES, ids=[c[1] for c in API_PLAN_CASES])
def test_plan_refuses_bad_options(graph: redistribute.ChannelGraph, cls: type, needle: str, kwargs: dict) -> None:
    _raises(cls, needle, redistribute.plan, graph, "a", **kwargs)


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        (lambda p: float("nan"), "gives nan at p=0"),
        (lambda p: -1.0, "gives -1.0 at p=0"),
        (lambda p: 0.0 if p > 0.5 else 1.0, "gives 0.0 at p=1"),
        (lambda p: 1 / 0, "failed at p=0: ZeroDivisionError"),
        (lambda p: "wide", "failed at p=0: ValueError"),
        ("0:1,0.5", "(or a template name: a, b, base"),
    ],
)
def test_plan_refuses_bad_templates(graph: redistribute.ChannelGraph, template: object, needle: str) -> None:
    _raises(TemplateError, needle, redistribute.plan, graph, template)


def test_plan_refuses_what_is_not_a_model() -> None:
    _raises(UsageError, "plan needs an nn.Module or a ChannelGraph", redistribute.plan, 42, "a")


def test_untraceable_model_names_the_node() -> None:
    class ItemNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) * self.conv(x).max().item()

    err = _raises(TraceError, "cannot evaluate node 'item'", redistribute.trace, ItemNet(), (3, 8, 8))
    assert "meta" in str(err)


def test_plan_from_widths_refuses_absurd_widths(graph: redistribute.ChannelGraph) -> None:
    gid = graph.free_groups()[0].id
    _raises(ConstraintError, "up to 1048576", plan_from_widths, graph, {gid: 1 << 30})
    _raises(ConstraintError, "breaks its constraint", plan_from_widths, graph, {gid: 8.5})


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"bogus": 1}, "unexpected keyword argument 'bogus'"),
        ({"num_classes": "ten"}, "building timm:test_resnet(num_classes='ten')"),
    ],
)
def test_load_model_refuses_bad_factory_arguments(kwargs: dict, needle: str) -> None:
    _raises(SourceError, needle, redistribute.load_model, "timm:test_resnet", **kwargs)


def test_load_model_refuses_bad_torchvision_arguments() -> None:
    _raises(
        SourceError, "building torchvision:resnet18(bogus=1)", redistribute.load_model, "torchvision:resnet18", bogus=1
    )


def test_failed_import_leaves_no_half_module(nets: Path) -> None:
    before = set(sys.modules)
    _raises(SourceError, "importing", redistribute.load_model, f"{nets}/syntax.py:make")
    assert not [m for m in set(sys.modules) - before if m.startswith("_redistribute_user_")]


# -- specs -----------------------------------------------------------------------------------------------------
@pytest.fixture
def spec() -> dict:
    p = redistribute.plan(make_net("plain"), "a", divisor=1, tolerance=0.05, input_size=INPUT)
    return redistribute.spec_from_plan(p)


SPEC_EDITS = [
    ("input_size", "abc", "input_size 'abc'"),
    ("input_size", [3, -1, 4], "input_size [3, -1, 4]"),
    ("input_size", [[3]], "input_size [[3]]"),
    ("divisor", "x", "divisor 'x'"),
    ("divisor", 0, "divisor 0"),
    ("k", "x", "k 'x'"),
    ("tolerance", [1], "tolerance [1]"),
    ("template", 5, "template 5"),
    ("source", 5, "source 5"),
    ("model_kwargs", [1], "model_kwargs [1]"),
    ("versions", "1.0", "versions '1.0'"),
    ("version", True, "format version True"),
]


@pytest.mark.parametrize(("key", "value", "needle"), SPEC_EDITS, ids=[f"{k}={v!r}" for k, v, _ in SPEC_EDITS])
def test_spec_with_bad_field(spec: dict, key: str, value: object, needle: str) -> None:
    spec[key] = value
    _raises(SpecError, needle, redistribute.load, spec, model=make_net("plain"))


@pytest.mark.parametrize(
    ("width", "needle"),
    [(8.7, "needs a 'signature' and an integer 'width'"), (True, "integer 'width'"), (10**12, "the spec is corrupt")],
)
def test_spec_with_bad_width(spec: dict, width: object, needle: str) -> None:
    spec["groups"][0]["width"] = width
    _raises(SpecError, needle, redistribute.load, spec, model=make_net("plain"))


def test_spec_listing_a_group_twice(spec: dict) -> None:
    spec["groups"].append(dict(spec["groups"][0]))
    _raises(SpecError, "lists group 'conv1' twice", redistribute.load, spec, model=make_net("plain"))


def test_spec_naming_layers_the_model_lacks(spec: dict) -> None:
    spec["groups"][0]["signature"] = "encoder.conv_in"
    err = _raises(
        SpecMismatchError, "not in the model, first 'encoder.conv_in'", redistribute.load, spec, model=make_net("plain")
    )
    assert "not in the spec, first 'conv1'" in str(err)


def test_spec_input_size_the_model_rejects(spec: dict) -> None:
    spec["input_size"] = [5, 32, 32]
    _raises(TraceError, "cannot evaluate node 'conv1'", redistribute.load, spec, model=make_net("plain"))


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "is not JSON (Expecting value at line 1)"),
        (b"\xff\xfe\x00garbage", "not UTF-8 text"),
        (b'{"format": "redistribute.spec", "version": 1, "groups": [], "k": NaN}', "NaN is not a JSON number"),
        (b"[1, 2]", "is not a redistribute spec"),
    ],
)
def test_spec_file_that_is_not_a_spec(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "spec.json"
    path.write_bytes(content)
    _raises(SpecError, needle, redistribute.load, path, model=make_net("plain"))


def test_spec_folder_without_a_spec(tmp_path: Path) -> None:
    _raises(SpecError, "spec.json': No such file or directory", redistribute.load, tmp_path)


@pytest.mark.parametrize("spec_arg", [42, [1, 2], None])
def test_spec_of_the_wrong_type(spec_arg: object) -> None:
    _raises(SpecError, "is neither a spec dict nor a path", redistribute.load, spec_arg)


def test_spec_that_cannot_be_written_leaves_no_file(spec: dict, tmp_path: Path) -> None:
    spec["k"] = float("nan")
    _raises(SpecError, "cannot be written as JSON", redistribute.save_spec, spec, tmp_path / "spec.json")
    spec["k"] = object()
    _raises(SpecError, "cannot be written as JSON", redistribute.save_spec, spec, tmp_path / "spec.json")
    assert list(tmp_path.iterdir()) == []


# -- checkpoints -----------------------------------------------------------------------------------------------
@pytest.fixture
def saved(spec: dict, tmp_path: Path) -> tuple[dict, Path]:
    built = redistribute.load(spec, model=make_net("plain"))
    path = tmp_path / "w.safetensors"
    redistribute.save_weights(built, path)
    return spec, path


def test_checkpoint_missing(spec: dict, tmp_path: Path) -> None:
    _raises(
        CheckpointError,
        "cannot read weights",
        redistribute.load,
        spec,
        model=make_net("plain"),
        weights=tmp_path / "no.safetensors",
    )


def test_checkpoint_truncated(saved: tuple[dict, Path]) -> None:
    spec, path = saved
    path.write_bytes(path.read_bytes()[:-100])
    _raises(CheckpointError, "cannot read weights", redistribute.load, spec, model=make_net("plain"), weights=path)


def test_checkpoint_with_a_key_the_model_lacks(saved: tuple[dict, Path]) -> None:
    from safetensors.torch import load_file, save_file

    spec, path = saved
    state = load_file(str(path))
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(path))
    _raises(
        CheckpointError,
        "key 'extra.weight' that the model (PlainNet) lacks",
        redistribute.load,
        spec,
        model=make_net("plain"),
        weights=path,
    )


def test_checkpoint_lacking_a_key(saved: tuple[dict, Path]) -> None:
    from safetensors.torch import load_file, save_file

    spec, path = saved
    state = load_file(str(path))
    del state["fc.bias"]
    save_file(state, str(path))
    _raises(CheckpointError, "lacks 'fc.bias'", redistribute.load, spec, model=make_net("plain"), weights=path)


def test_checkpoint_of_a_model_with_tied_weights_loads(tmp_path: Path) -> None:
    """safetensors stores a tied tensor once; loading it back must not call the other name missing."""

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight

    from redistribute.surgery.weights import load_weights_into

    src, dst = Tied(), Tied()
    redistribute.save_weights(src, tmp_path / "w.safetensors")
    load_weights_into(dst, tmp_path / "w.safetensors")
    assert torch.equal(dst.a.weight, src.a.weight) and dst.b.weight is dst.a.weight


def test_multiline_errors_reach_the_user_as_one_line(nets: Path) -> None:
    """A factory's two-line error is one line on stderr; a good run after it still prints clean JSON."""
    res = _cli(nets, "NETS/nets.py:multiline")
    _one_error_line(res, 2, "failed: RuntimeError: first line")
    assert "second line" not in res.stderr
    ok = _cli(nets, *TINY, "--template", "b", "--tolerance", "0.2", "--divisor", "1", "--json")
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["template"] == "b"


# -- known bugs outside this modules (minimal repros) --------------------------------------------------
def test_apply_refuses_a_plan_for_another_model() -> None:
    plan = redistribute.plan(make_net("plain"), "a", divisor=1, tolerance=0.05, input_size=INPUT)
    with pytest.raises(RedistributeError, match="PlainNet"):
        redistribute.apply(make_net("residual"), plan)


def test_trace_reads_an_input_size_string_as_the_cli_does() -> None:
    assert redistribute.trace(make_net("plain"), "3,32,32").input_shape == (1, 3, 32, 32)
    assert redistribute.trace(make_net("plain"), "3x32x32").input_shape == (1, 3, 32, 32)


@pytest.mark.parametrize(("model", "size"), [("plain", "3,a,32"), ("plain", (3, 32.5, 32)), ("resnet50", INPUT)])
def test_trace_validates_its_arguments(model: str, size: object) -> None:
    m = make_net(model) if model == "plain" else model
    with pytest.raises(UsageError):
        redistribute.trace(m, size)  # type: ignore[arg-type]
