"""The ``redistribute`` command line. It strings library calls together and renders results; no logic lives here.

``redistribute MODEL [options]`` runs the main job; ``redistribute templates`` and ``redistribute inspect MODEL``
are subcommands. Results go to stdout (a rich table, or one JSON object with ``--json``); diagnostics to stderr.
User errors print one red line and exit with 2 (usage) or 1 (failure); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from ..errors import UsageError
from .render import err_console, fail, one_line, out_console, print_summary, print_transfer
from .study import study
from .train import train

__all__ = ["app", "main"]

#: typer's (vendored) click errors: bad option values, missing arguments, unknown options.
_CLICK_ERRORS: tuple[type[Exception], ...] = tuple(
    {c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"} | {click.ClickException}
)


class _DefaultGroup(TyperGroup):
    """A group whose first argument, when it is not a subcommand, is the MODEL of the default ``run`` command."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # typer passes its own Context
        """Run the subcommand; a malformed command line (bad option value, missing argument) is one red line."""
        try:
            return super().invoke(ctx)
        except _CLICK_ERRORS as exc:
            hint = f"Hint: see 'redistribute {ctx.invoked_subcommand or self.default_command} --help'"
            err_console.print(
                Text.assemble(("error: ", "red"), f"{one_line(exc.format_message())}. {hint}"), soft_wrap=True
            )
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=_DefaultGroup,
    add_completion=False,
    no_args_is_help=True,
    help="Redistribute the filters of a model over depth at the same cost. Run `redistribute MODEL --template d`.",
    pretty_exceptions_enable=False,
)


# options shared by the main command and `compare`
_Divisor = Annotated[int, typer.Option(help="widths are multiples of this")]
_Ratio = Annotated[float | None, typer.Option(help="template range r (default: widest/narrowest stage of the base)")]
_Scope = Annotated[str, typer.Option(help="conv: conv-produced groups; all: linear-produced too")]
_InputSize = Annotated[str | None, typer.Option("--input-size", help="C,H,W (default: the model's own)")]


def _parse_size(text: str | None) -> tuple[int, ...] | None:
    from ..tracing.input_size import parse_input_size

    return None if text is None else parse_input_size(text, min_dims=2)


