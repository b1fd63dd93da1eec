"""Rich rendering for the CLI: the consoles, one-line errors, summary tables and progress bars (no logic)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import RedistributeError

__all__ = [
    "err_console",
    "fail",
    "one_line",
    "out_console",
    "print_note",
    "print_summary",
    "print_transfer",
    "train_progress",
]

out_console = Console()
err_console = Console(stderr=True)


def one_line(text: str) -> str:
    return " ".join(str(text).split()).rstrip(".")


def fail(exc: BaseException, debug: bool) -> None:
    """Print ``exc`` as one red line on stderr (never as rich markup) and exit 2 (usage) or 1; ``--debug`` re-raises."""
    if debug:
        raise exc
    if isinstance(exc, RedistributeError):
        err_console.print(
            Text.assemble(("error: ", "red"), " ".join(str(exc).split())), highlight=False, soft_wrap=True
        )
        raise typer.Exit(exc.exit_code)
    message = f"unexpected {type(exc).__name__}: {one_line(str(exc))} (rerun with --debug for the traceback)"
    err_console.print(Text.assemble(("error: ", "red"), message), highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _fmt(x: float, metric: str) -> str:
    if metric == "memory":
        return f"{x / 2**20:.1f} MB"
    if metric == "flops":
        return f"{x / 1e9:.3f} G"
    return f"{x / 1e6:.3f} M"


def print_summary(out: Console, summary: dict[str, Any]) -> None:
    head = f"{summary['source'] or 'model'} · template {summary['template']} · match {summary['match']} · k={summary['k']:.4g} · r={summary['ratio']:.3g}"
    stages = Table(title=head, title_justify="left")
    for col in ("stage", "groups", "base min/median/max", "new min/median/max"):
        stages.add_column(col, justify="right")
    for row in summary["stages"]:
        b, n = row["base"], row["new"]
        stages.add_row(
            row["stage"],
            str(row["groups"]),
            f"{b['min']}/{b['median']:g}/{b['max']}",
            f"{n['min']}/{n['median']:g}/{n['max']}",
        )
    out.print(stages)
    tot = Table(title="totals (batch 1)", title_justify="left")
    for col in ("metric", "base", "new", "ratio"):
        tot.add_column(col, justify="right")
    for metric, v in summary["totals"].items():
        tot.add_row(metric, _fmt(v["base"], metric), _fmt(v["new"], metric), f"{v['ratio']:.3f}x")
    out.print(tot)
    held = summary.get("held_groups") or []
    if held:
        table = Table(title="fixed groups a template would have changed (see `inspect` for every group)",
                      title_justify="left")  # fmt: skip
        for col in ("group", "kind", "width", "producers", "fixed because"):
            table.add_column(col, no_wrap=True)
        for h in held:
            table.add_row(f"g{h['id']}", h["kind"], str(h["width"]), _producers(h["producers"], 2), h["reason"])
        out.print(table)


def print_note(summary: dict[str, Any]) -> None:
    """The reason nothing changed, when nothing did, as one yellow ``note:`` line on stderr."""
    if summary.get("note"):
        err_console.print(Text.assemble(("note: ", "yellow"), summary["note"]), highlight=False, soft_wrap=True)


def _producers(names: list[str], shown: int) -> str:
    return ", ".join(names[:shown]) + (f" (+{len(names) - shown})" if len(names) > shown else "")


def print_transfer(out: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(
        title="weights carried over (changed groups; kept = share of the importance mass kept)", title_justify="left"
    )
    for col in ("group", "stage", "producers", "base", "new", "kept"):
        table.add_column(col, justify="right")
    for r in rows:
        prods = r["producers"]
        shown = ", ".join(prods[:2]) + (f" (+{len(prods) - 2})" if len(prods) > 2 else "")
        kept = f"{r['kept_mass']:.1%}" + ("" if r["preserving"] else " [yellow](norm across channels)[/yellow]")
        table.add_row(f"g{r['group']}", r["stage"], shown, str(r["base"]), str(r["new"]), kept)
    out.print(table)


def train_progress(err: Console) -> tuple[Any, Any]:
    """Rich progress bars on stderr, one per epoch, and the trainer callback that feeds them (rank 0 only)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), console=err, transient=False)  # fmt: skip
    tasks: dict[int, Any] = {}

    def update(p: Any) -> None:
        if not tasks:
            bars.start()
        if p.epoch not in tasks:
            tasks[p.epoch] = bars.add_task("", total=p.steps, epoch=f"{p.epoch}/{p.epochs}", info="")
        info = f"loss {p.loss:.4f}"
        if p.metrics is not None and p.metrics.val_top1 is not None:
            info += f" · val top-1 {p.metrics.val_top1:.2f}% · {p.metrics.images_per_s:.0f} img/s"
        bars.update(tasks[p.epoch], completed=p.step, info=info)

    return bars, update
