"""The template study for any model: every template at matched cost, analytic and measured, side by side.

:func:`compare` traces the model once, plans each template at the base model's cost (FLOPs, params or activation
memory analytically; latency by measurement, see :mod:`redistribute.study.latency`), builds each variant, and measures
its latency, throughput and peak memory (see :mod:`redistribute.study.timing`). The result is a frozen
:class:`Comparison` of :class:`CompareRow`; :meth:`Comparison.records` gives the flat rows that the CLI prints as
a table and writes as CSV and JSON, so the three carry the same numbers. Progress is reported through a callback;
nothing here prints.

With ``check_flops`` each row also carries the FLOPs (multiply-accumulates) that three counters report on the built
model: ``torch.utils.flop_counter.FlopCounterMode`` (halved), thop and ptflops (aten backend). They follow other
conventions than ours (see the README's "FLOPs conventions"), so they differ from the analytic count by design.

Example:
    >>> r = compare("timm:test_resnet", ["base", "d"], input_size=(3, 64, 64), measure=False)
    >>> [row.template for row in r.rows]
    ['base', 'd']
    >>> abs(r.row("d").flops / r.base.flops - 1) <= 0.005
    True
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import UsageError
from ..groups.graph import trace
from ..planning.cost import METRICS
from ..planning.planner import Plan, plan
from ..planning.templates import get_template
from .flop_counters import FlopCounts, count_flops
from .timing import Timing, check_threads, measure_latency, peak_memory, resolve_device, torch_threads

__all__ = ["COLUMNS", "TEMPLATES", "CompareRow", "Comparison", "FlopCounts", "compare", "count_flops"]

_logger = logging.getLogger(__name__)

TEMPLATES = ("base", "a", "b", "c", "d", "e")
MATCHES = (*METRICS, "latency")

Progress = Callable[[str, int, int], None]
"""``progress(message, done, total)``: called before each step (planning, building, timing, counting)."""

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
        ``latency_iqr_ms`` milliseconds, ``throughput`` images/s, and every
        ``*_ratio`` is the value over base's. Unmeasured values are ``None``.
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


def _int(x: float | None) -> int | None:
    return None if x is None else round(x)


def _ratio(x: float | None, ref: float | None) -> float | None:
    if x is None or ref is None or not ref:
        return None
    return x / ref


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def compare(
    model: nn.Module | str,
    templates: Sequence[str] = TEMPLATES,
    match: str = "flops",
    *,
    tolerance: float = 0.005,
    divisor: int = 8,
    ratio: float | None = None,
    scope: str = "conv",
    input_size: tuple[int, ...] | None = None,
    source: str | None = None,
    device: str = "cpu",
    batch_size: int = 1,
    measure: bool = True,
    check_flops: bool = False,
    min_time: float = 1.0,
    threads: int | None = None,
    trials: int = 5,
    progress: Progress | None = None,
) -> Comparison:
    """Plan every template at the base model's cost, build each variant and measure it.

    Args:
        model: A model, or a source string (``timm:resnet50``).
        templates: Template names, aliases or control points; ``base`` is always included, first.
        match: ``flops``, ``params``, ``memory`` (analytic) or ``latency`` (measured; needs ``measure``).
        tolerance: Relative tolerance of the match; for latency the one used is ``max(tolerance, noise)``.
        divisor, ratio, scope, input_size: As for :func:`redistribute.plan`.
        source: A label for the model (set from ``model`` when it is a string).
        device: ``cpu`` or ``cuda``, for timing.
        batch_size: Images per timed forward pass (analytic costs stay at batch 1).
        measure: Build the variants and measure latency and peak memory; ``False`` gives the analytic columns
            only, without building anything.
        check_flops: Also count each built variant's FLOPs with FlopCounterMode, thop and ptflops.
        min_time: Seconds each latency measurement lasts at least.
        threads: CPU threads for torch while timing (default 1, see :mod:`redistribute.study.timing`).
        trials: Timings of the base model when matching latency.
        progress: ``progress(message, done, total)``, called before each step.

    Returns:
        The :class:`Comparison`; the input model is not modified.

    Raises:
        UsageError: Unknown match metric, no templates, latency matching without measuring.
        TemplateError: Unknown template.
        InfeasibleTargetError: A template cannot be matched within the tolerance.

    Example:
        >>> import redistribute
        >>> r = redistribute.compare("timm:test_resnet", ["b", "d"], input_size=(3, 64, 64), divisor=1, min_time=0.05)
        >>> [row.template for row in r.rows]
        ['base', 'b', 'd']
        >>> all(abs(row.flops / r.base.flops - 1) <= 0.005 for row in r.rows)
        True
        >>> r.row("d").latency_ms > 0 and r.row("d").peak_memory > 0
        True
        >>> r.records()[1]["params_ratio"] < 1
        True
    """
    from ..source import load_model
    from ..surgery.rebuild import apply
    from .latency import base_latency, match_latency

    if match not in MATCHES:
        raise UsageError(f"match metric {match!r} is unknown for compare; choose one of {', '.join(MATCHES)}")
    if match == "latency" and not measure:
        raise UsageError("matching latency needs measurements; do not turn measuring off with --match latency")
    if isinstance(templates, str) or not templates:
        raise UsageError("templates must be a non-empty list of names, e.g. ['base', 'a', 'd']")
    names: list[str] = ["base"]
    for t in templates:
        name = get_template(t).name
        if name not in names:
            names.append(name)
    if measure:
        resolve_device(device)
        check_threads(threads)
    if isinstance(model, str):
        source, model = source or model, load_model(model)
    say: Progress = progress or (lambda _m, _d, _t: None)
    per = 1 + (2 if measure else 0) + (1 if check_flops else 0)
    total = per * len(names) + 1
    done = 0

    def step(message: str, n: int = 1) -> None:
        nonlocal done
        say(message, done, total)
        done += n

    step("tracing")
    graph = trace(model, input_size)
    size = tuple(graph.input_shape[1:])
    rows: list[CompareRow] = []
    used_tol, noise = float(tolerance), None
    base_timing: tuple[Timing, float] | None = None
    for name in names:
        built: nn.Module | None = None
        timing: Timing | None = None
        if match == "latency":
            if base_timing is None:
                step(f"{name}: timing the base model {trials}x")
                base_timing = base_latency(
                    model, size, trials=trials, batch_size=batch_size, device=device, min_time=min_time, threads=threads
                )
            else:
                step(f"{name}: matching latency")

            def sub(msg: str, name: str = name) -> None:
                say(f"{name}: {msg}", done, total)

            lm = match_latency(
                model, name, graph=graph, tolerance=tolerance, divisor=divisor, ratio=ratio, scope=scope,
                source=source, batch_size=batch_size, device=device, min_time=min_time, threads=threads, base=base_timing, progress=sub,
            )  # fmt: skip
            p, built, timing, used_tol, noise = lm.plan, lm.model, lm.timing, lm.tolerance, lm.noise
            step(f"{name}: matched latency", n=per - 1 - (1 if check_flops else 0))
        else:
            step(f"{name}: planning at matched {match}")
            p = plan(graph, name, match, tolerance=tolerance, divisor=divisor, ratio=ratio, scope=scope, source=source)
            if measure:
                step(f"{name}: building")
                built = model if name == "base" else apply(model, p)
                step(f"{name}: timing, peak memory")
                timing = measure_latency(
                    built, size, batch_size=batch_size, device=device, min_time=min_time, threads=threads, peak=True
                )
        counts = None
        if check_flops:
            step(f"{name}: counting FLOPs")
            with torch_threads(check_threads(threads)):  # the counters' forward passes, on as many threads as timing
                counts = count_flops(
                    built if built is not None else (model if name == "base" else apply(model, p)), size
                )
        peak = timing.peak_memory if timing is not None else None
        if peak is None and built is not None:
            peak = peak_memory(built, size, batch_size=batch_size, device=device)
        rows.append(
            CompareRow(
                template=p.template,
                k=p.k,
                flops=p.cost.flops,
                params=p.cost.params,
                memory=p.cost.memory,
                peak_memory=None if peak is None else float(peak),
                latency_ms=None if timing is None else timing.median_ms,
                latency_iqr_ms=None if timing is None else timing.iqr_ms,
                throughput=None if timing is None else timing.throughput,
                counts=counts,
                plan=p,
            )
        )
        del built
    say("done", total, total)
    return Comparison(
        rows=tuple(rows),
        source=source,
        model_class=graph.model_class,
        input_size=size,
        match=match,
        tolerance=used_tol,
        noise=noise,
        device=str(resolve_device(device)) if measure else device,
        threads=check_threads(threads),
        batch_size=batch_size,
        measured=measure,
    )