@app.command("run")
def run(
    model: Annotated[str, typer.Argument(help="timm:NAME, torchvision:NAME or path/to/file.py:factory")],
    template: Annotated[
        str,
        typer.Option(
            "--template",
            "-t",
            help="base, a-e (increasing, uniform, decreasing, peak, valley) or control points '0:1,0.5:4,1:1'",
        ),
    ] = "d",
    match: Annotated[
        str, typer.Option(help="metric held equal: flops, params, memory (analytic), latency (measured), none")
    ] = "flops",
    tolerance: Annotated[float, typer.Option(help="relative tolerance of the match")] = 0.005,
    divisor: _Divisor = 8,
    ratio: _Ratio = None,
    scope: _Scope = "conv",
    input_size: _InputSize = None,
    out: Annotated[Path | None, typer.Option(help="folder for spec.json and weights.safetensors")] = None,
    force: Annotated[bool, typer.Option(help="overwrite results already in --out")] = False,
    pretrained: Annotated[
        bool, typer.Option(help="start from the zoo's pretrained weights (timm/torchvision cache)")
    ] = False,
    checkpoint: Annotated[
        Path | None, typer.Option(help="start from these base weights: .pth/.pt/.safetensors or a timm checkpoint")
    ] = None,
    importance: Annotated[str, typer.Option(help="which channels shrinking keeps: l1, l2 or bn (BN scale)")] = "l1",
    calibrate: Annotated[
        Path | None, typer.Option(help="image folder to re-estimate BatchNorm statistics after surgery")
    ] = None,
    calibrate_batches: Annotated[
        int,
        typer.Option("--calibrate-batches", help="batches for BN re-estimation (without --calibrate: random inputs)"),
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of tables")] = False,
    device: Annotated[str, typer.Option(help="where --match latency times the models: cpu or cuda")] = "cpu",
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="images per timed forward pass (--match latency)")
    ] = 1,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch while timing (--match latency; default 1)")
    ] = None,
    debug: Annotated[bool, typer.Option(help="show tracebacks")] = False,
) -> None:
    """Redistribute MODEL's filters following a template at the base model's cost."""
    try:
        from ..io import prepare_out_dir
        from ..planning.planner import check_options
        from ..planning.planner import plan as make_plan
        from ..planning.report import plan_summary
        from ..source import load_model
        from ..spec import save_result, spec_from_plan
        from ..surgery.rebuild import apply

        check_options(
            template=template, tolerance=tolerance, divisor=divisor, ratio=ratio, scope=scope, importance=importance
        )  # before any work
        if calibrate_batches < 0:
            raise UsageError(
                f"--calibrate-batches {calibrate_batches} is negative. Hint: pass 0 (off) or a positive count"
            )
        size = _parse_size(input_size)
        outputs = ("spec.json", "weights.safetensors", "config.json", "model.safetensors")
        out_dir = prepare_out_dir(out, outputs, force) if out is not None else None
        err_console.print(f"building {model}", style="dim", markup=False)
        base = load_model(model, pretrained=pretrained)
        if checkpoint is not None:
            from ..surgery.checkpoint import load_checkpoint

            load_checkpoint(base, checkpoint)  # our own fresh model: loading in place is fine
        err_console.print("tracing and matching", style="dim")
        lm = None
        if match == "latency":
            from ..study.latency import match_latency

            lm = match_latency(base, template, tolerance=tolerance, divisor=divisor, ratio=ratio, scope=scope, input_size=size, source=model,
                               device=device, batch_size=batch_size, threads=threads, progress=lambda msg: err_console.print(msg, style="dim"))  # fmt: skip
            p = lm.plan
        else:
            p = make_plan(
                base,
                template,
                match,
                tolerance=tolerance,
                divisor=divisor,
                ratio=ratio,
                scope=scope,
                input_size=size,
                source=model,
            )
        summary = plan_summary(p)
        if pretrained or checkpoint is not None:
            from ..surgery.transfer import transfer_report

            summary["transfer"] = [r.to_dict() for r in transfer_report(base, p, importance)]
        if lm is not None:
            summary["achieved"], summary["latency"] = lm.timing.median_ms, lm.summary()
        if out_dir is not None:
            err_console.print(f"rebuilding and writing {out_dir}", style="dim", markup=False)
            new = lm.model if lm is not None else apply(base, p, importance=importance)
            if calibrate is not None or calibrate_batches > 0:
                from ..surgery.calibrate import recalibrate

                what = str(calibrate) if calibrate is not None else f"{calibrate_batches} batches of random inputs"
                err_console.print(f"re-estimating BatchNorm statistics from {what}", style="dim", markup=False)
                summary["calibrated_batches"] = recalibrate(new, p.graph.input_shape[1:], calibrate, calibrate_batches)
            from ..timm import save_timm_files

            spec = spec_from_plan(p, source=model)
            save_result(out_dir, spec, new)  # both files, or neither, replace the old pair
            save_timm_files(out_dir, spec, new)  # timm's config.json + model.safetensors, for local-dir:
            summary["outputs"] = {name.split(".")[0]: str(out_dir / name) for name in outputs}
    except Exception as exc:  # mapped to one line and an exit code
        fail(exc, debug)
        return
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        print_summary(out_console, summary)
        if "transfer" in summary:
            print_transfer(out_console, summary["transfer"])
        if lm is not None:
            out_console.print(lm.describe(), highlight=False)
        if out_dir is not None:
            out_console.print(f"wrote {', '.join(outputs)} to {out_dir}", markup=False)


_SAMPLES_KEY = "T(p) at p=0,.25,.5,.75,1 (r=8)"


