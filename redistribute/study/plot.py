"""Pictures of plans: the width of every layer in depth order, against the base model's, one panel per plan.

A *layer* is a convolution (and, with ``scope="all"``, a linear layer) that produces channels, taken once, in
execution order; its width is the number of output channels the plan gives it. Each panel draws the base widths
as a grey area and the plan's as a coloured line on a log2 axis, titled with the template and the matched metric
(value and ratio to the base). Matplotlib is imported only here and only when drawing, with the Agg backend (a
``Figure`` with an Agg canvas; pyplot's global state is never touched), so it is an optional dependency: install
``redistribute[plot]``.

Example:
    >>> import timm, redistribute
    >>> g = redistribute.trace(timm.create_model("test_resnet"), (3, 64, 64))
    >>> fig = plot_plans([redistribute.plan(g, t) for t in ("base", "d")])
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import OutputError, UsageError
from ..planning.planner import Plan

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .comparison import Comparison

__all__ = [
    "draw_plans",
    "layer_widths",
    "metric_label",
    "plans_from_specs",
    "plot_comparison",
    "plot_plans",
    "width_ticks",
]


def layer_widths(plan: Plan) -> list[tuple[str, int, int]]:
    """``(layer, base width, plan width)`` of every channel-producing layer, in execution order."""
    kinds = ("conv", "linear") if plan.scope == "all" else ("conv",)
    seen: set[str] = set()
    rows = []
    for u in sorted(plan.graph.uses, key=lambda u: u.order):
        if u.kind not in kinds or u.module in seen or u.out_layout is None:
            continue
        seen.add(u.module)
        base = sum(s.size for s in u.out_layout)
        new = sum(s.size if s.space is None else plan.widths[s.space] * s.repeat for s in u.out_layout)
        rows.append((u.module, base, new))
    return rows


def _fmt(metric: str, value: float) -> str:
    if metric == "flops":
        return f"{value / 1e9:.3f} GFLOPs" if value >= 1e9 else f"{value / 1e6:.2f} MFLOPs"
    if metric == "params":
        return f"{value / 1e6:.3f} M params" if value >= 1e6 else f"{value / 1e3:.1f} K params"
    if metric == "memory":
        return f"{value / 2**20:.1f} MB act."
    if metric == "latency":
        return f"{value:.3g} ms"
    return f"{value:.4g}"


def metric_label(plan: Plan) -> str:
    """``"d · 4.090 GFLOPs (1.000x) · params 0.315x"``: the template, the matched metric with its ratio to the
    base, and the parameter ratio (when params is not the matched metric)."""
    metric = plan.match if plan.match in ("flops", "params", "memory") else "flops"
    value, base = plan.cost.get(metric), plan.base_cost.get(metric)
    ratio = f" ({value / base:.3f}x)" if base else ""
    params, base_params = plan.cost.get("params"), plan.base_cost.get("params")
    extra = f" · params {params / base_params:.3f}x" if metric != "params" and base_params else ""
    return f"{plan.template} · {_fmt(metric, value)}{ratio}{extra}"


def width_ticks(lo: int, hi: int) -> list[int]:
    """Ticks of the width axis: the smallest width itself, then powers of two up to the first at or above ``hi``
    (a power of two within 20 % above ``lo`` is left out, so labels do not collide).

    Example:
        >>> width_ticks(24, 600)
        [24, 32, 64, 128, 256, 512, 1024]
    """
    lo, hi = max(int(lo), 1), max(int(hi), 2)
    powers = [2**e for e in range(math.ceil(math.log2(lo)), math.ceil(math.log2(hi)) + 1)]
    return sorted({lo, *(t for t in powers if t >= lo * 1.2)})


def _model_name(plan: Plan) -> str:
    return plan.source or plan.graph.model_class.rsplit(".", 1)[-1]


def plot_plans(
    plans: Sequence[Plan],
    path: str | os.PathLike[str] | None = None,
    *,
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    dpi: int = 110,
) -> Figure:
    """Draw one panel per plan (width per layer in depth order, against the base) and save it as PNG.

    Args:
        plans: The plans, one panel each (at most three per row).
        path: Where to write the PNG; ``None`` only returns the figure.
        titles: A title per panel; default :func:`metric_label`.
        suptitle: A title for the figure; default the plans' source.
        dpi: Resolution of the PNG.

    Returns:
        The matplotlib ``Figure`` (its ``axes`` are the panels).

    Raises:
        UsageError: No plans, a title count that does not match, or matplotlib missing.

    Example:
        >>> import tempfile, timm, redistribute
        >>> g = redistribute.trace(timm.create_model("test_resnet"), (3, 64, 64))
        >>> path = tempfile.NamedTemporaryFile(suffix=".png", delete=False).name
        >>> fig = redistribute.plot_plans([redistribute.plan(g, t, divisor=1) for t in "abc"], path)
        >>> len(fig.axes), open(path, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
        (3, True)
    """
    if not plans:
        raise UsageError("nothing to plot: give at least one plan or spec")
    if titles is not None and len(titles) != len(plans):
        raise UsageError(f"{len(titles)} titles for {len(plans)} plans")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("plotting needs matplotlib. Hint: pip install 'redistribute[plot]'") from None
    ncols = min(3, len(plans))
    fig = Figure(figsize=(4.6 * ncols, 3.4 * math.ceil(len(plans) / ncols)), layout="constrained")
    FigureCanvasAgg(fig)
    draw_plans(fig, plans, titles)
    models = {_model_name(p) for p in plans}
    head = suptitle if suptitle is not None else (_model_name(plans[0]) if len(models) == 1 else None)
    if head:
        fig.suptitle(head, fontsize=11)
    if path is not None:
        from ..io import atomic_path

        try:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png", dpi=dpi)
        except OSError as exc:
            raise OutputError(
                f"cannot write plot {os.fspath(path)!r}: {exc.strerror or exc}. Hint: choose a writable path"
            ) from exc
    return fig


def draw_plans(fig: Any, plans: Sequence[Plan], titles: Sequence[str] | None = None) -> list[Any]:
    """Draw :func:`plot_plans`'s panels into ``fig`` (a matplotlib ``Figure`` or ``SubFigure``); returns the axes."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

    n = len(plans)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    all_widths = [w for p in plans for _, b, nw in layer_widths(p) for w in (b, nw)]
    lo, hi = (min(all_widths), max(all_widths)) if all_widths else (1, 2)
    ticks = width_ticks(lo, hi)
    models = {_model_name(p) for p in plans}  # specs of several models: each panel names its own
    colours = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
    for i, p in enumerate(plans):
        ax: Any = axes[i // ncols][i % ncols]
        rows = layer_widths(p)
        x = list(range(len(rows)))
        ax.fill_between(x, [b for _, b, _ in rows], step="mid", color="0.85", label="base", linewidth=0)
        ax.step(x, [b for _, b, _ in rows], where="mid", color="0.55", linewidth=0.8)
        label = None if rows and all(b == nw for _, b, nw in rows) else p.template  # the base itself: one legend entry
        ax.step(x, [nw for _, _, nw in rows], where="mid", color=colours[i % len(colours)], linewidth=1.6, label=label)
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_yticklabels([str(t) for t in ticks])
        ax.set_ylim(ticks[0] / 1.15, ticks[-1] * 1.05)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are counted: no 2.5th layer
        ax.set_xlim(-0.5, max(len(rows) - 0.5, 0.5))
        title = titles[i] if titles is not None else metric_label(p)
        ax.set_title(f"{_model_name(p)}\n{title}" if len(models) > 1 else title, fontsize=10)
        ax.set_xlabel("layer (depth order)", fontsize=8)
        if i % ncols == 0:
            ax.set_ylabel("filters", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, axis="y", color="0.92", linewidth=0.6)
        ax.legend(fontsize=7, loc="upper left", frameon=False)
    for j in range(n, nrows * ncols):
        fig.delaxes(axes[j // ncols][j % ncols])
    return [axes[i // ncols][i % ncols] for i in range(n)]


def plot_comparison(comparison: Comparison, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Figure:
    """:func:`plot_plans` for a :class:`~redistribute.Comparison`: one panel per template, titled with the matched
    metric (the measured latency and its ratio when latency was matched).

    Example:
        >>> import redistribute
        >>> r = redistribute.compare("timm:test_resnet", input_size=(3, 64, 64), divisor=1, measure=False)
        >>> len(plot_comparison(r).axes)
        6
    """
    plans, titles = [], []
    base_ms = comparison.base.latency_ms
    for r in comparison.rows:
        if r.plan is None:
            continue
        plans.append(r.plan)
        if comparison.match == "latency" and r.latency_ms is not None and base_ms:
            titles.append(f"{r.template} · {_fmt('latency', r.latency_ms)} ({r.latency_ms / base_ms:.3f}x)"
                          f" · params {r.params / comparison.base.params:.3f}x")  # fmt: skip
        else:
            titles.append(metric_label(r.plan))
    kwargs.setdefault("suptitle", f"{comparison.source or comparison.model_class} at matched {comparison.match}")
    return plot_plans(plans, path, titles=titles, **kwargs)


def plans_from_specs(specs: Sequence[str | os.PathLike[str]]) -> list[Plan]:
    """Read spec files (or ``--out`` folders) back into plans; each source model is built once.

    Raises:
        SpecError: A spec is unreadable or has no ``source``.
        SpecMismatchError: A spec does not fit its source model.
    """
    import json

    from ..errors import SpecError
    from ..source import load_model
    from ..spec import read_spec, spec_to_plan

    models: dict[str, Any] = {}
    plans = []
    for path in specs:
        data = read_spec(path)
        source = data.get("source")
        if not source:
            raise SpecError(
                f"spec {os.fspath(path)!r} has no 'source', so its base model cannot be built. Hint: plot it from Python"
            )
        kwargs = dict(data.get("model_kwargs") or {})
        key = f"{source} {json.dumps(kwargs, sort_keys=True)}"
        if key not in models:
            models[key] = load_model(str(source), meta=True, **kwargs)  # a skeleton: plans need no weights
        plans.append(spec_to_plan(data, models[key]))
    return plans
