"""Find the width multiplier ``k`` whose widths cost the target: bracketing, bisection, then an integer fix-up.

The cost of a template's widths is a non-decreasing step function of ``k``. Bisection brings ``k`` to the step
nearest the target, and the template's widths rounded there are the answer when their cost is within tolerance.
Otherwise a greedy pass moves single groups by one rounding step (or two groups at once when no single move
helps), preferring moves that reach the tolerance while straying least from the template's unrounded widths;
once within tolerance it only takes moves that keep every group within one step of the template. Every
evaluation is analytic (see :mod:`redistribute.planning.cost`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InfeasibleTargetError, UsageError

__all__ = ["MatchResult", "match_k", "shape_fit"]

WidthsFn = Callable[[float], dict[int, int]]
CostFn = Callable[[dict[int, int]], float]
DeltaFn = Callable[[dict[int, int], int, int], float]
ShapeFn = Callable[[float], dict[int, float]]

#: A group follows the template when it is within one rounding step of its template width, or within this share of
#: it when that is more (at ``--divisor 1`` a step is one channel, which a cost match often needs to move).
SHAPE_SLACK = 0.05

#: Up to this many template groups, a match that strays from the template searches every nearby width vector.
EXHAUSTIVE_GROUPS = 5


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


def shape_fit(widths: dict[int, int], shape: dict[int, float], steps: dict[int, int]) -> tuple[float, int | None, bool]:
    """How closely ``widths`` follow the proportions ``shape`` (a template's widths at any multiplier).

    The multiplier is the one that fits best, so only the shape counts: the deviation is
    ``min over k of max_g |w_g - k * s_g| / (k * s_g)``, reached at ``k = 2 * rmax * rmin / (rmax + rmin)`` with
    ``r_g = w_g / s_g``, where it equals ``(rmax - rmin) / (rmax + rmin)``.

    Returns:
        ``(deviation, group, realised)``: the largest relative deviation (NaN when ``shape`` is empty), the group
        that has it, and whether one multiplier puts every group within one rounding step of ``k * s_g`` (the
        template rounded down or up) or within :data:`SHAPE_SLACK` of it.
    """
    if not shape:
        return float("nan"), None, True
    r = {g: widths[g] / s for g, s in shape.items()}
    lo, hi = min(r.values()), max(r.values())
    k = 2 * hi * lo / (hi + lo)
    dev = {g: abs(widths[g] - k * s) / (k * s) for g, s in shape.items()}
    worst = max(dev, key=dev.__getitem__)
    k_lo = max(min(widths[g] - steps[g], widths[g] / (1 + SHAPE_SLACK)) / s for g, s in shape.items())
    k_hi = min(max(widths[g] + steps[g], widths[g] / (1 - SHAPE_SLACK)) / s for g, s in shape.items())
    return dev[worst], worst, k_lo <= k_hi * (1 + 1e-9)


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
    shape_fn: ShapeFn | None = None,
    divisor: int | None = None,
) -> MatchResult:
    """Match ``cost_fn(widths_fn(k))`` to ``target`` within ``tolerance`` (relative).

    Args:
        shape_fn: The template's unrounded widths at ``k`` (``k * T(p) * rho`` per group it sets). With it, the
            fix-up keeps the template's rounded widths when they are within tolerance and otherwise moves as
            little as possible from the template; without it, only the cost error counts.
        divisor: The rounding divisor, for the hint of an infeasible match (``--divisor 1`` is not suggested
            when it is already 1).
    """
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
    shape = shape_fn(k) if shape_fn is not None else {}
    fit = _Fit(target, tolerance, steps, shape)
    moves = 0
    while not fit.done(widths, cost) and moves < 256:
        moved = _best_move(widths, cost, fit, free, steps, cost_fn, delta_fn)
        if moved is None:
            break
        widths = moved
        if after_move is not None:
            after_move(widths)
        cost = cost_fn(widths)
        moves += 1
    if (
        shape
        and len(shape) <= EXHAUSTIVE_GROUPS
        and not (_rel(cost, target) <= tolerance and shape_fit(widths, shape, steps)[2])
    ):
        found = _closest_realisation(shape, widths, target, tolerance, steps, cost_fn, after_move)
        if found is not None:
            widths, cost = found
    if _rel(cost, target) > tolerance:
        hint = f"--tolerance {2 * _rel(cost, target):.3g}"
        if divisor is None or divisor > 1:
            hint += " or --divisor 1"
        raise InfeasibleTargetError(
            f"cannot match {metric} {target:.4g} within {tolerance:.3%}: the closest is {cost:.4g} "
            f"({_rel(cost, target):.3%} off). Hint: use {hint}"
        )
    return MatchResult(k=k, widths=widths, achieved=cost, steps=n, fixups=moves)


@dataclass(frozen=True)
class _Fit:
    """How good a width vector is: its cost error first, then how far it strays from the template.

    ``shape`` holds the template's unrounded widths ``k * T(p) * rho`` of the groups it sets directly; a group is
    *in bound* when its width is within one rounding step of that value (the template rounded down or up), or
    within :data:`SHAPE_SLACK` of it.
    """

    target: float
    tolerance: float
    steps: dict[int, int]
    shape: dict[int, float]

    def excess(self, widths: dict[int, int]) -> float:
        """How many rounding steps beyond one the farthest group strays from the template (0 when in bound)."""
        worst = max(
            (abs(widths[g] - t) / max(self.steps[g], SHAPE_SLACK * t) for g, t in self.shape.items()), default=0.0
        )
        return max(0.0, worst - 1.0)

    def deviation(self, widths: dict[int, int]) -> float:
        return sum(abs(widths[g] - t) / t for g, t in self.shape.items())

    def done(self, widths: dict[int, int], cost: float) -> bool:
        return _rel(cost, self.target) <= self.tolerance / 5

    def better(self, new: dict[int, int], c_new: float, cur: dict[int, int], c_cur: float) -> bool:
        """Whether ``new`` improves on ``cur``: closer to the target, without leaving the template when ``cur`` fits.

        Within tolerance, a move must keep every group as close to the template as it was (no more steps out of
        bound at this ``k``) or keep the widths a realisation of the template at some ``k`` (:func:`shape_fit`);
        outside, any move that brings the cost closer is taken.
        """
        r_new, r_cur = _rel(c_new, self.target), _rel(c_cur, self.target)
        if r_new >= r_cur:
            return False
        if r_cur > self.tolerance:
            return True
        return self.excess(new) <= self.excess(cur)

    def rank(self, new: dict[int, int], c_new: float) -> tuple[float, ...]:
        """Order of preference among improving moves: reaching tolerance, in bound, least deviation, least error."""
        r = _rel(c_new, self.target)
        if r <= self.tolerance:
            return (0.0, self.excess(new), float(r > self.tolerance / 5), self.deviation(new), r)
        return (1.0, self.excess(new), r, 0.0, 0.0)


def _best_move(
    widths: dict[int, int],
    cost: float,
    fit: _Fit,
    free: tuple[int, ...],
    steps: dict[int, int],
    cost_fn: CostFn,
    delta_fn: DeltaFn | None,
) -> dict[int, int] | None:
    """The preferred improving move of one group by one step, or of one or two groups by up to two steps.

    Outside tolerance, pairs are tried only when no single move helps; within it, they compete with the singles so
    that the error shrinks by moves that stray least from the template.

    Pair moves are ranked by the sum of their single-group deltas (exact for groups that share no layer); the best
    few are checked with the exact cost. On big graphs (over 64 free groups) only one-step moves are paired.
    """
    singles: list[tuple[int, int, float]] = []  # (group, signed steps, cost delta)
    reach = (1, 2) if len(free) <= 64 else (1,)
    for g in free:
        for n in reach:
            for sign in (n, -n):
                new = widths[g] + sign * steps[g]
                if new < steps[g]:
                    continue
                if delta_fn is not None:
                    d = delta_fn(widths, g, new)
                else:
                    trial = dict(widths)
                    trial[g] = new
                    d = cost_fn(trial) - cost
                singles.append((g, sign, d))
    candidates: list[tuple[dict[int, int], float]] = []
    for g, sign, d in singles:
        if abs(sign) == 1:
            trial = dict(widths)
            trial[g] += sign * steps[g]
            candidates.append((trial, cost + d))
    within = _rel(cost, fit.target) <= fit.tolerance
    best = _pick(candidates, widths, cost, fit)
    if (best is not None and not within) or delta_fn is None or len(free) > 256:
        return best
    moves = [(-1, 0, 0.0), *singles]  # a no-op partner: a lone two-step move
    ranked = heapq.nsmallest(  # the same 32 as sorted()[:32] (i, j break ties), without sorting every pair
        32,
        (
            (abs(cost + da + db - fit.target), i, j)
            for i, (a, _, da) in enumerate(moves)
            for j, (b, _, db) in enumerate(moves[i + 1 :], i + 1)
            if a != b
        ),
    )
    for _, i, j in ranked:
        trial = dict(widths)
        for g, sign, _ in (moves[i], moves[j]):
            if g >= 0:
                trial[g] += sign * steps[g]
        candidates.append((trial, cost_fn(trial)))
    return _pick(candidates, widths, cost, fit)  # within tolerance, singles and pairs compete


def _pick(
    candidates: list[tuple[dict[int, int], float]], widths: dict[int, int], cost: float, fit: _Fit
) -> dict[int, int] | None:
    ranked = sorted((fit.rank(w, c), i) for i, (w, c) in enumerate(candidates))
    for _, i in ranked:
        w, c = candidates[i]
        if fit.better(w, c, widths, cost):
            return w
    return None


def _closest_realisation(
    shape: dict[int, float],
    widths: dict[int, int],
    target: float,
    tolerance: float,
    steps: dict[int, int],
    cost_fn: CostFn,
    after_move: Callable[[dict[int, int]], None] | None,
) -> tuple[dict[int, int], float] | None:
    """On a net with few template groups: the width vector within tolerance that follows the template best.

    Every group ranges over the multiples of its step from 0.7x to 1.3x its template width (one step more each
    side; two steps each side when that grid is too big). Preferred: realised (see :func:`shape_fit`), then the
    smallest deviation, then the smallest cost error. ``None`` when no vector is within tolerance.
    """
    import itertools

    gids = list(shape)

    def grid(lo_f: float, hi_f: float, pad: int) -> list[list[int]]:
        out = []
        for g in gids:
            st = steps[g]
            a = max(1, math.floor(shape[g] * lo_f / st) - pad)
            b = max(a, math.ceil(shape[g] * hi_f / st) + pad)
            out.append([m * st for m in range(a, b + 1)])
        return out

    axes = grid(0.7, 1.3, 1)
    if math.prod(len(a) for a in axes) > 20000:
        axes = grid(1.0, 1.0, 2)
    best: tuple[tuple[float, float, float], dict[int, int], float] | None = None
    for combo in itertools.product(*axes):
        trial = dict(widths)
        trial.update(zip(gids, combo, strict=True))
        if after_move is not None:
            after_move(trial)
        c = cost_fn(trial)
        r = _rel(c, target)
        if r > tolerance:
            continue
        dev, _, realised = shape_fit(trial, shape, steps)
        key = (float(not realised), dev, r)
        if best is None or key < best[0]:
            best = (key, trial, c)
    return None if best is None else (best[1], best[2])