@app.command("templates")
def templates(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List the templates and their shapes."""
    from ..planning.templates import list_templates

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
    out_console.print(table)


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
        from ..groups.graph import trace
        from ..planning.distribute import distribution
        from ..planning.report import group_rows
        from ..source import load_model

        graph = trace(load_model(model), _parse_size(input_size))
        positions = distribution(graph, scope).position if graph.free_groups(scope) else {}
        rows = group_rows(graph, positions)
    except Exception as exc:  # mapped to one line and an exit code
        fail(exc, debug)
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
    out_console.print(table)


@app.command("compare")
def compare(
    model: Annotated[str, typer.Argument(help="timm:NAME, torchvision:NAME or path/to/file.py:factory")],
    templates: Annotated[
        str, typer.Option("--templates", help="comma-separated templates; base is always included")
    ] = "base,a,b,c,d,e",
    match: Annotated[
        str, typer.Option(help="metric held equal: flops, params, memory (analytic) or latency (measured)")
    ] = "flops",
    tolerance: Annotated[
        float, typer.Option(help="relative tolerance of the match (latency: at least the base's noise)")
    ] = 0.005,
    divisor: _Divisor = 8,
    ratio: _Ratio = None,
    scope: _Scope = "conv",
    input_size: _InputSize = None,
    device: Annotated[str, typer.Option(help="where the variants are timed: cpu or cuda")] = "cpu",
    batch_size: Annotated[int, typer.Option("--batch-size", help="images per timed forward pass")] = 1,
    min_time: Annotated[
        float, typer.Option("--min-time", help="seconds each latency measurement lasts at least")
    ] = 1.0,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch while timing (default 1)")] = None,
    measure: Annotated[
        bool, typer.Option(help="build and time the variants (--no-measure: analytic columns only)")
    ] = True,
    check_flops: Annotated[
        bool, typer.Option("--check-flops", help="also count FLOPs with FlopCounterMode, thop and ptflops")
    ] = False,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="write the rows as CSV to this file")] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="write a PNG of width per layer, one panel per template")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of tables")] = False,
    debug: Annotated[bool, typer.Option(help="show tracebacks")] = False,
) -> None:
    """Compare every template at matched cost: FLOPs, params, memory, peak memory, latency and throughput."""
    try:
        from ..study.comparison import compare as run_compare
        from .compare import comparison_table, flops_check_table, print_wide, progress_bar, write_text

        names = [t.strip() for t in templates.split(",") if t.strip()]
        size = _parse_size(input_size)
        with progress_bar(err_console, model) as bar:
            result = run_compare(model, names, match, tolerance=tolerance, divisor=divisor, ratio=ratio, scope=scope, input_size=size,
                                 device=device, batch_size=batch_size, measure=measure, check_flops=check_flops, min_time=min_time,
                                 threads=threads, progress=bar)  # fmt: skip
        if csv_path is not None:
            write_text(csv_path, result.to_csv())
        if plot is not None:
            from ..study.plot import plot_comparison

            plot_comparison(result, plot)
    except Exception as exc:  # mapped to one line and an exit code
        fail(exc, debug)
        return
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    print_wide(out_console, comparison_table(result))
    check = flops_check_table(result)
    if check is not None:
        print_wide(out_console, check)
    for path, what in ((csv_path, "CSV"), (plot, "plot")):
        if path is not None:
            err_console.print(f"wrote {what} to {path}", style="dim")


@app.command("plot")
def plot(
    specs: Annotated[list[Path], typer.Argument(help="spec.json files (or --out folders) to draw, one panel each")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the PNG to write")] = Path("widths.png"),
    debug: Annotated[bool, typer.Option(help="show tracebacks")] = False,
) -> None:
    """Draw saved specs: width per layer in depth order against the base, one panel per spec."""
    try:
        from ..study.plot import plans_from_specs, plot_plans

        plot_plans(plans_from_specs(specs), out)
    except Exception as exc:  # mapped to one line and an exit code
        fail(exc, debug)
        return
    out_console.print(f"wrote {out}", highlight=False)


app.command("train")(train)
app.command("study")(study)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so partly written outputs are removed (see ``redistribute.io``)."""
    raise SystemExit(128 + signum)


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app(standalone_mode=True)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]")
        sys.exit(130)
