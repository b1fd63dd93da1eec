"""The ``redistribute`` command line. It strings library calls together and renders results; no logic lives here.

``redistribute MODEL [options]`` runs the main job; ``redistribute templates`` and ``redistribute inspect MODEL``
are subcommands. Results go to stdout (a rich table, or one JSON object with ``--json``); diagnostics to stderr.
User errors print one red line and exit with 2 (usage) or 1 (failure); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from ._errors import RedistributeError, UsageError

__all__ = ["app", "main"]

_out = Console()
_err = Console(stderr=True)


class _DefaultGroup(TyperGroup):
    """A group whose first argument, when it is not a subcommand, is the MODEL of the default ``run`` command."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultGroup,
    add_completion=False,
    no_args_is_help=True,
    help="Redistribute the filters of a model over depth at the same cost. Run `redistribute MODEL --template d`.",
    pretty_exceptions_enable=False,
)


def _parse_size(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        size = tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise UsageError(f"input size {text!r} is not a list of integers. Hint: --input-size 3,224,224") from None
    if len(size) < 2 or any(s <= 0 for s in size):
        raise UsageError(f"input size {text!r} is invalid. Hint: --input-size 3,224,224 (channels first)")
    return size


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        raise exc
    if isinstance(exc, RedistributeError):
        _err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code)
    _err.print(f"[red]error:[/red] unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _fmt(x: float, metric: str) -> str:
    if metric == "memory":
        return f"{x / 2**20:.1f} MB"
    if metric == "flops":
        return f"{x / 1e9:.3f} G"
    return f"{x / 1e6:.3f} M"


def _print_summary(summary: dict[str, Any]) -> None:
    head = f"{summary['source'] or 'model'} · template {summary['template']} · match {summary['match']} · k={summary['k']:.4g} · r={summary['ratio']:.3g}"
    stages = Table(title=head, title_justify="left")
    for col in ("stage", "groups", "base min/median/max", "new min/median/max"):
        stages.add_column(col, justify="right")
    for row in summary["stages"]:
        b, n = row["base"], row["new"]
        stages.add_row(
            row["stage"], str(row["groups"]), f"{b['min']}/{b['median']:g}/{b['max']}", f"{n['min']}/{n['median']:g}/{n['max']}"
        )
    _out.print(stages)
    tot = Table(title="totals (batch 1)", title_justify="left")
    for col in ("metric", "base", "new", "ratio"):
        tot.add_column(col, justify="right")
    for metric, v in summary["totals"].items():
        tot.add_row(metric, _fmt(v["base"], metric), _fmt(v["new"], metric), f"{v['ratio']:.3f}x")
    _out.print(tot)


@app.command("run")
def run(
    model: Annotated[str, typer.Argument(help="timm:NAME, torchvision:NAME or path/to/file.py:factory")],
    template: Annotated[str, typer.Option("--template", "-t", help="base, a-e (increasing, uniform, decreasing, peak, valley) or control points '0:1,0.5:4,1:1'")] = "d",
    match: Annotated[str, typer.Option(help="metric held equal: flops, params, memory, none")] = "flops",
    tolerance: Annotated[float, typer.Option(help="relative tolerance of the match")] = 0.005,
    divisor: Annotated[int, typer.Option(help="widths are multiples of this")] = 8,
    ratio: Annotated[float | None, typer.Option(help="template range r (default: widest/narrowest stage of the base)")] = None,
    scope: Annotated[str, typer.Option(help="conv: conv-produced groups; all: linear-produced too")] = "conv",
    input_size: Annotated[str | None, typer.Option("--input-size", help="C,H,W (default: the model's own)")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for spec.json and weights.safetensors")] = None,
    force: Annotated[bool, typer.Option(help="overwrite results already in --out")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of tables")] = False,
    debug: Annotated[bool, typer.Option(help="show tracebacks")] = False,
) -> None:
    """Redistribute MODEL's filters following a template at the base model's cost."""
    try:
        from ._io import prepare_out_dir
        from ._plan import plan as make_plan
        from ._report import plan_summary
        from ._source import load_model
        from ._spec import save_spec, spec_from_plan
        from ._surgery import apply
        from ._templates import get_template
        from ._weights import save_weights

        get_template(template)
        size = _parse_size(input_size)
        out_dir = prepare_out_dir(out, ("spec.json", "weights.safetensors"), force) if out is not None else None
        _err.print(f"building {model}", style="dim")
        base = load_model(model)
        _err.print("tracing and matching", style="dim")
        p = make_plan(base, template, match, tolerance=tolerance, divisor=divisor, ratio=ratio, scope=scope, input_size=size, source=model)
        summary = plan_summary(p)
        if out_dir is not None:
            _err.print(f"rebuilding and writing {out_dir}", style="dim")
            new = apply(base, p)
            save_spec(spec_from_plan(p, source=model), out_dir / "spec.json")
            save_weights(new, out_dir / "weights.safetensors")
            summary["outputs"] = {"spec": str(out_dir / "spec.json"), "weights": str(out_dir / "weights.safetensors")}
    except Exception as exc:  # mapped to one line and an exit code
        _fail(exc, debug)
        return
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        _print_summary(summary)
        if out_dir is not None:
            _out.print(f"wrote {out_dir / 'spec.json'} and {out_dir / 'weights.safetensors'}")


_SAMPLES_KEY = "T(p) at p=0,.25,.5,.75,1 (r=8)"


@app.command("templates")
def templates(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List the templates and their shapes."""
    from ._templates import list_templates

    rows = []
    for t in list_templates():
        samples = [] if t.is_base else [round(t(p, 8.0), 3) for p in (0.0, 0.25, 0.5, 0.75, 1.0)]
        rows.append({"name": t.name, "alias": t.alias, "shape": t.description, _SAMPLES_KEY: samples})
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="templates (T(p), values in [1/r, 1])", title_justify="left")
    for col in ("name", "alias", "shape", "p=0 .25 .5 .75 1 (r=8)"):
        table.add_column(col)
    for r in rows:
        samples = r[_SAMPLES_KEY]
        table.add_row(r["name"], r["alias"], r["shape"], " ".join(f"{v:.2f}" for v in samples) or "base trend")
    _out.print(table)


@app.command("inspect")
def inspect(
    model: Annotated[str, typer.Argument(help="timm:NAME, torchvision:NAME or path/to/file.py:factory")],
    input_size: Annotated[str | None, typer.Option("--input-size", help="C,H,W")] = None,
    scope: Annotated[str, typer.Option(help="conv or all (for positions)")] = "conv",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    debug: Annotated[bool, typer.Option(help="show tracebacks")] = False,
) -> None:
    """List MODEL's channel groups: id, width, stage, position, producers, constraints or why fixed."""
    try:
        from ._distribute import distribution
        from ._graph import trace
        from ._report import group_rows
        from ._source import load_model

        graph = trace(load_model(model), _parse_size(input_size))
        positions = distribution(graph, scope).position if graph.free_groups(scope) else {}
        rows = group_rows(graph, positions)
    except Exception as exc:  # mapped to one line and an exit code
        _fail(exc, debug)
        return
    if as_json:
        sys.stdout.write(json.dumps({"groups": rows, "opaque": graph.opaque}, indent=2) + "\n")
        return
    free = sum(1 for r in rows if r["fixed"] is None)
    table = Table(title=f"{model}: {len(rows)} groups, {free} free, {len(rows) - free} fixed", title_justify="left")
    for col in ("id", "width", "kind", "stage", "pos", "producers", "constraints / fixed"):
        table.add_column(col, overflow="fold")
    for r in rows:
        prods = r["producers"]
        shown = ", ".join(prods[:3]) + (f" (+{len(prods) - 3})" if len(prods) > 3 else "")
        pos = "" if r["position"] is None else f"{r['position']:.2f}"
        note = f"[yellow]fixed: {r['fixed']}[/yellow]" if r["fixed"] else r["constraints"]
        table.add_row(str(r["id"]), str(r["width"]), r["kind"], r["stage"], pos, shown, note)
    _out.print(table)


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        app(standalone_mode=True)
    except KeyboardInterrupt:
        _err.print("[red]interrupted[/red]")
        sys.exit(130)
