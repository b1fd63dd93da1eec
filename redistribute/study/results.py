"""A study's results: runs summarised per template, and the files that show them.

:class:`StudyResult` holds every run (:class:`~redistribute.study.runs.RunResult`) and one :class:`TemplateRow` per
template (accuracy mean and sample standard deviation over seeds; the plan's params, FLOPs and activation memory;
measured latency and throughput averaged over seeds; each cost with its ratio to ``base``). It writes
``study.csv`` (one row per run), ``study.json`` (runs, rows and recipe), ``study.md`` (the paper's table: one column
per template) and ``study.png`` (top-1 against params with error bars, over the width-per-layer panels).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..io import atomic_path, atomic_write_text
from .runs import RunResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..planning.planner import Plan

__all__ = ["COSTS", "OUTPUTS", "StudyResult", "TemplateRow", "plot_study", "summarise"]

#: Cost columns, each with its ratio to the base.
COSTS = ("params", "flops", "memory", "latency_ms")
OUTPUTS = ("study.csv", "study.json", "study.md", "study.png")
#: The recipe fields the markdown table names (``study.json`` holds them all).
_RECIPE_SHOWN = ("init", "epochs", "batch_size", "opt", "lr", "weight_decay", "sched", "warmup_epochs", "smoothing",
                 "mixup", "cutmix", "ema", "amp", "device", "match", "divisor", "limit_train", "limit_val")  # fmt: skip


@dataclass(frozen=True)
class TemplateRow:
    """One template over its seeds.

    Attributes:
        template: Template name.
        seeds: Seeds of its runs.
        top1, top1_std, top5, top5_std: Validation accuracy in percent: mean, and sample std (None for one seed).
        params, flops, memory: Analytic cost of the plan (the same for every seed).
        latency_ms, throughput: Measured forward pass at batch 1, mean over seeds (None when not measured).
        ratios: ``{cost: value / base value}`` for :data:`COSTS` (empty without a ``base`` template).
    """

    template: str
    seeds: tuple[int, ...]
    top1: float
    top1_std: float | None
    top5: float
    top5_std: float | None
    params: float
    flops: float
    memory: float
    latency_ms: float | None
    throughput: float | None
    ratios: dict[str, float | None] = field(default_factory=dict)


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def summarise(runs: Sequence[RunResult], templates: Sequence[str]) -> tuple[TemplateRow, ...]:
    """One :class:`TemplateRow` per template (in the given order) from its runs; ratios are to ``base``."""
    rows = []
    for t in templates:
        mine = sorted((r for r in runs if r.template == t), key=lambda r: r.seed)
        if not mine:
            continue
        top1, top1_std = _mean_std([r.top1 for r in mine])
        top5, top5_std = _mean_std([r.top5 for r in mine])
        rows.append(TemplateRow(t, tuple(r.seed for r in mine), top1, top1_std, top5, top5_std, mine[0].params,
                                mine[0].flops, mine[0].memory, _mean([r.latency_ms for r in mine]),
                                _mean([r.throughput for r in mine])))  # fmt: skip
    base = next((r for r in rows if r.template == "base"), None)
    if base is None:
        return tuple(rows)
    out = []
    for r in rows:
        ratios: dict[str, float | None] = {}
        for c in COSTS:
            v, b = getattr(r, c), getattr(base, c)
            ratios[c] = v / b if v is not None and b else None
        out.append(TemplateRow(**{**asdict(r), "ratios": ratios}))
    return tuple(out)


def _num(x: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _scaled(x: float, unit: str) -> str:
    if unit == "params":
        return f"{x / 1e6:.3f} M" if x >= 1e6 else f"{x / 1e3:.1f} K"
    if unit == "flops":
        return f"{x / 1e9:.3f} G" if x >= 1e9 else f"{x / 1e6:.2f} M"
    return f"{x / 2**20:.2f} MB"


@dataclass(frozen=True)
class StudyResult:
    """The outcome of :func:`redistribute.study.run_study`.

    Attributes:
        model: The model source.
        data: One line describing the data.
        out: The study folder.
        recipe: The shared training recipe (``TrainConfig`` fields but the seed) and the study's options.
        templates, seeds: What was run.
        runs: Every run's result, in template then seed order.
        rows: One row per template.
        skipped: Names of runs found finished in ``out`` and not run again.
        plans: The plan of each template (for the width panels).
    """

    model: str
    data: str
    out: Path
    recipe: dict[str, Any]
    templates: tuple[str, ...]
    seeds: tuple[int, ...]
    runs: tuple[RunResult, ...]
    rows: tuple[TemplateRow, ...]
    skipped: tuple[str, ...] = ()
    plans: tuple[Plan, ...] = field(default=(), repr=False, compare=False)

    def row(self, template: str) -> TemplateRow:
        for r in self.rows:
            if r.template == template:
                return r
        raise UsageError(f"no template {template!r} in this study; it has {', '.join(self.templates)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "recipe": self.recipe,
            "templates": list(self.templates),
            "seeds": list(self.seeds),
            "rows": [asdict(r) for r in self.rows],
            "runs": [r.to_dict() for r in self.runs],
        }

    def to_csv(self) -> str:
        """One line per run: its template, seed, accuracy and costs."""
        buf = io.StringIO()
        names = list(RunResult.__dataclass_fields__)
        writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.to_dict().items()} for r in self.runs)
        return buf.getvalue()

    def to_markdown(self) -> str:
        """The paper's table: one column per template; accuracy mean ± std over seeds, costs with ratio to base."""
        n = len(self.seeds)
        head = f"| {self.model} | " + " | ".join(r.template for r in self.rows) + " |"
        lines = [head, "|---|" + "---|" * len(self.rows)]

        def acc(mean: float, std: float | None) -> str:
            return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"

        def cost(r: TemplateRow, c: str, text: str) -> str:
            ratio = r.ratios.get(c)
            return text if ratio is None else f"{text} ({ratio:.2f}x)"

        table = [
            (f"top-1 % (mean ± std, {n} seed{'s' * (n > 1)})", [acc(r.top1, r.top1_std) for r in self.rows]),
            ("top-5 %", [acc(r.top5, r.top5_std) for r in self.rows]),
            ("params", [cost(r, "params", _scaled(r.params, "params")) for r in self.rows]),
            ("FLOPs (MACs)", [cost(r, "flops", _scaled(r.flops, "flops")) for r in self.rows]),
            ("activation memory", [cost(r, "memory", _scaled(r.memory, "memory")) for r in self.rows]),
            ("latency (batch 1)", [cost(r, "latency_ms", _num(r.latency_ms, "{:.3f} ms")) for r in self.rows]),
            ("throughput (img/s)", [_num(r.throughput, "{:.0f}") for r in self.rows]),
        ]
        lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in table]
        recipe = ", ".join(f"{k}={self.recipe[k]}" for k in _RECIPE_SHOWN if k in self.recipe)
        return f"{self.data}\n\n" + "\n".join(lines) + f"\n\nRecipe: {recipe}\n"

    def write(self, out: str | os.PathLike[str] | None = None) -> dict[str, Path]:
        """Write :data:`OUTPUTS` into ``out`` (default the study folder), each atomically; returns their paths."""
        folder = Path(out) if out is not None else self.out
        paths = {name.split(".")[1]: folder / name for name in OUTPUTS}
        atomic_write_text(paths["csv"], self.to_csv())
        atomic_write_text(paths["json"], json.dumps(self.to_dict(), indent=2) + "\n")
        atomic_write_text(paths["md"], self.to_markdown())
        plot_study(self, paths["png"])
        return paths


