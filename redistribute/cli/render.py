"""Rich rendering for the CLI: the consoles, one-line errors, summary tables and progress bars (no logic)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import RedistributeError

__all__ = [
    "err_console",
    "fail",
    "one_line",
    "out_console",
    "print_groups",
    "print_note",
    "print_result",
    "print_summary",
    "print_transfer",
    "train_progress",
]

out_console = Console()
err_console = Console(stderr=True)


class _Table(Table):
    """A table whose cells never wrap (a name is never cut mid-word); :func:`show` prints it at its natural width,
    its heading on a line of its own (a rich title would wrap at the table's width)."""

    heading: str | None = None

    def add_column(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("no_wrap", True)
        super().add_column(*args, **kwargs)


def new_table(title: str, console: Console | None = None, **kwargs: Any) -> Table:
    """A table titled ``title``: box-drawn on a terminal, plain aligned columns when ``console`` (default stdout) is
    not one (a file, a pipe), so the output reads well in logs and diffs."""
    plain = not (console or out_console).is_terminal
    table = _Table( box=None if plain else box.HEAVY_HEAD, show_edge=not plain,
                  caption_justify="left", **kwargs)  # fmt: skip
    table.heading = title
    return table


def show(console: Console, renderable: Any) -> None:
    """Print on ``console`` without squeezing columns to its width (80 when output is not a terminal): a table
    wider than that is printed at its natural width."""
    heading = getattr(renderable, "heading", None)
    if heading:
        console.print(heading, style="italic", soft_wrap=True, highlight=False, markup=False)
    needed = console.measure(renderable, options=console.options.update_width(100_000)).maximum
    if needed <= console.width:
        console.print(renderable)
        return
    colours = cast(Any, console.color_system)  # the name of the system in use: a valid constructor value
    wide = Console(file=console.file, width=needed, color_system=colours, force_terminal=console.is_terminal)
    wide.print(renderable)


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


def headline(summary: dict[str, Any]) -> str:
    """``timm:resnet50 · template d · FLOPs 1.000x (matched) · params 0.871x · stage widths 64-512 -> 120-480``:
    the figures a user reads first (the stage widths are the medians of the narrowest and widest stage)."""
    parts = [summary["source"] or "model", f"template {summary['template']}"]
    for metric, label in (("flops", "FLOPs"), ("params", "params")):
        ratio = summary["totals"][metric]["ratio"]
        parts.append(f"{label} {ratio:.3f}x" + (" (matched)" if summary["match"] == metric else ""))
    if summary["match"] not in ("flops", "params"):
        parts.append(f"matched {summary['match']}")
    if summary["stages"]:
        base = [row["base"]["median"] for row in summary["stages"]]
        new = [row["new"]["median"] for row in summary["stages"]]
        parts.append(f"stage widths {min(base):g}-{max(base):g} -> {min(new):g}-{max(new):g}")
    return " · ".join(parts) + f" · range r={summary['ratio']:.3g}"


def print_summary(out: Console, summary: dict[str, Any]) -> None:
    stages = new_table(headline(summary))
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
    show(out, stages)
    fid = summary.get("fidelity")
    if fid is not None and fid["group"] is not None:
        line = f"shape: largest deviation from the template {fid['deviation']:.1%} (g{fid['group']})"
        if fid["realised"]:
            out.print(line + ", within one rounding step", markup=False, highlight=False)
        else:
            out.print(
                f"[yellow]{line}: template {summary['template']} cannot be realised on this model; these are the "
                "closest widths within the tolerance[/yellow]",
                highlight=False,
            )
    tot = new_table("totals (batch 1)")
    for col in ("metric", "base", "new", "ratio"):
        tot.add_column(col, justify="right")
    for metric, v in summary["totals"].items():
        tot.add_row(metric, _fmt(v["base"], metric), _fmt(v["new"], metric), f"{v['ratio']:.3f}x")
    show(out, tot)
    held = summary.get("held_groups") or []
    if held:
        table = new_table("fixed groups a template would have changed (see `inspect` for every group)",
                      title_justify="left")  # fmt: skip
        for col in ("group", "kind", "width", "producers", "fixed because"):
            table.add_column(col, no_wrap=True)
        for h in held:
            table.add_row(f"g{h['id']}", h["kind"], str(h["width"]), _producers(h["producers"], 2), h["reason"])
        show(out, table)


def print_result(summary: dict[str, Any], model: str, *, as_json: bool, latency: str | None = None) -> None:
    """Everything the main command prints once its work is done: notes on stderr; the summary, the ``--groups``
    rows, the transfer report, the latency match and the files written on stdout (or one JSON object)."""
    print_note(summary)
    if as_json:
        out_console.file.write(json.dumps(summary, indent=2) + "\n")
    else:
        print_summary(out_console, summary)
        if "group_rows" in summary:
            print_groups(out_console, f"{model}: every group", summary["group_rows"])
        if "transfer" in summary:
            print_transfer(out_console, summary["transfer"])
        if latency is not None:
            out_console.print(latency, highlight=False)
        if "outputs" in summary:
            files = ", ".join(Path(path).name for path in summary["outputs"].values())
            folder = Path(next(iter(summary["outputs"].values()))).parent
            out_console.print(f"wrote {files} to {folder}", markup=False, soft_wrap=True)
    if summary.get("weights") == "initialised":
        folder = Path(next(iter(summary["outputs"].values()))).parent
        err_console.print(
            Text.assemble(("note: ", "yellow"), f"the weights in {folder} are freshly initialised (no --pretrained or "
                          "--checkpoint): train them, or pass --pretrained or --checkpoint PATH to carry weights over"),
            highlight=False, soft_wrap=True,
        )  # fmt: skip


def print_groups(out: Console, title: str, rows: list[dict[str, Any]]) -> None:
    """Every group: id, width (``base -> new`` for a plan), kind, stage, position, producers, constraints or why
    fixed (rows of :func:`~redistribute.planning.report.group_rows`)."""
    planned = bool(rows) and "new" in rows[0]
    table = new_table(title)
    for col in ("id", "base", "new") if planned else ("id", "width"):
        table.add_column(col, justify="right")
    for col in ("kind", "stage", "pos", "producers", "constraints / fixed"):
        table.add_column(col)
    for r in rows:
        pos = "" if r["position"] is None else f"{r['position']:.2f}"
        note = Text(f"fixed: {r['fixed']}", style="yellow") if r["fixed"] else r["constraints"]
        widths = (str(r["width"]), str(r["new"])) if planned else (str(r["width"]),)
        table.add_row(f"g{r['id']}", *widths, r["kind"], r["stage"], pos, _producers(r["producers"], 3), note)
    show(out, table)


def print_note(summary: dict[str, Any]) -> None:
    """The reason nothing changed, when nothing did, as one yellow ``note:`` line on stderr."""
    if summary.get("note"):
        err_console.print(Text.assemble(("note: ", "yellow"), summary["note"]), highlight=False, soft_wrap=True)


def _producers(names: list[str], shown: int) -> str:
    return ", ".join(names[:shown]) + (f" (+{len(names) - shown})" if len(names) > shown else "")


def print_transfer(out: Console, rows: list[dict[str, Any]]) -> None:
    table = new_table(
        "weights carried over (changed groups; kept = share of the importance mass kept)", title_justify="left"
    )
    for col in ("group", "stage", "producers", "base", "new", "kept"):
        table.add_column(col, justify="right")
    for r in rows:
        prods = r["producers"]
        shown = ", ".join(prods[:2]) + (f" (+{len(prods) - 2})" if len(prods) > 2 else "")
        across = f" [yellow](mixed across channels at {r.get('across')})[/yellow]"
        kept = f"{r['kept_mass']:.1%}" + ("" if r["preserving"] else across)
        table.add_row(f"g{r['group']}", r["stage"], shown, str(r["base"]), str(r["new"]), kept)
    show(out, table)


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
