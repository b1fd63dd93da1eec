"""Rendering for ``redistribute compare`` and ``plot``: rich tables, a progress bar on stderr, file outputs.

The numbers come from :meth:`redistribute.Comparison.records`, the same dicts written as CSV and JSON; this module
only formats them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import OutputError
from ..study.comparison import Comparison
from .render import new_table

__all__ = ["comparison_table", "flops_check_table", "progress_bar", "write_text"]


def _scale(base: float, units: tuple[tuple[float, str], ...]) -> tuple[float, str]:
    for div, unit in units:
        if abs(base) >= div:
            return div, unit
    return units[-1]


_COUNT_UNITS = ((1e9, "G"), (1e6, "M"), (1e3, "K"), (1.0, ""))


def _mb(size: int | None) -> float | None:
    return None if size is None else size / 2**20


def _cell(value: float | None, ratio: float | None, fmt: str, unit: str, spread: float | None = None,
          noisy: bool = False) -> str:  # fmt: skip
    """``value ±spread (ratio x)``; a ratio within the timing noise is marked ``~``."""
    if value is None:
        return "-"
    text = f"{value:{fmt}}{unit}" + ("" if spread is None else f" ±{spread:{fmt}}")
    return text if ratio is None else f"{text} ({ratio:.3f}x{'~' if noisy else ''})"


def comparison_table(comparison: Comparison) -> Table:
    """One row per template: value and ratio to base for FLOPs, params, activation and peak memory, latency and
    throughput."""
    recs = comparison.records()
    base = recs[0]
    fdiv, funit = _scale(base["flops"], _COUNT_UNITS)
    pdiv, punit = _scale(base["params"], _COUNT_UNITS)
    tol = f"{comparison.tolerance:.2%}"
    noise = f", noise {comparison.noise:.2%}" if comparison.noise is not None else ""
    threads = (
        f", {comparison.threads} thread{'s' if comparison.threads > 1 else ''}" if comparison.device == "cpu" else ""
    )
    where = f" · {comparison.device}{threads}, batch {comparison.batch_size}" if comparison.measured else ""
    table = new_table(
        f"{comparison.source or comparison.model_class} · matched {comparison.match} (tolerance {tol}{noise}){where}",
        caption="ratios are to base; FLOPs are MACs at batch 1; act. memory is analytic (batch 1); peak memory, "
        "latency (median ±IQR, the variants timed in turns) and throughput are measured at the batch size"
        + ("; ~: within the timing noise (the ratio is closer to 1 than the row's and the base's relative IQRs "
           "added), so faster or slower cannot be told" if any(r["latency_ratio_clear"] is False for r in recs) else ""),
    )  # fmt: skip
    for col in ("template", "k", f"FLOPs ({funit or '1'})", f"params ({punit or '1'})", "act. memory (MB)",
                "peak memory (MB)", "latency (ms)", "throughput (img/s)"):  # fmt: skip
        table.add_column(col, justify="right", no_wrap=True)
    for r in recs:
        table.add_row(
            r["template"],
            f"{r['k']:.4g}",
            _cell(r["flops"] / fdiv, r["flops_ratio"], ".3f", ""),
            _cell(r["params"] / pdiv, r["params_ratio"], ".3f", ""),
            _cell(_mb(r["memory"]), r["memory_ratio"], ".2f", ""),
            _cell(_mb(r["peak_memory"]), r["peak_memory_ratio"], ".2f", ""),
            _cell(
                r["latency_ms"], r["latency_ratio"], ".2f", "", r["latency_iqr_ms"], r["latency_ratio_clear"] is False
            ),
            _cell(r["throughput"], r["throughput_ratio"], ".2f", "", None, r["latency_ratio_clear"] is False),
        )
    return table


def flops_check_table(comparison: Comparison) -> Table | None:
    """FLOPs (MACs) of each built variant by the analytic model and three counters, with ratios to the analytic
    count; ``None`` when the comparison was not cross-checked."""
    recs = comparison.records()
    if "flops_thop" not in recs[0]:
        return None
    div, unit = _scale(recs[0]["flops"], _COUNT_UNITS)
    table = new_table(f"FLOPs cross-check (MACs, {unit or 'count'}; ratio to analytic)")
    for col in ("template", "analytic", "FlopCounterMode / 2", "thop", "ptflops (aten)"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in recs:
        ref = r["flops"]
        cells = [_cell(v / div if v is not None else None, v / ref if v is not None else None, ".4f", "")
                 for v in (r["flops_flop_counter"], r["flops_thop"], r["flops_ptflops"])]  # fmt: skip
        table.add_row(r["template"], f"{ref / div:.4f}", *cells)
    return table


@contextmanager
def progress_bar(console: Console, label: str) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar on ``console``; yields the ``progress(message, done, total)`` callback to pass on."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=console.is_terminal) as bar:
        task = bar.add_task(label, total=None)

        def update(message: str, done: int, total: int) -> None:
            bar.update(task, description=f"{label}: {message}", completed=done, total=total)

        yield update


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically, as an :class:`OutputError` on failure."""
    from ..io import atomic_write_text

    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise OutputError(
            f"cannot write {os.fspath(path)!r}: {exc.strerror or exc}. Hint: choose a writable path"
        ) from exc
