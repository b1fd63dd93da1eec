"""compare's latency: the variants are timed in turns, the spread is shown, and noisy ratios are marked."""

from __future__ import annotations

import io
import itertools

import pytest
import torch
from rich.console import Console
from torch import nn

from redistribute.cli.compare import comparison_table
from redistribute.study.rows import CompareRow, Comparison
from redistribute.study.timing import measure_interleaved


class _Logged(nn.Module):
    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log, self.conv = name, log, nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        return self.conv(x)


def test_variants_are_timed_in_turns():
    log: list[str] = []
    timings = measure_interleaved([_Logged("a", log), _Logged("b", log)], (3, 16, 16), min_time=0.05, warmup=0.01)
    assert all(t.blocks >= 5 and t.median_ms > 0 for t in timings)
    switches = sum(1 for x, y in itertools.pairwise(log) if x != y)
    assert switches >= min(t.blocks for t in timings) - 1  # a b | b a | a b ...: one switch per turn (timing one
    # model after the other would switch once after the warm-ups)


def _comparison(latencies: list[tuple[float, float]]) -> Comparison:
    rows = tuple(
        CompareRow(
            template=name,
            k=1.0,
            flops=1e9,
            params=1e6,
            memory=2.0**20,
            peak_memory=2.0**20,
            latency_ms=ms,
            latency_iqr_ms=iqr,
            throughput=1000 / ms,
        )
        for name, (ms, iqr) in zip(("base", "a", "b"), latencies, strict=True)
    )
    return Comparison(rows=rows, source="toy", model_class="Toy", input_size=(3, 8, 8), match="flops",
                      tolerance=0.005, noise=None, device="cpu", threads=1, batch_size=1, measured=True)  # fmt: skip


def test_ratios_within_the_noise_are_marked_in_records_and_table():
    comparison = _comparison([(10.0, 1.0), (9.5, 0.5), (5.0, 0.1)])  # base ±10 %; a: 0.95x ±15 %; b: 0.5x ±12 %
    recs = comparison.records()
    assert recs[0]["latency_ratio_clear"] is None
    assert recs[1]["latency_ratio_noise"] == pytest.approx(0.5 / 9.5 + 0.1) and recs[1]["latency_ratio_clear"] is False
    assert recs[2]["latency_ratio_clear"] is True
    console = Console(file=io.StringIO(), width=300)
    console.print(comparison_table(comparison))
    text = console.file.getvalue()
    assert "9.50 ±0.50 (0.950x~)" in text and "5.00 ±0.10 (0.500x)" in text and "~: within the timing noise" in text


def test_cli_compare_shows_the_latency_spread(cli):
    res = cli("compare", "timm:test_resnet", "--input-size", "3,32,32", "--templates", "d", "--min-time", "0.05")
    assert res.exit_code == 0, res.stderr
    row = next(line for line in res.stdout.splitlines() if line.split()[:1] == ["d"])
    assert " ±" in row
