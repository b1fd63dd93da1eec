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

import logging
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ..errors import UsageError
from ..groups.graph import trace
from ..planning.cost import METRICS
from ..planning.planner import Plan, plan
from ..planning.templates import get_template
from .flop_counters import FlopCounts, count_flops
from .rows import CHECK_COLUMNS as CHECK_COLUMNS
from .rows import COLUMNS as COLUMNS
from .rows import CompareRow as CompareRow
from .rows import Comparison as Comparison
from .timing import Timing, check_threads, measure_interleaved, peak_memory, resolve_device, torch_threads

__all__ = ["COLUMNS", "TEMPLATES", "CompareRow", "Comparison", "FlopCounts", "compare", "count_flops"]

_logger = logging.getLogger(__name__)

TEMPLATES = ("base", "a", "b", "c", "d", "e")
MATCHES = (*METRICS, "latency")

Progress = Callable[[str, int, int], None]
"""``progress(message, done, total)``: called before each step (planning, building, timing, counting)."""


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
        source, model = (
            source or model,
            load_model(model, meta=not (measure or check_flops)),
        )  # plans alone need no weights
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
    if match != "latency":  # every variant planned and built first, then timed in turns (A B C C B A ...)
        return _compare_interleaved(model, graph, names, match, source, step, say, total, tolerance=tolerance,
                                    divisor=divisor, ratio=ratio, scope=scope, device=device, batch_size=batch_size,
                                    measure=measure, check_flops=check_flops, min_time=min_time, threads=threads)  # fmt: skip
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
        rows.append(_row(p, timing, counts, peak))
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


def _compare_interleaved(
    model: nn.Module, graph: Any, names: list[str], match: str, source: str | None, step: Any, say: Progress,
    total: int, *, tolerance: float, divisor: int, ratio: float | None, scope: str, device: str, batch_size: int,
    measure: bool, check_flops: bool, min_time: float, threads: int | None,
) -> Comparison:  # fmt: skip
    """:func:`compare` at an analytic match: plan and build every variant, then time them all in turns, so a drift
    of the machine's speed hits each alike (see :func:`~redistribute.study.timing.measure_interleaved`)."""
    from ..surgery.rebuild import apply

    size = tuple(graph.input_shape[1:])
    plans, built, counts = [], [], []
    for name in names:
        step(f"{name}: planning at matched {match}")
        p = plan(graph, name, match, tolerance=tolerance, divisor=divisor, ratio=ratio, scope=scope, source=source)
        plans.append(p)
        m = None
        if measure or check_flops:
            if measure:
                step(f"{name}: building")
            m = model if name == "base" else apply(model, p)
        if check_flops:
            step(f"{name}: counting FLOPs")
            with torch_threads(check_threads(threads)):
                counts.append(count_flops(m, size))
        else:
            counts.append(None)
        built.append(m if measure else None)
    timings: list[Timing | None] = [None] * len(names)
    if measure:
        step(f"timing {len(names)} variants in turns, peak memory", n=len(names))
        timings = list(measure_interleaved([m for m in built if m is not None], size, batch_size=batch_size,
                                           device=device, min_time=min_time, threads=threads, peak=True))  # fmt: skip
    rows = tuple(
        _row(p, t, c, None if t is None else t.peak_memory) for p, t, c in zip(plans, timings, counts, strict=True)
    )
    say("done", total, total)
    return Comparison(rows=rows, source=source, model_class=graph.model_class, input_size=size, match=match,
                      tolerance=float(tolerance), noise=None,
                      device=str(resolve_device(device)) if measure else device, threads=check_threads(threads),
                      batch_size=batch_size, measured=measure)  # fmt: skip


def _row(p: Plan, timing: Timing | None, counts: FlopCounts | None, peak: float | None) -> CompareRow:
    """A table row: the plan's analytic costs, what was measured of its model (or None), ``peak`` in bytes."""
    return CompareRow(
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
