"""The template study: compare, its measurements, latency matching, the table/CSV/JSON outputs and the plot."""

from __future__ import annotations

import csv
import doctest
import io
import json
import math
import re
import time
from pathlib import Path

import pytest
import timm
import torch
from conftest import flop_counter_macs, leaf_output_bytes, make_net, num_params
from torch import nn
from typer.testing import CliRunner

import redistribute
from redistribute.cli import app
from redistribute.study import comparison as _compare
from redistribute.study import latency as _latency
from redistribute.study import plot as _plot
from redistribute.study import timing as _timing
from redistribute.study.timing import Timing, measure_latency, peak_memory

SIZE = (3, 64, 64)
FAST = {"input_size": SIZE, "divisor": 1, "min_time": 0.05}
CLI_FAST = ("--input-size", "3,64,64", "--divisor", "1", "--min-time", "0.05")
TEMPLATES = ["base", "a", "b", "c", "d", "e"]

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_resnet").eval()


@pytest.fixture(scope="module")
def study(resnet: nn.Module) -> redistribute.Comparison:
    """Every template on timm's test_resnet at 64x64, measured (one thread, short timings)."""
    return redistribute.compare(resnet, source="timm:test_resnet", **FAST)


# -- compare ------------------------------------------------------------------------------------------------------
def test_compare_rows_are_matched_built_and_measured(study: redistribute.Comparison, resnet: nn.Module) -> None:
    assert [r.template for r in study.rows] == TEMPLATES
    base = study.base
    assert base.k == 1.0 and base.params == num_params(resnet)
    for r in study.rows:
        assert abs(r.flops / base.flops - 1) <= 0.005, r.template
        assert r.plan is not None and r.plan.cost.flops == r.flops
        built = redistribute.apply(resnet, r.plan)
        assert num_params(built) == r.params  # the row's params are the rebuilt model's
        assert r.latency_ms is not None and r.latency_ms > 0 and r.throughput is not None
        assert r.throughput == pytest.approx(1000.0 / r.latency_ms)
        assert r.peak_memory is not None and 0 < r.peak_memory < r.memory
    assert len({r.params for r in study.rows}) == 6  # six different models
    assert study.match == "flops" and study.threads == 1 and study.device == "cpu" and study.measured


def test_records_carry_ratios_to_base(study: redistribute.Comparison) -> None:
    recs = study.records()
    assert list(recs[0])[: len(_compare.COLUMNS)] == list(_compare.COLUMNS)
    for rec, row in zip(recs, study.rows, strict=True):
        assert rec["params_ratio"] == pytest.approx(row.params / study.base.params)
        assert rec["memory"] == round(row.memory) and isinstance(rec["memory"], int)  # bytes
        assert rec["latency_ratio"] == pytest.approx(row.latency_ms / study.base.latency_ms)
        assert rec["throughput_ratio"] == pytest.approx(row.throughput / study.base.throughput)
        assert rec["peak_memory_ratio"] == pytest.approx(row.peak_memory / study.base.peak_memory)
    assert all(recs[0][k] == 1.0 for k in recs[0] if k.endswith("_ratio"))


def test_analytic_memory_equals_hook_measurement(study: redistribute.Comparison, resnet: nn.Module) -> None:
    x = torch.randn(1, *SIZE)
    for r in study.rows:
        assert r.plan is not None
        assert r.memory == leaf_output_bytes(redistribute.apply(resnet, r.plan).eval(), x), r.template


def test_flops_cross_check_conventions(resnet: nn.Module) -> None:
    """FlopCounterMode/2 equals ours; ptflops' aten backend adds the classifier's bias (addmm); thop adds BN and
    pooling, so it is higher."""
    checked = redistribute.compare(resnet, ["d"], measure=False, check_flops=True, **FAST)
    classes = checked.base.plan.graph.uses[-1]  # the classifier, the last layer
    assert classes.kind == "linear" and classes.bias
    assert [r.template for r in checked.rows] == ["base", "d"]
    for r in checked.rows:
        assert r.counts is not None
        assert r.counts.flop_counter == r.flops
        assert r.counts.ptflops == r.flops + classes.out_shape[-1]
        assert r.counts.thop > r.flops


