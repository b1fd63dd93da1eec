"""The spec file: round trip, determinism, and every way a spec can be refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import INPUT, group_of, make_net, num_params, state_hash
from torch import nn

import redistribute
from redistribute import ConstraintError, SpecError, SpecMismatchError

SIZE = (3, 64, 64)
SOURCE = "timm:test_resnet"


@pytest.fixture(scope="module")
def resnet_plan() -> redistribute.Plan:
    m = redistribute.load_model(SOURCE)
    return redistribute.plan(m, "a", input_size=SIZE, divisor=4, source=SOURCE)


@pytest.fixture
def grouped_spec() -> dict:
    p = redistribute.plan(make_net("grouped"), "d", divisor=1, input_size=INPUT)
    return redistribute.spec_from_plan(p)


def _widths_of(model: nn.Module, size: tuple[int, ...]) -> list[int]:
    return [g.width for g in redistribute.trace(model, size).groups]


# -- round trip -----------------------------------------------------------------------------------------------
def test_spec_contents(resnet_plan: redistribute.Plan) -> None:
    spec = redistribute.spec_from_plan(resnet_plan)
    assert spec["format"] == "redistribute.spec" and spec["version"] == 1
    assert spec["source"] == SOURCE
    assert spec["input_size"] == list(SIZE)
    assert spec["template"] == "a" and spec["match"] == "flops" and spec["divisor"] == 4
    free = [g for g in resnet_plan.graph.groups if g.fixed is None]
    assert [e["signature"] for e in spec["groups"]] == [g.signature for g in free]
    assert [e["width"] for e in spec["groups"]] == [resnet_plan.widths[g.id] for g in free]
    assert [e["base"] for e in spec["groups"]] == [g.width for g in free]
    assert spec["cost"]["new"]["flops"] == resnet_plan.cost.flops
    assert spec["cost"]["base"]["params"] == resnet_plan.base_cost.params
    assert set(spec["versions"]) == {"redistribute", "timm", "torch"}
    json.dumps(spec)  # JSON-ready


def test_round_trip_through_file(resnet_plan: redistribute.Plan, tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    redistribute.save_spec(redistribute.spec_from_plan(resnet_plan), path)
    rebuilt = redistribute.load(path)
    assert _widths_of(rebuilt, SIZE) == list(resnet_plan.widths.values())
    assert num_params(rebuilt) == resnet_plan.cost.params
    with torch.no_grad():
        assert rebuilt.eval()(torch.randn(1, *SIZE)).shape == (1, 1000)
    # the folder holding spec.json works too
    rebuilt2 = redistribute.load(tmp_path)
    assert _widths_of(rebuilt2, SIZE) == list(resnet_plan.widths.values())
    assert not list(tmp_path.glob(".*.tmp")), "atomic write must not leave temporary files"


def test_round_trip_with_given_model_and_weights(tmp_path: Path) -> None:
    from redistribute.surgery.weights import save_weights

    base = make_net("residual")
    p = redistribute.plan(base, "d", divisor=1, input_size=INPUT)
    new = redistribute.apply(base, p)
    spec = redistribute.spec_from_plan(p)
    assert spec["source"] is None
    save_weights(new, tmp_path / "model.safetensors")
    loaded = redistribute.load(spec, model=make_net("residual"), weights=tmp_path / "model.safetensors")
    assert state_hash(loaded) == state_hash(new)
    x = torch.randn(1, *INPUT)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), new.eval()(x))


def test_load_with_model_leaves_that_model_alone_unless_inplace(grouped_spec: dict) -> None:
    m = make_net("grouped")
    before = state_hash(m)
    copy = redistribute.load(grouped_spec, model=m)
    assert copy is not m and state_hash(m) == before
    assert _widths_of(copy, INPUT) != _widths_of(m, INPUT)
    out = redistribute.load(grouped_spec, model=m, inplace=True)
    assert out is m
    assert _widths_of(out, INPUT) == _widths_of(copy, INPUT)
    assert _widths_of(out, INPUT) == [
        g.width
        if g.fixed is not None
        else next(e["width"] for e in grouped_spec["groups"] if e["signature"] == g.signature)
        for g in redistribute.trace(make_net("grouped"), INPUT).groups
    ]


def test_spec_records_grouped_conv_policy(grouped_spec: dict) -> None:
    assert grouped_spec["grouped_convs"] == {"conv2": "group count kept"}


def test_spec_bytes_are_deterministic(tmp_path: Path) -> None:
    def make() -> bytes:
        m = redistribute.load_model(SOURCE)
        p = redistribute.plan(m, "d", input_size=SIZE, divisor=4, source=SOURCE)
        path = tmp_path / "spec.json"
        redistribute.save_spec(redistribute.spec_from_plan(p), path)
        return path.read_bytes()

    first, second = make(), make()
    assert first == second
    assert first.endswith(b"\n")
    data = json.loads(first)
    assert list(data) == sorted(data)  # keys sorted


def test_same_plan_twice_same_bytes(resnet_plan: redistribute.Plan, tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    redistribute.save_spec(redistribute.spec_from_plan(resnet_plan), a)
    redistribute.save_spec(redistribute.spec_from_plan(resnet_plan), b)
    assert a.read_bytes() == b.read_bytes()


def test_spec_source_argument_overrides(resnet_plan: redistribute.Plan) -> None:
    assert redistribute.spec_from_plan(resnet_plan, source="timm:other")["source"] == "timm:other"


# -- refused specs --------------------------------------------------------------------------------------------
def test_non_json_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text("this is { not json")
    with pytest.raises(SpecError, match="not JSON") as exc:
        redistribute.load(path)
    assert exc.value.exit_code == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        redistribute.load(tmp_path / "nope.json")


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_other_version(resnet_plan: redistribute.Plan, tmp_path: Path, version: object) -> None:
    spec = redistribute.spec_from_plan(resnet_plan)
    spec["version"] = version
    with pytest.raises(SpecError, match="version"):
        redistribute.load(spec)
    path = tmp_path / "spec.json"
    redistribute.save_spec(spec, path)
    with pytest.raises(SpecError, match="version"):
        redistribute.load(path)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.pop("format"),
        lambda s: s.__setitem__("format", "other.spec"),
        lambda s: s.__setitem__("groups", {"a": 1}),
        lambda s: s["groups"][0].pop("width"),
        lambda s: s["groups"][0].__setitem__("width", "wide"),
    ],
)
def test_malformed_spec(resnet_plan: redistribute.Plan, edit) -> None:  # type: ignore[no-untyped-def]
    spec = copy.deepcopy(redistribute.spec_from_plan(resnet_plan))
    edit(spec)
    with pytest.raises(SpecError):
        redistribute.load(spec)


def test_json_that_is_not_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text("[1, 2, 3]")
    with pytest.raises(SpecError, match="not a redistribute spec"):
        redistribute.load(path)


def test_spec_without_source_needs_model(grouped_spec: dict) -> None:
    with pytest.raises(SpecError, match="source"):
        redistribute.load(grouped_spec)


def test_width_breaking_group_multiple(grouped_spec: dict) -> None:
    g = redistribute.trace(make_net("grouped"), INPUT)
    grp = group_of(g, "conv1")
    assert grp.multiple == 4
    entry = next(e for e in grouped_spec["groups"] if e["signature"] == grp.signature)
    entry["width"] = 30
    with pytest.raises(ConstraintError, match="multiple of 4") as exc:
        redistribute.load(grouped_spec, model=make_net("grouped"))
    assert exc.value.exit_code == 1


@pytest.mark.parametrize("width", [0, -8])
def test_width_not_positive(grouped_spec: dict, width: int) -> None:
    grouped_spec["groups"][0]["width"] = width
    with pytest.raises(ConstraintError):
        redistribute.load(grouped_spec, model=make_net("grouped"))


def test_any_positive_multiple_is_accepted(grouped_spec: dict) -> None:
    """Widths need not follow the template or divisor: any positive multiple of the group's own step loads."""
    sig = group_of(redistribute.trace(make_net("grouped"), INPUT), "conv1").signature
    entry = next(e for e in grouped_spec["groups"] if e["signature"] == sig)
    entry["width"] = 4
    m = redistribute.load(grouped_spec, model=make_net("grouped"))
    assert m.conv1.out_channels == 4 and m.conv2.in_channels == 4