def plot_study(result: StudyResult, path: str | os.PathLike[str] | None = None, dpi: int = 110) -> Figure:
    """Top-1 against params, one point per template with error bars (std over seeds), above width-per-layer panels.

    Returns:
        The figure; its first axes is the accuracy panel (one errorbar container per template, in row order).

    Raises:
        UsageError: matplotlib is missing.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("plotting needs matplotlib. Hint: pip install 'redistribute[study]'") from None
    from .plot import draw_plans, metric_label

    plans = list(result.plans)
    panel_rows = math.ceil(len(plans) / 3) if plans else 0
    fig = Figure(figsize=(4.6 * min(3, max(len(plans), 2)), 3.6 + 3.2 * panel_rows), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.6, max(3.2 * panel_rows, 0.01)]) if plans else (fig, None)
    ax: Any = top.subplots()
    colours = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
    for i, r in enumerate(result.rows):
        ax.errorbar([r.params / 1e6], [r.top1], yerr=[r.top1_std or 0.0], fmt="o", capsize=4,
                    color=colours[i % len(colours)], label=r.template)  # fmt: skip
        ax.annotate(r.template, (r.params / 1e6, r.top1), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("parameters (M)", fontsize=9)
    ax.set_ylabel("val top-1 (%)", fontsize=9)
    ax.set_title(f"{result.model} on {result.data.split(':')[0]} at matched {result.recipe.get('match', 'flops')}, "
                 f"{len(result.seeds)} seed(s)", fontsize=10)  # fmt: skip
    ax.grid(True, color="0.92", linewidth=0.6)
    ax.legend(fontsize=7, frameon=False)
    if bottom is not None:
        draw_plans(bottom, plans, [metric_label(p) for p in plans])
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    return fig