def test_compare_adds_base_and_reports_progress(resnet: nn.Module) -> None:
    calls: list[tuple[str, int, int]] = []
    r = redistribute.compare(resnet, ["peak", "a"], measure=False, progress=lambda *a: calls.append(a), **FAST)
    assert [row.template for row in r.rows] == ["base", "d", "a"]
    assert all(row.latency_ms is None and row.peak_memory is None for row in r.rows)
    assert r.records()[1]["latency_ratio"] is None
    done = [d for _, d, _ in calls]
    assert done == sorted(done) and calls[-1][1] == calls[-1][2] and calls[-1][0] == "done"
    assert any("d: planning" in m for m, _, _ in calls)


def test_compare_matches_params_and_memory(resnet: nn.Module) -> None:
    flops_b = redistribute.plan(resnet, "b", divisor=1, input_size=SIZE)
    for metric in ("params", "memory"):
        r = redistribute.compare(resnet, ["b", "e"], metric, measure=False, **FAST)
        assert r.match == metric
        for row in r.rows:
            assert row.plan is not None and row.plan.match == metric
            assert abs(getattr(row, metric) / getattr(r.base, metric) - 1) <= 0.005
        assert r.row("b").plan.widths != flops_b.widths  # it really matched another metric than FLOPs


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"match": "speed"}, redistribute.UsageError, "unknown for compare"),
        ({"match": "latency", "measure": False}, redistribute.UsageError, "needs measurements"),
        ({"templates": []}, redistribute.UsageError, "non-empty"),
        ({"templates": ["zz"]}, redistribute.TemplateError, "unknown template"),
        ({"threads": 0}, redistribute.UsageError, "thread count 0"),
        ({"device": "tpu"}, redistribute.UsageError, "device"),
    ],
)
def test_compare_refuses_bad_input(resnet: nn.Module, kwargs: dict, error: type, needle: str) -> None:
    with pytest.raises(error, match=needle):
        redistribute.compare(resnet, **{"input_size": SIZE, **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is missing")
def test_cuda_without_cuda_is_a_usage_error(resnet: nn.Module) -> None:
    with pytest.raises(redistribute.UsageError, match="CUDA is not available"):
        redistribute.compare(resnet, ["b"], device="cuda", input_size=SIZE)


# -- timing and peak memory -----------------------------------------------------------------------------------------
def test_peak_memory_follows_live_tensors() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    one = 8 * 32 * 32 * 4
    assert peak_memory(nn.Sequential(conv, nn.ReLU()), (3, 32, 32)) == 2 * one  # conv out and relu out, both alive
    assert peak_memory(nn.Sequential(conv, nn.ReLU(inplace=True)), (3, 32, 32)) == one  # in place: one storage
    chain = nn.Sequential(conv, nn.ReLU(), nn.ReLU(), nn.ReLU(), nn.ReLU())
    assert peak_memory(chain, (3, 32, 32)) == 2 * one  # each freed when the next is done: not the sum
    assert peak_memory(nn.Sequential(conv, nn.ReLU()), (3, 32, 32), batch_size=3) == 6 * one


def test_peak_memory_excludes_weights_and_input() -> None:
    big = nn.Linear(2048, 16)  # 131 k weights, 64-byte output
    assert peak_memory(big, (2048,)) == 16 * 4
    assert peak_memory(nn.Sequential(nn.Flatten(), nn.Unflatten(1, (3, 1024))), (3, 32, 32)) == 0  # views only


def test_measure_latency_leaves_the_model_and_threads_alone(resnet: nn.Module) -> None:
    net = make_net("plain").train()
    threads = torch.get_num_threads()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    t = measure_latency(net, (3, 32, 32), batch_size=4, min_time=0.05, threads=1, peak=True)
    assert net.training and all(m.training for m in net.modules())
    assert torch.get_num_threads() == threads
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN stats untouched
    assert t.blocks >= 3 and t.batch_size == 4 and t.threads == 1 and t.device == "cpu"
    assert t.throughput == pytest.approx(4 / (t.median_ms / 1000))
    assert t.peak_memory == peak_memory(net, (3, 32, 32), batch_size=4)
    assert t.iqr_ms >= 0 and t.calls_per_block >= 1


def test_relative_spread() -> None:
    assert _timing.relative_spread([9.0, 10.0, 10.0, 11.0, 12.0]) == pytest.approx(0.1)
    assert _timing.relative_spread([5.0]) == 0.0


# -- latency matching -----------------------------------------------------------------------------------------------
def _fake_latency(model: nn.Module, input_size: tuple[int, ...], **kwargs: object) -> Timing:
    """A deterministic stand-in for measure_latency: MACs plus a cost per channel, so at equal FLOPs a template
    with more channels is slower and matching latency needs other widths than matching FLOPs."""
    macs = flop_counter_macs(model, torch.randn(1, *input_size))
    channels = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    return Timing(macs / 1e6 + 0.01 * channels, 0.0, 3, 1, 1, "cpu", 1)


def test_latency_search_matches_and_never_rebuilds_the_same_widths(
    monkeypatch: pytest.MonkeyPatch, resnet: nn.Module
) -> None:
    from redistribute.surgery import rebuild as _surgery

    monkeypatch.setattr(_latency, "measure_latency", _fake_latency)
    built: list[tuple[int, ...]] = []
    real_apply = _surgery.apply

    def counting_apply(model: nn.Module, p: redistribute.Plan, **kw: object) -> nn.Module:
        built.append(tuple(sorted(p.widths.items())))
        return real_apply(model, p, **kw)

    monkeypatch.setattr(_surgery, "apply", counting_apply)
    base_ms = _fake_latency(resnet, SIZE).median_ms
    g = redistribute.trace(resnet, SIZE)
    flops_b = redistribute.apply(resnet, redistribute.plan(g, "b", divisor=1))
    assert abs(_fake_latency(flops_b, SIZE).median_ms / base_ms - 1) > 0.02  # FLOPs-matched is not latency-matched
    built.clear()
    lm = redistribute.match_latency(resnet, "b", graph=g, tolerance=0.01, divisor=1, trials=2)
    assert lm.noise == 0.0 and lm.tolerance == 0.01
    assert abs(lm.error) <= 0.01 and lm.base.median_ms == base_ms
    assert _fake_latency(lm.model, SIZE).median_ms == lm.timing.median_ms  # the returned model is the one timed
    assert lm.plan.match == "latency" and lm.plan.target == base_ms and lm.plan.template == "b"
    assert lm.builds == len(built) == len(set(built)) >= 2 and len(lm.history) >= lm.builds
    again = redistribute.match_latency(resnet, "base", graph=g, tolerance=0.01, divisor=1, trials=2)
    assert again.builds == 0 and again.model is resnet and again.error == 0  # the base is reused, not rebuilt


def test_latency_tolerance_is_at_least_the_base_noise(monkeypatch: pytest.MonkeyPatch, resnet: nn.Module) -> None:
    medians = iter([10.0, 12.0, 9.0, 11.0, 10.0])
    monkeypatch.setattr(_latency, "measure_latency", lambda *a, **k: Timing(next(medians), 0.0, 3, 1, 1, "cpu", 1))
    timing, noise = _latency.base_latency(resnet, SIZE, trials=5)
    assert timing.median_ms == 10.0 and noise == pytest.approx(0.1)
    monkeypatch.setattr(_latency, "measure_latency", _fake_latency)
    lm = redistribute.match_latency(resnet, "base", tolerance=0.01, input_size=SIZE, base=(timing, noise), divisor=1)
    assert lm.tolerance == pytest.approx(0.1) and "max(--tolerance, base noise 10.00%)" in lm.describe()


def test_latency_search_gives_up_with_the_closest(monkeypatch: pytest.MonkeyPatch, resnet: nn.Module) -> None:
    monkeypatch.setattr(_latency, "measure_latency", _fake_latency)
    with pytest.raises(
        redistribute.InfeasibleTargetError, match=r"cannot match latency .* after 1 build\(s\): the closest"
    ):
        redistribute.match_latency(resnet, "b", input_size=SIZE, tolerance=1e-6, divisor=1, trials=1, max_builds=1)


# -- command line ---------------------------------------------------------------------------------------------------
def _table_rows(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """Header and rows of the plain table the CLI prints off a terminal (columns 2+ spaces apart)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["template"])
    header = re.split(r"\s{2,}", lines[start].strip())
    rows = {}
    for line in lines[start + 1 :]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) != len(header):
            break
        rows[cells[0]] = cells
    return header, rows


def _close(printed: str, value: float) -> bool:
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(float(printed) - value) <= 0.5 * 10**-decimals + 1e-12


def test_cli_table_and_csv_carry_the_same_numbers(tmp_path: Path) -> None:
    out = tmp_path / "rows.csv"
    res = invoke("compare", "timm:test_resnet", *CLI_FAST, "--csv", str(out))
    assert res.exit_code == 0, res.stderr
    header, rows = _table_rows(res.stdout)
    assert "done" in res.stderr and "19/19" in res.stderr and "19/19" not in res.stdout  # progress: stderr only
    recs = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["template"] for r in recs] == TEMPLATES == list(rows)
    unit = {"G": 1e9, "M": 1e6, "K": 1e3}
    fdiv = unit[re.search(r"FLOPs \((\w)\)", " ".join(header)).group(1)]
    pdiv = unit[re.search(r"params \((\w)\)", " ".join(header)).group(1)]
    columns = [("flops", 2, fdiv), ("params", 3, pdiv), ("memory", 4, 2**20), ("peak_memory", 5, 2**20),
               ("latency_ms", 6, 1), ("throughput", 7, 1)]  # fmt: skip
    for rec in recs:
        cells = rows[rec["template"]]
        for key, col, div in columns:
            value, ratio = re.fullmatch(r"([\d.]+)(?: ±[\d.]+)? \(([\d.]+)x~?\)", cells[col]).groups()
            assert _close(value, float(rec[key]) / div), (key, cells[col], rec[key])
            assert _close(ratio, float(rec[key.removesuffix("_ms") + "_ratio"])), (key, ratio)


def test_cli_json_and_csv_carry_the_same_numbers(tmp_path: Path) -> None:
    out = tmp_path / "rows.csv"
    res = invoke("compare", "timm:test_resnet", *CLI_FAST, "--templates", "a,e", "--json", "--csv", str(out))
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    recs = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["template"] for r in data["rows"]] == [r["template"] for r in recs] == ["base", "a", "e"]
    assert data["match"] == "flops" and data["threads"] == 1 and data["input_size"] == [3, 64, 64]
    for j, c in zip(data["rows"], recs, strict=True):
        assert set(j) == set(c) == set(_compare.COLUMNS)
        for key, value in j.items():
            if value is None or isinstance(value, bool):  # the base's own noise flag; CSV writes None as ""
                assert c[key] == ("" if value is None else str(value)), key
                continue
            assert (str(value) if isinstance(value, str) else float(c[key])) == value, key


def test_cli_check_flops_prints_the_counters() -> None:
    res = invoke("compare", "timm:test_resnet", *CLI_FAST, "--templates", "d", "--no-measure", "--check-flops")
    assert res.exit_code == 0, res.stderr
    assert "FLOPs cross-check" in res.stdout and "thop" in res.stdout and "ptflops (aten)" in res.stdout
    _, rows = _table_rows(res.stdout.split("FLOPs cross-check")[1])
    assert set(rows) == {"base", "d"} and rows["d"][2].endswith("(1.000x)")  # FlopCounterMode/2 == analytic


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("--match", "speed"), 2, "unknown for compare"),
        (("--match", "latency", "--no-measure"), 2, "needs measurements"),
        (("--templates", "a,zz"), 2, "unknown template 'zz'"),
        (("--batch-size", "0"), 2, "batch size 0 is invalid"),
        (("--csv", "/nonexistent-dir/x.csv"), 1, "cannot write"),
    ],
)
def test_cli_compare_errors_are_one_line(args: tuple[str, ...], code: int, needle: str) -> None:
    res = invoke("compare", "timm:test_resnet", *CLI_FAST, "--templates", "b", *args)
    assert res.exit_code == code, (res.exit_code, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert res.stdout == ""


def test_cli_run_matches_params_and_memory() -> None:
    runs = {}
    for metric in ("flops", "params", "memory"):
        res = invoke(
            "timm:test_resnet", "-t", "b", "--match", metric, "--divisor", "1", "--input-size", "3,64,64", "--json"
        )
        assert res.exit_code == 0, res.stderr
        runs[metric] = data = json.loads(res.stdout)
        assert data["match"] == metric and abs(data["totals"][metric]["ratio"] - 1) <= 0.005
    widths = {m: [g["width"] for g in d["groups"]] for m, d in runs.items()}
    assert widths["params"] != widths["flops"] and widths["memory"] != widths["flops"]


def test_cli_run_matches_latency_and_writes_its_spec(tmp_path: Path) -> None:
    out = tmp_path / "lat"
    args = ("timm:test_resnet", "-t", "d", "--match", "latency", "--tolerance", "0.5", "--divisor", "1")
    res = invoke(*args, "--input-size", "3,64,64", "--json", "--out", str(out))
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    lat = data["latency"]
    assert data["match"] == "latency" and lat["tolerance"] == max(0.5, lat["noise"])
    assert abs(lat["ms"] / lat["base_ms"] - 1) <= lat["tolerance"] and data["achieved"] == lat["ms"]
    assert lat["builds"] >= 1 and "timing the base model" in res.stderr
    spec = json.loads((out / "spec.json").read_text())
    assert spec["match"] == "latency" and spec["target"] == pytest.approx(lat["base_ms"], rel=1e-5)
    rebuilt = redistribute.load(out / "spec.json", weights=out / "weights.safetensors")
    assert num_params(rebuilt) == data["totals"]["params"]["new"]


# -- plots ----------------------------------------------------------------------------------------------------------
def test_plot_has_one_distinct_panel_per_template(study: redistribute.Comparison, tmp_path: Path) -> None:
    import matplotlib.image

    path = tmp_path / "study.png"
    fig = _plot.plot_comparison(study, path)
    assert len(fig.axes) == 6
    series = []
    for ax, row in zip(fig.axes, study.rows, strict=True):
        assert ax.get_title().startswith(f"{row.template} · ") and "FLOPs" in ax.get_title()
        assert ax.get_yscale() == "log"
        widths = [new for _, _, new in _plot.layer_widths(row.plan)]
        lines = [list(line.get_ydata()) for line in ax.get_lines()]
        assert widths in lines  # the template's widths are drawn, layer by layer
        series.append(tuple(widths))
    assert len(set(series)) == 6  # six differently shaped distributions
    image = matplotlib.image.imread(path)
    width, height = fig.get_size_inches() * 110  # plot_plans' default dpi
    assert image.shape[:2] == (round(height), round(width)) and image.std() > 0.05


def test_layer_widths_follow_execution_order(resnet: nn.Module) -> None:
    p = redistribute.plan(resnet, "d", divisor=1, input_size=SIZE)
    rows = _plot.layer_widths(p)
    convs = [n for n, m in resnet.named_modules() if isinstance(m, nn.Conv2d)]
    assert [name for name, _, _ in rows] == [u.module for u in sorted(p.graph.uses, key=lambda u: u.order)
                                             if u.kind == "conv"]  # fmt: skip
    assert sorted(name for name, _, _ in rows) == sorted(convs)
    new = redistribute.apply(resnet, p)
    assert [(b, w) for name, b, w in rows] == [
        (resnet.get_submodule(name).out_channels, new.get_submodule(name).out_channels) for name, _, _ in rows
    ]


def test_cli_plot_and_compare_plot(tmp_path: Path) -> None:
    specs = []
    for t in ("a", "e"):
        out = tmp_path / t
        assert (
            invoke(
                "timm:test_resnet", "-t", t, "--divisor", "1", "--input-size", "3,64,64", "--out", str(out)
            ).exit_code
            == 0
        )
        specs.append(str(out / "spec.json"))
    png = tmp_path / "specs.png"
    res = invoke("plot", *specs, "--out", str(png))
    assert res.exit_code == 0, res.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = _plot.plot_plans(_plot.plans_from_specs(specs))
    assert [ax.get_title().split(" · ")[0] for ax in fig.axes] == ["a", "e"]
    bad = invoke("plot", str(tmp_path / "missing.json"), "--out", str(png))
    assert bad.exit_code == 2 and "cannot read spec" in bad.stderr
    cmp_png = tmp_path / "cmp.png"
    res = invoke("compare", "timm:test_resnet", *CLI_FAST, "--templates", "c", "--no-measure", "--plot", str(cmp_png))
    assert res.exit_code == 0 and cmp_png.read_bytes()[:4] == b"\x89PNG"


def test_module_doctests() -> None:
    for module in (_compare, _timing, _plot):
        result = doctest.testmod(module, verbose=False, report=False)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# -- resnet50 (slow) ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_resnet50_compare_acceptance(tmp_path: Path) -> None:
    start = time.perf_counter()
    res = invoke("compare", "timm:resnet50", "--json", "--plot", str(tmp_path / "r50.png"))
    elapsed = time.perf_counter() - start
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)["rows"]
    assert [r["template"] for r in rows] == TEMPLATES
    assert all(abs(r["flops_ratio"] - 1) <= 0.005 for r in rows)
    assert all(r["latency_ms"] > 0 and r["peak_memory"] > 0 for r in rows)
    assert elapsed < 120, elapsed


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["params", "memory"])
def test_resnet50_template_b_matches_params_and_memory(metric: str) -> None:
    res = invoke("timm:resnet50", "-t", "b", "--match", metric, "--json")
    assert res.exit_code == 0, res.stderr
    assert abs(json.loads(res.stdout)["totals"][metric]["ratio"] - 1) <= 0.005


@pytest.mark.slow
def test_resnet50_analytic_memory_equals_hooks() -> None:
    model = timm.create_model("resnet50").eval()
    r = redistribute.compare(model, ["b", "d"], measure=False)
    x = torch.randn(1, 3, 224, 224)
    for row in r.rows:
        built = model if row.template == "base" else redistribute.apply(model, row.plan)
        assert row.memory == leaf_output_bytes(built.eval(), x), row.template
    assert math.isclose(r.base.memory / 2**20, 132.76, abs_tol=0.01)


def test_multihead_attention_is_counted_without_its_fused_fast_path() -> None:
    """``nn.MultiheadAttention``'s fused eval kernel has no FlopCounterMode formula: counted unfused, it has every
    projection (3 in + 1 out of d x d per token) and both attention products."""
    from torch.utils.flop_counter import FlopCounterMode

    from redistribute.study.flop_counters import mha_decomposed, sdpa_on_cpu

    d, n = 32, 10
    mha = torch.nn.MultiheadAttention(d, 4, batch_first=True).eval()
    x = torch.randn(1, n, d)

    def macs() -> float:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=sdpa_on_cpu()) as fc:
            mha(x, x, x, need_weights=False)
        return fc.get_total_flops() / 2

    fused = macs()
    with mha_decomposed():
        unfused = macs()
    assert unfused == 4 * n * d * d + 2 * n * n * d
    assert fused < unfused
    assert torch.backends.mha.get_fastpath_enabled()  # restored
