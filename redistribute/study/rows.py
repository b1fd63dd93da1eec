"""The rows of a template study: :class:`CompareRow` per template, :class:`Comparison` for all, and their flat
records (CSV, JSON, the CLI's table) with ratios to the base and the timing noise of each latency ratio.

:func:`redistribute.study.comparison.compare` fills them; this module only holds and flattens the numbers.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

from ..planning.planner import Plan
from ..planning.templates import get_template
from .flop_counters import FlopCounts

__all__ = ["CHECK_COLUMNS", "COLUMNS", "CompareRow", "Comparison"]

COLUMNS = (
    "template",
    "k",
    "flops",
    "flops_ratio",
    "params",
    "params_ratio",
    "memory",
    "memory_ratio",
    "peak_memory",
    "peak_memory_ratio",
    "latency_ms",
    "latency_iqr_ms",
    "latency_ratio",
    "latency_ratio_noise",
    "latency_ratio_clear",
    "throughput",
    "throughput_ratio",
)
"""Columns of :meth:`Comparison.records` (and of the CSV), in order; ``flops_*`` counter columns follow when
FLOPs were cross-checked."""

CHECK_COLUMNS = ("flops_flop_counter", "flops_thop", "flops_ptflops")


@dataclass(frozen=True)
class CompareRow:
    """One template at matched cost.

    Attributes:
        template: Template name.
        k: Width multiplier of the plan.
        flops: Analytic multiply-accumulates at batch 1.
        params: Parameters.
        memory: Analytic activation memory in bytes at batch 1, float32.
        peak_memory: Measured peak memory of a forward pass at the comparison's batch size, in bytes.
        latency_ms: Median latency of a forward pass at the comparison's batch size.
        latency_iqr_ms: Inter-quartile range of the latency measurement.
        throughput: Images per second.
        counts: FLOPs from other counters, when cross-checked.
        plan: The plan behind the row.
    """

    template: str
    k: float
    flops: float
    params: float
    memory: float
    peak_memory: float | None = None
    latency_ms: float | None = None
    latency_iqr_ms: float | None = None
    throughput: float | None = None
    counts: FlopCounts | None = None
    plan: Plan | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Comparison:
    """Every template's row, the base first, and how they were obtained.

    Attributes:
        rows: One row per template; ``rows[0]`` is ``base``, the reference of every ratio.
        source: Model source (``timm:resnet50``), when known.
        model_class: Qualified class name of the model.
        input_size: Input size without batch.
        match: Matched metric: ``flops``, ``params``, ``memory`` or ``latency``.
        tolerance: Tolerance of the match; for latency ``max(requested, noise)``.
        noise: For latency matching, the relative spread of the base's timings (else ``None``).
        device: Where the variants were timed.
        threads: CPU threads torch used while timing.
        batch_size: Images per timed forward pass.
        measured: Whether latency and peak memory were measured.
    """

    rows: tuple[CompareRow, ...]
    source: str | None
    model_class: str
    input_size: tuple[int, ...]
    match: str
    tolerance: float
    noise: float | None
    device: str
    threads: int
    batch_size: int
    measured: bool

    @property
    def base(self) -> CompareRow:
        return self.rows[0]

    def row(self, template: str) -> CompareRow:
        """The row of ``template`` (name or alias)."""
        name = get_template(template).name
        for r in self.rows:
            if r.template == name:
                return r
        raise KeyError(f"template {template!r} is not in this comparison ({', '.join(r.template for r in self.rows)})")

    def records(self) -> list[dict[str, Any]]:
        """One flat JSON-ready dict per row (keys :data:`COLUMNS`, then the counter columns when checked).

        ``flops`` and ``params`` are counts and ``memory``/``peak_memory`` bytes (integers), ``latency_ms`` and
        ``latency_iqr_ms`` milliseconds, ``throughput`` images/s, and every ``*_ratio`` is the value over base's.
        ``latency_ratio_noise`` is the ratio's noise, the relative spreads (IQR / median) of the row and the base
        added, and ``latency_ratio_clear`` says whether the ratio is further from 1 than that (``False``: faster or
        slower than the base cannot be told apart from timing noise; ``None`` for the base itself). Unmeasured
        values are ``None``.
        """
        b = self.base
        out = []
        for r in self.rows:
            rec: dict[str, Any] = {"template": r.template, "k": r.k}
            peak, base_peak = _int(r.peak_memory), _int(b.peak_memory)
            for name, value, ref in (
                ("flops", _int(r.flops), _int(b.flops)),
                ("params", _int(r.params), _int(b.params)),
                ("memory", _int(r.memory), _int(b.memory)),
                ("peak_memory", peak, base_peak),
                ("latency_ms", r.latency_ms, b.latency_ms),
            ):
                rec[name] = value
                if name == "latency_ms":
                    rec["latency_iqr_ms"] = r.latency_iqr_ms
                rec[name.removesuffix("_ms") + "_ratio"] = _ratio(value, ref)
            rec["latency_ratio_noise"], rec["latency_ratio_clear"] = _noise(r, b)
            rec["throughput"] = r.throughput
            rec["throughput_ratio"] = _ratio(r.throughput, b.throughput)
            if r.counts is not None:
                rec["flops_flop_counter"] = r.counts.flop_counter
                rec["flops_thop"] = r.counts.thop
                rec["flops_ptflops"] = _finite(r.counts.ptflops)
            out.append(rec)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Settings and :meth:`records`, as one JSON-ready dict."""
        return {
            "source": self.source,
            "model_class": self.model_class,
            "input_size": list(self.input_size),
            "match": self.match,
            "tolerance": self.tolerance,
            "noise": self.noise,
            "device": self.device,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "measured": self.measured,
            "rows": self.records(),
        }

    def to_csv(self) -> str:
        """:meth:`records` as CSV text: a header of column names, one line per row, empty cells for ``None``."""
        records = self.records()
        columns = list(COLUMNS) + [c for c in CHECK_COLUMNS if any(c in r for r in records)]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for r in records:
            writer.writerow({c: "" if r.get(c) is None else r[c] for c in columns})
        return buf.getvalue()


def _noise(row: CompareRow, base: CompareRow) -> tuple[float | None, bool | None]:
    """The relative noise of ``row``'s latency ratio to ``base`` and whether the ratio stands out of it."""
    spreads = [_ratio(r.latency_iqr_ms, r.latency_ms) for r in (row, base)]
    if row is base or row.latency_ms is None or base.latency_ms is None or None in spreads:
        return None, None
    noise = sum(s for s in spreads if s is not None)
    return noise, abs(row.latency_ms / base.latency_ms - 1) > noise


def _int(x: float | None) -> int | None:
    return None if x is None else round(x)


def _ratio(x: float | None, ref: float | None) -> float | None:
    if x is None or ref is None or not ref:
        return None
    return x / ref


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
