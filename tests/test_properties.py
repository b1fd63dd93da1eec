"""Property-based tests: random small CNNs and random plans never break the surgery.

Hypothesis draws architectures from building blocks (``tests/archs.py``); for each, a generator seeded by the
architecture makes three plans: random widths, a growing-only plan, and a template plan (random template, metric,
divisor and multiplier). The checks: the rebuilt model runs with the right output shape; the analytic FLOPs and
params equal what ``FlopCounterMode`` (conv + mm + addmm, halved) and ``parameters()`` count; growing preserves the
function; the spec file rebuilds the same model, weights included; the caller's model is untouched. Further tests
check that a spec's bytes do not depend on the trace or the process.

Three constructs once broke the surgery and have minimal repros below: ``nn.ChannelShuffle``, a split whose halves
are whole parts of a concatenation, and a grouped conv reading a concatenation; the generator draws them too.

The default run checks at least 200 distinct architectures (derandomized, so CI is deterministic). A long run::

    REDISTRIBUTE_HYPOTHESIS_EXAMPLES=5000 .venv/bin/pytest tests/test_properties.py -q -s
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from archs import (
    ACROSS_CHANNELS,
    DEFAULT_KINDS,
    KINDS,
    SIZE,
    Arch,
    Block,
    Net1d,
    aligned_split,
    archs,
    build,
    canonical,
    nets_1d,
)
from conftest import num_params, state_hash
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

import redistribute
from redistribute import ChannelGraph, ConstraintError, InfeasibleTargetError, Plan, TraceError
from redistribute.cli import app
from redistribute.planning.planner import plan_from_widths

#: Distinct architectures the property run checks at least. Hypothesis draws 5 % more examples: a few draws repeat
#: an architecture (e.g. a third stride-2 block is drawn with stride 1, and may equal another draw).
EXAMPLES = int(os.environ.get("REDISTRIBUTE_HYPOTHESIS_EXAMPLES", "200"))
SETTINGS = settings(
    max_examples=EXAMPLES + EXAMPLES // 20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
SEED = 1234
TEMPLATE_NAMES = ("base", "a", "b", "c", "d", "e", "increasing", "uniform", "decreasing", "peak", "valley")


# -- random plans ---------------------------------------------------------------------------------------------
def _settable(graph: ChannelGraph) -> list[redistribute.ChannelGroup]:
    return [g for g in graph.groups if g.fixed is None and g.tie is None]


def _step(g: redistribute.ChannelGroup) -> int:
    return math.lcm(max(g.multiple, 1), max(g.block, 1))


def _tie(graph: ChannelGraph, widths: dict[int, int]) -> dict[int, int]:
    """Set every tied group from its source; a source whose tie would not be whole stays at its base width."""
    for g in graph.groups:
        if g.tie is None or g.fixed is not None:
            continue
        src, num, den = g.tie
        w = widths.get(src, graph.groups[src].width)
        if (w * num) % den or ((w * num) // den) % _step(g):
            widths[src] = w = graph.groups[src].width
        widths[g.id] = w * num // den
    return widths


def random_widths(graph: ChannelGraph, rng: random.Random) -> dict[int, int]:
    """Any positive multiple of each group's step, from one step to about twice its base width."""
    widths = {g.id: _step(g) * rng.randint(1, 2 * (g.width // _step(g)) + 1) for g in _settable(graph)}
    return _tie(graph, widths)


def growing_widths(graph: ChannelGraph, rng: random.Random) -> dict[int, int]:
    """Every group keeps or grows its width by whole steps, and at least one grows."""
    groups = _settable(graph)
    widths = {g.id: g.width + _step(g) * rng.randint(0, 2) for g in groups}
    if groups and all(widths[g.id] == g.width for g in groups):
        widths[groups[0].id] += _step(groups[0])
    return _tie(graph, widths)


def random_template(rng: random.Random) -> str:
    """A built-in name or alias, or two to five control points."""
    if rng.random() < 0.6:
        return rng.choice(TEMPLATE_NAMES)
    inner = sorted(round(rng.uniform(0.05, 0.95), 3) for _ in range(rng.randint(0, 3)))
    return ",".join(f"{p:g}:{rng.choice((0.5, 1, 2, 4)):g}" for p in [0.0, *inner, 1.0])


@st.composite
def control_points(draw: st.DrawFn) -> str:
    inner = draw(st.lists(st.floats(0.05, 0.95), max_size=3, unique=True))
    values = draw(st.lists(st.sampled_from((0.5, 1.0, 2.0, 4.0)), min_size=len(inner) + 2, max_size=len(inner) + 2))
    return ",".join(f"{p:g}:{v:g}" for p, v in zip([0.0, *sorted(inner), 1.0], values, strict=True))


templates = st.one_of(st.sampled_from(TEMPLATE_NAMES), control_points())


# -- checks ---------------------------------------------------------------------------------------------------
def _run_counting_macs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """One eval-mode forward: its output and its MACs as ``FlopCounterMode`` counts them (see ``conftest``)."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        y = model(x)
    counts = counter.get_flop_counts()["Global"]
    flops = sum(v for k, v in counts.items() if str(k).split(".")[-1] in ("convolution", "mm", "addmm", "bmm"))
    return y, flops // 2


def _check_rebuilt(new: nn.Module, plan: Plan, arch: Arch, x: torch.Tensor) -> None:
    """The rebuilt model runs, has the right output shape, and costs what the plan says."""
    y, macs = _run_counting_macs(new, x)
    assert y.shape == (x.shape[0], arch.classes)
    assert torch.isfinite(y).all()
    assert macs == plan.cost.flops
    assert num_params(new) == plan.cost.params


def _check_spec_round_trip(model: nn.Module, new: nn.Module, plan: Plan, folder: Path) -> None:
    """The spec file holds the plan as JSON and rebuilds the same model: same widths, same weights."""
    path = folder / "spec.json"
    spec = redistribute.spec_from_plan(plan)
    redistribute.save_spec(spec, path)
    assert json.loads(path.read_bytes()) == json.loads(json.dumps(spec))
    torch.manual_seed(SEED)  # the same fresh initialisation for grown channels as ``new`` got
    loaded = redistribute.load(path, model=copy.deepcopy(model))
    assert state_hash(loaded) == state_hash(new)


def _check_architecture(arch: Arch, folder: Path) -> None:
    """Every property, on one architecture; its plans come from a generator seeded by the architecture."""
    rng = random.Random(repr(canonical(arch)))
    model = build(arch)
    before = state_hash(model)
    x = torch.randn(1, *SIZE, generator=torch.Generator().manual_seed(1))
    graph = redistribute.trace(model, SIZE)
    settable = _settable(graph)
    event(f"settable groups: {min(len(settable), 5)}{'+' if len(settable) >= 5 else ''}")

    # random widths: the rebuilt model runs, costs what the plan says, and its spec rebuilds it
    widths = random_widths(graph, rng)
    note(f"random widths: {widths}")
    plan = plan_from_widths(graph, widths)
    torch.manual_seed(SEED)
    new = redistribute.apply(model, plan)
    _check_rebuilt(new, plan, arch, x)
    _check_spec_round_trip(model, new, plan, folder)

    # growing only: the function is preserved
    if settable:
        widths = growing_widths(graph, rng)
        note(f"growing widths: {widths}")
        grow = plan_from_widths(graph, widths)
        assert grow.changed() and all(new_w >= old for old, new_w in grow.changed().values())
        grown = redistribute.apply(model, grow).eval()
        flagged = {r.group for r in redistribute.transfer_report(model, grow) if not r.preserving}
        if flagged:  # only a block that normalises across channels may make growth change the function
            event("growth reported not preserving")
            assert any(b.kind in ACROSS_CHANNELS for b in arch.blocks), flagged
        else:
            with torch.no_grad():
                torch.testing.assert_close(grown(x), model(x), atol=1e-5, rtol=1e-5)
        assert num_params(grown) == grow.cost.params > num_params(model)

    # a template plan: random template, metric, divisor and multiplier
    template, match, divisor = random_template(rng), rng.choice(("none", "flops", "params")), rng.choice((1, 2, 4))
    kwargs: dict = {"k": rng.uniform(0.25, 3.0)} if match == "none" else {"tolerance": 0.05}
    note(f"template plan: plan(graph, {template!r}, {match!r}, divisor={divisor}, **{kwargs})")
    if not graph.free_groups():
        with pytest.raises(TraceError, match="no channel group"):
            redistribute.plan(graph, template, match, divisor=divisor, **kwargs)
    else:
        try:
            tplan = redistribute.plan(graph, template, match, divisor=divisor, **kwargs)
        except InfeasibleTargetError as exc:  # a tiny net may not reach the target at this divisor
            event(f"infeasible {match}")
            assert "Hint" in str(exc) or "reach" in str(exc)
        else:
            event(f"template plan matched {match}")
            if match != "none":
                assert abs(tplan.achieved / tplan.target - 1) <= 0.05
            steps = tplan.distribution.steps
            assert all(tplan.widths[gid] % steps[gid] == 0 for gid in tplan.distribution.free)
            _check_rebuilt(redistribute.apply(model, tplan), tplan, arch, x)

    assert state_hash(model) == before, "the caller's model must not change"


# -- the property run -----------------------------------------------------------------------------------------
def test_random_architectures_never_break_the_surgery(record_property: pytest.RecordProperty) -> None:
    """Run the checks on ``EXAMPLES`` distinct generated architectures."""
    seen: set[Arch] = set()
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: intra-op threads only add overhead (and contend on a shared machine)
    try:
        with tempfile.TemporaryDirectory() as tmp:

            @SETTINGS
            @given(arch=archs())
            def check(arch: Arch) -> None:
                seen.add(canonical(arch))
                _check_architecture(arch, Path(tmp))

            check()
    finally:
        torch.set_num_threads(threads)
    record_property("distinct_architectures", len(seen))
    print(f"\n{len(seen)} distinct architectures checked in {time.perf_counter() - start:.0f} s")
    assert len(seen) >= EXAMPLES


def _check_net_1d(net: Net1d) -> None:
    """A 1-D net (Conv1d on ``(C, L)`` input): random widths rebuild at the plan's cost; growth preserves the
    function unless it normalises across channels, and then the transfer report says so."""
    rng = random.Random(repr(net))
    model = net.build()
    size = net.input_size
    x = torch.randn(1, *size, generator=torch.Generator().manual_seed(1))
    graph = redistribute.trace(model, size)
    settable = _settable(graph)
    assume_free = bool(settable)
    plan = plan_from_widths(graph, random_widths(graph, rng))
    new = redistribute.apply(model, plan).eval()
    y, macs = _run_counting_macs(new, x)
    assert y.shape == (1, net.classes) and macs == plan.cost.flops and num_params(new) == plan.cost.params
    if assume_free:
        grow = plan_from_widths(graph, growing_widths(graph, rng))
        grown = redistribute.apply(model, grow).eval()
        flagged = {r.group for r in redistribute.transfer_report(model, grow) if not r.preserving}
        if flagged:
            assert net.norm, flagged
        else:
            with torch.no_grad():
                torch.testing.assert_close(grown(x), model(x), atol=1e-5, rtol=1e-5)


@settings(SETTINGS, max_examples=max(20, EXAMPLES // 5))
@given(net=nets_1d())
def test_random_1d_nets_never_break_the_surgery(net: Net1d) -> None:
    _check_net_1d(net)


@settings(SETTINGS, max_examples=max(20, EXAMPLES // 10))
@given(arch=archs(), template=templates)
def test_spec_bytes_do_not_depend_on_the_trace(arch: Arch, template: str) -> None:
    """Two traces of two builds of one architecture give byte-identical spec files for the same plan."""
    specs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(2):
            graph = redistribute.trace(build(arch), SIZE)
            plan = (
                redistribute.plan(graph, template, "none", k=1.5)
                if graph.free_groups()
                else plan_from_widths(graph, {})
            )
            path = Path(tmp) / f"{i}.json"
            redistribute.save_spec(redistribute.spec_from_plan(plan, source="tests/archs.py:build"), path)
            specs.append(path.read_bytes())
    assert specs[0] == specs[1]
    assert json.loads(specs[0])["groups"] or not graph.free_groups()


def test_cli_spec_bytes_do_not_depend_on_the_process(tmp_path: Path) -> None:
    """The same command in another process, with another hash seed, writes a byte-identical spec."""
    args = ["timm:test_resnet", "--template", "e", "--input-size", "3,64,64", "--divisor", "4", "--tolerance", "0.02"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "here")])
    assert res.exit_code == 0, res.stderr
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    other = subprocess.run(
        [sys.executable, "-m", "redistribute", *args, "--out", str(tmp_path / "there")],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert other.returncode == 0, other.stderr
    here, there = (tmp_path / "here" / "spec.json").read_bytes(), (tmp_path / "there" / "spec.json").read_bytes()
    assert here == there
    assert json.loads(here)["template"] == "e" and json.loads(here)["groups"]


@pytest.mark.parametrize("kind", DEFAULT_KINDS)
def test_generator_builds_every_block_kind(kind: str) -> None:
    """Each block kind builds, runs and traces; shuffles fix their groups, the rest do not."""
    arch = Arch(stem=8, blocks=(Block(kind, out=8, mid=4, stride=2, groups=2), Block("conv", out=12)))
    model = build(arch)
    with torch.no_grad():
        assert model(torch.randn(1, *SIZE)).shape == (1, 10)
    graph = redistribute.trace(model, SIZE)
    reasons = " ".join(g.fixed or "" for g in graph.groups)
    if kind in ("shuffle", "shuffle_module"):  # (a chunk of one group makes it two copies of one half: free)
        assert {"shuffle": "reshape", "shuffle_module": "ChannelShuffle"}[kind] in reasons
    else:
        assert set(reasons.split()) <= {"model", "input", "output;", "input;", "output"}, reasons
        assert len(_settable(graph)) >= (2 if kind == "shared" else 3)  # a shared conv keeps its input's width


def test_aligned_splits_are_detected() -> None:
    assert aligned_split((8, 8)) and aligned_split((4, 4, 8)) and not aligned_split((8,)) and not aligned_split((4, 8))
    assert "shuffle_module" in KINDS and DEFAULT_KINDS == KINDS


# -- bugs the generator found (minimal repros, fixed) -------------------------------------------------------
def test_channel_shuffle_module_growth_preserves_function() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.shuffle, self.fc = nn.Conv2d(3, 8, 1), nn.ChannelShuffle(2), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.shuffle(self.conv(x)).mean((2, 3)))

    torch.manual_seed(0)
    m = Net().eval()
    g = redistribute.trace(m, (3, 8, 8))
    conv = next(grp for grp in g.groups if grp.producers == ("conv",))
    if conv.fixed is not None:  # fixing the group is a correct fix too: nothing can break then
        return
    new = redistribute.apply(m, plan_from_widths(g, {conv.id: 12})).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(new(x), m(x), atol=1e-5, rtol=1e-5)


def test_chunk_of_concatenation_survives_resizing_one_part() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
            self.left, self.right = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)
            self.fc = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.cat([self.a(x), self.b(x)], 1)
            left, right = y.chunk(2, dim=1)
            return self.fc(torch.cat([self.left(left), self.right(right)], 1).mean((2, 3)))

    m = Net().eval()
    g = redistribute.trace(m, (3, 8, 8))
    a = next(grp for grp in g.groups if grp.producers == ("a",))
    b = next(grp for grp in g.groups if grp.producers == ("b",))
    if a.fixed is not None:  # fixing the parts is a correct fix too
        return
    if b.tie is not None or a.tie is not None:  # tied equal: resizing one alone is refused before surgery
        with pytest.raises(ConstraintError, match="breaks its tie"):
            plan_from_widths(g, {a.id: 8})
        widths = {a.id: 8, b.id: 8}
    else:
        widths = {a.id: 8}
    new = redistribute.apply(m, plan_from_widths(g, widths)).eval()
    with torch.no_grad():
        assert new(torch.randn(1, 3, 8, 8)).shape == (1, 3)


def test_grouped_conv_over_concatenation_growth_preserves_function() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 8, 1)
            self.grouped = nn.Conv2d(12, 4, 1, groups=2)
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.grouped(torch.cat([self.a(x), self.b(x)], 1)).mean((2, 3)))

    torch.manual_seed(0)
    m = Net().eval()
    g = redistribute.trace(m, (3, 8, 8))
    a = next(grp for grp in g.groups if grp.producers == ("a",))
    if a.fixed is not None:  # fixing the parts is a correct fix too
        return
    new = redistribute.apply(m, plan_from_widths(g, {a.id: 6})).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(new(x), m(x), atol=1e-5, rtol=1e-5)
