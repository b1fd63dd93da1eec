"""Find the width multiplier ``k`` whose widths cost the target: bracketing, bisection, then an integer fix-up.

The cost of a template's widths is a non-decreasing step function of ``k``. Bisection brings ``k`` to the step
nearest the target; a greedy pass then moves single groups by one rounding step while that brings the cost
closer (or two groups at once when no single move does), until it is within tolerance. Every evaluation is analytic (see :mod:`redistribute.planning.cost`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InfeasibleTargetError, UsageError

__all__ = ["MatchResult", "match_k"]

WidthsFn = Callable[[float], dict[int, int]]
CostFn = Callable[[dict[int, int]], float]
DeltaFn = Callable[[dict[int, int], int, int], float]


@dataclass(frozen=True)
class MatchResult:
    """Outcome of matching.

    Attributes:
        k: The multiplier found.
        widths: Widths after the fix-up.
        achieved: Their cost.
        steps: Bisection steps taken.
        fixups: Single-group moves made by the fix-up.
    """

    k: float
    widths: dict[int, int]
    achieved: float
    steps: int
    fixups: int


def _rel(cost: float, target: float) -> float:
    return abs(cost - target) / target if target else abs(cost)


def match_k(
    widths_fn: WidthsFn,
    cost_fn: CostFn,
    target: float,
    tolerance: float,
    k0: float,
    free: tuple[int, ...],
    steps: dict[int, int],
    delta_fn: DeltaFn | None = None,
    metric: str = "cost",
    after_move: Callable[[dict[int, int]], None] | None = None,
) -> MatchResult:
    """Match ``cost_fn(widths_fn(k))`` to ``target`` within ``tolerance`` (relative)."""
    if not (tolerance > 0) or tolerance != tolerance:
        raise UsageError(f"tolerance {tolerance} is invalid: it must be a positive fraction, e.g. --tolerance 0.005")
    if not (target > 0):
        raise UsageError(f"target {metric} {target} is invalid: it must be positive")
    n = 0
    lo = hi = k0
    c_lo = c_hi = cost_fn(widths_fn(k0))
    while c_hi < target:
        if n > 60:
            raise InfeasibleTargetError(f"target {metric} {target:.4g} is above what widening reaches ({c_hi:.4g})")
        lo, c_lo = hi, c_hi
        hi *= 2.0
        c_hi = cost_fn(widths_fn(hi))
        n += 1
    while c_lo > target:
        lo /= 2.0
        c_lo = cost_fn(widths_fn(lo))
        n += 1
        if lo < 1e-9 or n > 120:
            raise InfeasibleTargetError(
                f"target {metric} {target:.4g} is below the smallest reachable {c_lo:.4g} (every free group at one "
                f"rounding step). Hint: raise the target, or lower --divisor"
            )
    for _ in range(60):
        if _rel(c_lo, target) <= tolerance / 10 or _rel(c_hi, target) <= tolerance / 10 or hi - lo <= 1e-9 * hi:
            break
        mid = (lo + hi) / 2
        c_mid = cost_fn(widths_fn(mid))
        n += 1
        if c_mid < target:
            lo, c_lo = mid, c_mid
        else:
            hi, c_hi = mid, c_mid
    k, cost = (lo, c_lo) if _rel(c_lo, target) <= _rel(c_hi, target) else (hi, c_hi)
    widths = widths_fn(k)
    moves = 0
    while _rel(cost, target) > tolerance / 5 and moves < 256:
        moved = _best_single(widths, cost, target, free, steps, cost_fn, delta_fn)
        if moved is None and len(free) <= 256:
            moved = _best_pair(widths, cost, target, free, steps, cost_fn, delta_fn)
        if moved is None:
            break
        widths = moved
        if after_move is not None:
            after_move(widths)
        cost = cost_fn(widths)
        moves += 1
    if _rel(cost, target) > tolerance:
        raise InfeasibleTargetError(
            f"cannot match {metric} {target:.4g} within {tolerance:.3%}: the closest is {cost:.4g} "
            f"({_rel(cost, target):.3%} off). Hint: use --tolerance {2 * _rel(cost, target):.3g} or --divisor 1"
        )
    return MatchResult(k=k, widths=widths, achieved=cost, steps=n, fixups=moves)


def _best_single(
    widths: dict[int, int],
    cost: float,
    target: float,
    free: tuple[int, ...],
    steps: dict[int, int],
    cost_fn: CostFn,
    delta_fn: DeltaFn | None,
) -> dict[int, int] | None:
    """The one-group, one-step move that brings the cost closest to the target, if it brings it closer."""
    best: tuple[float, int, int] | None = None
    for gid in free:
        for sign in (1, -1):
            new = widths[gid] + sign * steps[gid]
            if new < steps[gid]:
                continue
            if delta_fn is not None:
                c = cost + delta_fn(widths, gid, new)
            else:
                trial = dict(widths)
                trial[gid] = new
                c = cost_fn(trial)
            if best is None or _rel(c, target) < best[0]:
                best = (_rel(c, target), gid, new)
    if best is None or best[0] >= _rel(cost, target):
        return None
    moved = dict(widths)
    moved[best[1]] = best[2]
    return moved


def _best_pair(
    widths: dict[int, int],
    cost: float,
    target: float,
    free: tuple[int, ...],
    steps: dict[int, int],
    cost_fn: CostFn,
    delta_fn: DeltaFn | None,
) -> dict[int, int] | None:
    """The best move of one or two groups by up to two steps each, when no single one-step move helps.

    Moves are ranked by the sum of their single-group deltas (exact for groups that share no layer); the best few
    are checked with the exact cost. On big graphs (over 64 free groups) only one-step moves are paired.
    """
    if delta_fn is None:
        return None
    reach = (1, 2) if len(free) <= 64 else (1,)
    moves: list[tuple[int, int, float]] = [(-1, 0, 0.0)]  # a no-op partner: a lone two-step move
    for g in free:
        for n in reach:
            for sign in (n, -n):
                new = widths[g] + sign * steps[g]
                if new >= steps[g]:
                    moves.append((g, sign, delta_fn(widths, g, new)))
    ranked = sorted(
        (abs(cost + da + db - target), i, j)
        for i, (a, _, da) in enumerate(moves)
        for j, (b, _, db) in enumerate(moves[i + 1 :], i + 1)
        if a != b
    )
    for _, i, j in ranked[:32]:
        trial = dict(widths)
        for g, sign, _ in (moves[i], moves[j]):
            if g >= 0:
                trial[g] += sign * steps[g]
        if _rel(cost_fn(trial), target) < _rel(cost, target):
            return trial
    return None
