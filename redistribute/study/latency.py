"""Match measured latency: a bracketed search over the FLOPs target, with a tolerance set by measurement noise.

Latency cannot be evaluated analytically, so each candidate is a real model, built and timed. To keep that cheap:

* the search runs over a **FLOPs target** ``f``: each candidate is the template's plan matched analytically to
  ``f`` (microseconds), so the shape stays the template's and only the overall size moves;
* the first candidate is the plan at the base's FLOPs; until the target latency is bracketed, the next ``f`` is
  scaled by ``target / measured`` (latency roughly proportional to FLOPs); once it is bracketed, the next ``f`` is
  interpolated between the bracket's ends (regula falsi), kept at least a tenth of the bracket away from either
  end, so the bracket shrinks like a bisection even when the measurements are noisy;
* built models are cached by their widths and reused: a FLOPs target that rounds to widths already tried is not
  rebuilt nor re-timed, the base model itself is never rebuilt, and the chosen model is returned, not rebuilt.

**Tolerance.** The base is timed ``trials`` times (each a full :func:`measure_latency`); the target is the median
of those medians, and the *noise* is their relative spread ``IQR / median``. The match tolerance is
``max(tolerance, noise)``: a candidate is accepted when its median is within that fraction of the target, since
a closer match could not be told apart from a re-measurement of the base itself. The tolerance used is reported.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from ..errors import InfeasibleTargetError, UsageError
from ..groups.graph import ChannelGraph, trace
from ..planning.planner import Plan, plan
from ..planning.templates import Template
from .timing import Timing, measure_latency, relative_spread, resolve_device

__all__ = ["LatencyMatch", "base_latency", "match_latency"]

_logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LatencyMatch:
    """A plan matched on measured latency, with the model that was built for it.

    Attributes:
        plan: The plan (``match="latency"``, ``target`` the base latency in ms, ``tolerance`` the one used).
        model: The model built at the plan's widths (eval mode); for ``base`` at ``k = 1``, the base model itself.
        timing: Latency of ``model``.
        base: Latency of the base model (the pooled median of its trials).
        noise: Relative spread (IQR / median) of the base's trial medians.
        tolerance: ``max(requested tolerance, noise)``.
        builds: Models built by the search.
        history: ``(flops, latency ms)`` of every candidate timed, in order.
    """

    plan: Plan
    model: nn.Module = field(repr=False)
    timing: Timing
    base: Timing
    noise: float
    tolerance: float
    builds: int
    history: tuple[tuple[float, float], ...]

    @property
    def error(self) -> float:
        """Relative latency error of the match: ``latency / base - 1``."""
        return self.timing.median_ms / self.base.median_ms - 1

    def summary(self) -> dict[str, Any]:
        """The match as a JSON-ready dict (milliseconds and fractions)."""
        return {
            "base_ms": self.base.median_ms,
            "ms": self.timing.median_ms,
            "error": self.error,
            "tolerance": self.tolerance,
            "noise": self.noise,
            "builds": self.builds,
            "device": self.timing.device,
            "batch_size": self.timing.batch_size,
            "history": [{"flops": f, "ms": ms} for f, ms in self.history],
        }

    def describe(self) -> str:
        """One line for people: latency against the base, the error, and the tolerance rule."""
        return (
            f"latency {self.timing.median_ms:.4g} ms vs base {self.base.median_ms:.4g} ms ({self.error:+.2%}) on "
            f"{self.timing.device}, batch {self.timing.batch_size}; tolerance {self.tolerance:.2%} = max(--tolerance, "
            f"base noise {self.noise:.2%}); {self.builds} model(s) built"
        )


def base_latency(
    model: nn.Module,
    input_size: tuple[int, ...],
    *,
    trials: int = 5,
    batch_size: int = 1,
    device: str = "cpu",
    min_time: float = 0.5,
    threads: int | None = None,
) -> tuple[Timing, float]:
    """Time ``model`` ``trials`` times; return the trial with the median latency and the relative spread of the
    trial medians (``IQR / median``)."""
    if not isinstance(trials, int) or trials < 1:
        raise UsageError(f"trials {trials!r} is invalid: it must be a whole number >= 1")
    runs = [
        measure_latency(model, input_size, batch_size=batch_size, device=device, min_time=min_time, threads=threads)
        for _ in range(trials)
    ]
    medians = [r.median_ms for r in runs]
    mid = statistics.median_low(medians)
    return runs[medians.index(mid)], relative_spread(medians)


def match_latency(
    model: nn.Module,
    template: str | Template | Callable[[float], float] = "d",
    *,
    graph: ChannelGraph | None = None,
    tolerance: float = 0.005,
    divisor: int = 8,
    ratio: float | None = None,
    scope: str = "conv",
    input_size: tuple[int, ...] | None = None,
    source: str | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    trials: int = 5,
    min_time: float = 0.5,
    threads: int | None = None,
    max_builds: int = 8,
    base: tuple[Timing, float] | None = None,
    progress: Progress | None = None,
) -> LatencyMatch:
    """Widths following ``template`` whose measured latency equals the base model's (see module docstring).

    Args:
        model: The base model; not modified.
        template: See :func:`redistribute.plan`.
        graph: ``model``'s channel graph, when already traced.
        tolerance: Requested relative tolerance; the one used is ``max(tolerance, noise)``.
        divisor, ratio, scope, input_size, source: As for :func:`redistribute.plan`.
        batch_size: Images per timed forward pass.
        device: ``cpu`` or ``cuda``.
        trials: Timings of the base model that set the target and the noise.
        min_time: Seconds each timing lasts at least.
        threads: CPU threads for torch while timing (default 1, see :mod:`redistribute.study.timing`).
        max_builds: Models the search may build before giving up.
        base: ``(timing, noise)`` of the base model from :func:`base_latency`, to reuse.
        progress: Called with a short message before each build and timing.

    Returns:
        The :class:`LatencyMatch`.

    Raises:
        InfeasibleTargetError: No candidate within the tolerance after ``max_builds`` builds, or the widths stopped
            changing; the message gives the closest.

    Example:
        >>> import timm
        >>> m = timm.create_model("test_resnet")
        >>> r = match_latency(m, "b", input_size=(3, 64, 64), tolerance=0.25, trials=3, min_time=0.1)
        >>> abs(r.error) <= r.tolerance
        True
    """
    from ..surgery.rebuild import apply

    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise UsageError(f"tolerance {tolerance!r} is invalid: it must be a positive fraction (e.g. --tolerance 0.05)")
    if not isinstance(max_builds, int) or max_builds < 1:
        raise UsageError(f"max_builds {max_builds!r} is invalid: it must be a whole number >= 1")
    resolve_device(device)
    say = progress or (lambda _msg: None)
    graph = graph if graph is not None else trace(model, input_size)
    size = tuple(graph.input_shape[1:])
    if base is None:
        say(f"timing the base model {trials}x")
        base = base_latency(
            model, size, trials=trials, batch_size=batch_size, device=device, min_time=min_time, threads=threads
        )
    base_timing, noise = base
    target = base_timing.median_ms
    tol = max(float(tolerance), noise)
    base_plan = plan(graph, "base", "none", divisor=divisor, scope=scope, source=source)
    cache: dict[tuple[int, ...], tuple[Plan, nn.Module, Timing]] = {
        _key(base_plan.widths): (base_plan, model, base_timing)
    }
    base_flops = base_plan.base_cost.flops
    builds = 0
    history: list[tuple[float, float]] = []
    lo: tuple[float, float] | None = None  # (flops, ms) of the widest candidate found too fast
    hi: tuple[float, float] | None = None  # (flops, ms) of the narrowest candidate found too slow
    best: tuple[Plan, nn.Module, Timing] | None = None
    f = base_flops
    for _ in range(max_builds * 3):
        p = _plan_at(graph, template, f, tol, divisor=divisor, ratio=ratio, scope=scope, source=source)
        key = _key(p.widths)
        cached = key in cache
        if not cached:
            if builds >= max_builds:
                break
            say(f"building candidate {builds + 1} at {p.cost.flops / 1e9:.4g} GFLOPs")
            built = apply(model, p).eval()
            builds += 1
            say(f"timing candidate {builds}")
            cache[key] = (
                p,
                built,
                measure_latency(built, size, batch_size=batch_size, device=device, min_time=min_time, threads=threads),
            )
        cand = cache[key]
        ms = cand[2].median_ms
        history.append((cand[0].cost.flops, ms))
        if best is None or abs(ms / target - 1) < abs(best[2].median_ms / target - 1):
            best = cand
        if abs(ms / target - 1) <= tol:
            break
        point = (cand[0].cost.flops, ms)
        if ms < target:
            lo = point if lo is None or point[0] > lo[0] else lo
        else:
            hi = point if hi is None or point[0] < hi[0] else hi
        f_next = _next_flops(point, lo, hi, target)
        if cached and abs(f_next / f - 1) < 1e-9:
            break  # the same widths again: rounding leaves nothing between the bracket's ends
        f = f_next
    assert best is not None
    p, built, timing = best
    err = timing.median_ms / target - 1
    if abs(err) > tol:
        raise InfeasibleTargetError(
            f"cannot match latency {target:.4g} ms within {tol:.2%} after {builds} build(s): the closest is "
            f"{timing.median_ms:.4g} ms ({err:+.2%}). Hint: raise --tolerance, lower --divisor, or time on an idle machine"
        )
    _logger.info(
        "matched latency %.4g ms (%+.2f%%, tolerance %.2f%%) after %d builds",
        timing.median_ms,
        100 * err,
        100 * tol,
        builds,
    )
    matched = replace(p, match="latency", target=target, tolerance=tol)
    return LatencyMatch(matched, built, timing, base_timing, noise, tol, builds, tuple(history))


def _key(widths: dict[int, int]) -> tuple[int, ...]:
    return tuple(widths[g] for g in sorted(widths))


def _plan_at(
    graph: ChannelGraph, template: str | Template | Callable[[float], float], flops: float, tol: float, **kwargs: object
) -> Plan:
    """The template's plan at ``flops``, within half the latency tolerance (at most 0.5 %, at least 0.01 %) of it;
    the FLOPs tolerance is loosened, up to ``max(tol, 5 %)``, where rounding leaves nothing closer."""
    t, cap = max(1e-4, min(0.005, tol / 2)), max(tol, 0.05)
    while True:
        try:
            return plan(graph, template, "flops", target=flops, tolerance=t, **kwargs)  # type: ignore[arg-type]
        except InfeasibleTargetError:
            if t >= cap:
                raise
            t = min(cap, 4 * t)


def _next_flops(
    point: tuple[float, float], lo: tuple[float, float] | None, hi: tuple[float, float] | None, target: float
) -> float:
    """The next FLOPs target: scaled by ``target / measured`` until bracketed, then interpolated, safeguarded."""
    if lo is None or hi is None or hi[0] <= lo[0]:
        f, ms = point
        return f * min(2.0, max(0.5, target / ms))
    (f_lo, ms_lo), (f_hi, ms_hi) = lo, hi
    span = f_hi - f_lo
    guess = f_lo + (target - ms_lo) * span / (ms_hi - ms_lo) if ms_hi > ms_lo else f_lo + span / 2
    return min(f_hi - span / 10, max(f_lo + span / 10, guess))
