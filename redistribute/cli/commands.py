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
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from .checks import (
    check_calibrate,
    check_device,
    check_match,
    check_weights,
    input_size_hint,
    removed_if_failed,
    template_list,
)
from .group import CONTEXT, DefaultCommand, DefaultGroup
from .render import (
    err_console,
    fail,
    new_table,
    out_console,
    print_groups,
    print_result,
    show,
)
from .startup import exit_now
from .study import study
from .train import train

__all__ = ["app", "main"]

app = typer.Typer(
    cls=DefaultGroup,
    context_settings=CONTEXT,
    add_completion=False,
    no_args_is_help=True,
    help="Redistribute the filters of a model over depth at the same cost. Run `redistribute MODEL --template d`.",
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from ..version import __version__

        out_console.print(f"redistribute {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _top(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Redistribute the filters of a model over depth at the same cost. Run `redistribute MODEL --template d`."""


# options shared by the main command and `compare`
_Divisor = Annotated[int, typer.Option(help="widths are multiples of this")]
_Ratio = Annotated[float | None, typer.Option(help="template range r (default: widest/narrowest stage of the base)")]
_Scope = Annotated[str, typer.Option(help="conv: conv-produced groups; all: linear-produced too")]
_InputSize = Annotated[
    str | None, typer.Option("--input-size", help="C,H,W, or any shape without batch: 32 (default: the model's own)")
]


def _parse_size(text: str | None) -> tuple[int, ...] | None:
    from ..tracing.input_size import parse_input_size

    return None if text is None else parse_input_size(text)


@app.command("run", cls=DefaultCommand)
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
    groups: Annotated[
        bool, typer.Option("--groups", help="also list every group: base and new width, stage, position, why fixed")
    ] = False,
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
        with ExitStack() as stack:
            from ..api import build, load_base
            from ..io import prepare_out_dir
            from ..planning.planner import check_options
            from ..planning.planner import plan as make_plan
            from ..planning.report import plan_group_rows, plan_summary
            from ..spec import save_result, spec_from_plan

            match = check_match(match)
            scope, importance, device = scope.lower(), importance.lower(), device.lower()  # options ignore case
            check_options(
                template=template, tolerance=tolerance, divisor=divisor, ratio=ratio, scope=scope, importance=importance
            )  # before any work
            size = _parse_size(input_size)
            check_calibrate(calibrate, calibrate_batches, out)
            check_device(device)
            check_weights(pretrained, checkpoint, model)
            outputs = ("spec.json", "weights.safetensors", "config.json", "model.safetensors")
            weights_origin = "pretrained" if pretrained else "checkpoint" if checkpoint is not None else "initialised"
            stack.enter_context(removed_if_failed(out))
            out_dir = prepare_out_dir(out, outputs, force) if out is not None else None
            err_console.print(f"building {model}", style="dim", markup=False)
            # a skeleton unless weights are given or latency is measured: planning needs no weights
            base = load_base(model, pretrained=pretrained, checkpoint=checkpoint, real=match == "latency")
            stack.enter_context(input_size_hint(base, size))
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
            if groups:
                summary["group_rows"] = plan_group_rows(p)
            if pretrained or checkpoint is not None:
                from ..surgery.transfer import transfer_report

                summary["transfer"] = [r.to_dict() for r in transfer_report(base, p, importance)]
            if lm is not None:
                summary["achieved"], summary["latency"] = lm.timing.median_ms, lm.summary()
            if out_dir is not None:
                err_console.print(f"rebuilding and writing {out_dir}", style="dim", markup=False)
                new = lm.model if lm is not None else build(base, p, importance=importance, source=model)
                if calibrate is not None or calibrate_batches > 0:
                    from ..surgery.calibrate import recalibrate

                    what = str(calibrate) if calibrate is not None else f"{calibrate_batches} batches of random inputs"
                    err_console.print(f"re-estimating BatchNorm statistics from {what}", style="dim", markup=False)
                    summary["calibrated_batches"] = recalibrate(
                        new, p.graph.input_shape[1:], calibrate, calibrate_batches
                    )
                from ..timm import save_timm_files

                spec = spec_from_plan(p, source=model)
                save_result(out_dir, spec, new)  # both files, or neither, replace the old pair
                save_timm_files(out_dir, spec, new, same_weights=out_dir / "weights.safetensors")  # for local-dir:
                summary["outputs"] = {name.split(".")[0]: str(out_dir / name) for name in outputs}
                summary["weights"] = weights_origin
    except Exception as exc:  # mapped to one line and an exit code
        fail(exc, debug)
        return
    print_result(summary, model, as_json=as_json, latency=None if lm is None else lm.describe())


#: Where ``templates`` samples each template, and at which range ``r``.
_POSITIONS, _R = (0.0, 0.25, 0.5, 0.75, 1.0), 8.0


@app.command("templates")
def templates(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List the templates and their shapes."""
    from ..planning.templates import list_templates

    rows = []
    for t in list_templates():
        samples = [] if t.is_base else [round(t(p, _R), 3) for p in _POSITIONS]
        rows.append({"name": t.name, "alias": t.alias, "shape": t.description, "positions": list(_POSITIONS),
                     "r": _R, "samples": samples})  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = new_table("templates (T(p), values in [1/r, 1])")
    for col in ("name", "alias", "shape", "p=0 .25 .5 .75 1 (r=8)"):
        table.add_column(col)
    for r in rows:
        samples = r["samples"]
        table.add_row(r["name"], r["alias"], r["shape"], " ".join(f"{v:.2f}" for v in samples) or "base trend")
    show(out_console, table)


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

        size = _parse_size(input_size)
        base = load_model(model, meta=True)  # a skeleton: groups need no weights
        with input_size_hint(base, size):
            graph = trace(base, size)
        positions = distribution(graph, scope).position if graph.free_groups(scope) else {}
        rows = group_rows(graph, positions)
    except Exception as exc:  # mapped to one line and an exit code
        fail(exc, debug)
        return
    if as_json:
        sys.stdout.write(json.dumps({"groups": rows, "opaque": graph.opaque}, indent=2) + "\n")
        return
    free = sum(1 for r in rows if r["fixed"] is None)
    print_groups(out_console, f"{model}: {len(rows)} groups, {free} free, {len(rows) - free} fixed", rows)


@app.command("compare")
def compare(
    model: Annotated[str, typer.Argument(help="timm:NAME, torchvision:NAME or path/to/file.py:factory")],
    templates: Annotated[
        list[str] | None,
        typer.Option(
            "--templates",
            help="templates, comma-separated or repeated; control points like '0:1,0.5:4,1:1' allowed (separate two "
            "with ';'); base is always included  [default: base,a,b,c,d,e]",
        ),
    ] = None,
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
        from .compare import comparison_table, flops_check_table, progress_bar, write_text

        match, scope, device = check_match(match, "compare"), scope.lower(), device.lower()  # options ignore case
        check_device(device)
        names = template_list(templates or ["base,a,b,c,d,e"])
        size = _parse_size(input_size)
        file_source = None if model.partition(":")[0] in ("timm", "torchvision") else model
        with progress_bar(err_console, model) as bar, input_size_hint(file_source, size):
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
    show(out_console, comparison_table(result))
    check = flops_check_table(result)
    if check is not None:
        show(out_console, check)
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
    """Console-script entry point; the process ends through :func:`~redistribute.cli.startup.exit_now`."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _terminate)
    code: object = 0
    try:
        app(standalone_mode=True)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]")
        code = 130
    except SystemExit as exc:
        code = exc.code
    exit_now(code)  # skips the interpreter's teardown (cli/startup.py)