def test_renamed_signature(resnet_plan: redistribute.Plan) -> None:
    spec = redistribute.spec_from_plan(resnet_plan)
    old = spec["groups"][3]["signature"]
    spec["groups"][3]["signature"] = old.replace("layer", "stage")
    with pytest.raises(SpecMismatchError) as exc:
        redistribute.load(spec)
    msg = str(exc.value)
    assert "not in the model" in msg and "not in the spec" in msg
    assert old in msg or spec["groups"][3]["signature"] in msg
    assert exc.value.exit_code == 1


def test_missing_group(resnet_plan: redistribute.Plan) -> None:
    spec = redistribute.spec_from_plan(resnet_plan)
    spec["groups"].pop()
    with pytest.raises(SpecMismatchError, match="1 model group"):
        redistribute.load(spec)


def test_spec_for_another_model(grouped_spec: dict) -> None:
    with pytest.raises(SpecMismatchError):
        redistribute.load(grouped_spec, model=make_net("plain"))


def test_corrupt_weights(grouped_spec: dict, tmp_path: Path) -> None:
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(redistribute.CheckpointError):
        redistribute.load(grouped_spec, model=make_net("grouped"), weights=bad)


def test_weights_of_other_widths(grouped_spec: dict, tmp_path: Path) -> None:
    from redistribute.surgery.weights import save_weights

    save_weights(make_net("grouped"), tmp_path / "base.safetensors")  # base widths, not the spec's
    with pytest.raises(redistribute.CheckpointError, match="shape"):
        redistribute.load(grouped_spec, model=make_net("grouped"), weights=tmp_path / "base.safetensors")


def test_error_hierarchy() -> None:
    for cls in (SpecError, SpecMismatchError, ConstraintError, redistribute.CheckpointError, redistribute.OutputError):
        assert issubclass(cls, redistribute.RedistributeError)
    assert issubclass(SpecError, redistribute.UsageError) and SpecError("x").exit_code == 2
    assert not issubclass(SpecMismatchError, redistribute.UsageError) and SpecMismatchError("x").exit_code == 1
    assert issubclass(redistribute.UnsupportedOpError, redistribute.TraceError)
    assert redistribute.SourceError("x").exit_code == 2
    assert redistribute.InfeasibleTargetError("x").exit_code == 1
