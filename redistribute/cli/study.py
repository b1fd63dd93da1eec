"""The ``redistribute study`` command: options in, :func:`redistribute.study.run_study` called, runs and epochs shown."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .render import err_console, fail, out_console

__all__ = ["study"]


def _progress() -> tuple[Any, Any]:
    """Rich bars on stderr (runs, and the steps of the current epoch) and the callback that feeds them."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), console=err_console, transient=False)  # fmt: skip
    state: dict[str, Any] = {}

    def update(p: Any) -> None:
        if "runs" not in state:
            bars.start()
            state["runs"] = bars.add_task("runs", total=p.total, info="")
        if p.kind in ("skip", "done"):
            r = p.result
            note = "finished before, skipped" if p.kind == "skip" else f"top-1 {r.top1:.2f}%"
            bars.update(state["runs"], completed=p.done, info=f"{p.run}: {note}")
            return
        t = p.train
        key = (p.run, t.epoch)
        if state.get("epoch") != key:
            if "steps" in state:
                bars.remove_task(state["steps"])
            state["epoch"] = key
            state["steps"] = bars.add_task(f"{p.run} epoch {t.epoch}/{t.epochs}", total=t.steps, info="")
        info = f"loss {t.loss:.4f}"
        if t.metrics is not None and t.metrics.val_top1 is not None:
            info += f" · val top-1 {t.metrics.val_top1:.2f}%"
        bars.update(state["steps"], completed=t.step, info=info)

    return bars, update


def study(
    model: Annotated[str, typer.Argument(help="model source: timm:NAME, torchvision:NAME or path/to/file.py:factory")],
    data: Annotated[
        str, typer.Option("--data", help="cifar10:DIR, fsdd:DIR, mnist, or an image folder DIR/{train,val}/<class>/*")
    ],
    templates: Annotated[str, typer.Option(help="comma-separated templates; base gives the ratios")] = "base,a,b,c,d,e",
    match: Annotated[str, typer.Option(help="cost every template is matched on: flops, params or memory")] = "flops",
    epochs: Annotated[int, typer.Option(help="epochs per run")] = 10,
    seeds: Annotated[int, typer.Option(help="seeds per template (0..S-1)")] = 1,
    from_scratch: Annotated[
        bool, typer.Option("--from-scratch", help="seeded fresh initialisation (the default)")
    ] = False,
    pretrained: Annotated[bool, typer.Option("--pretrained", help="start from the zoo's weights")] = False,
    checkpoint: Annotated[Path | None, typer.Option(help="start from these base-model weights")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="the study folder (rerun it to resume)")] = Path("study"),
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available)")] = None,
    amp: Annotated[bool, typer.Option(help="mixed precision")] = False,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="channels-last memory format")] = False,
    executor: Annotated[str, typer.Option(help="local (one after another), torchrun (DDP) or ray")] = "local",
    nproc_per_node: Annotated[int, typer.Option("--nproc-per-node", help="torchrun: processes (GPUs) per run")] = 1,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="ray: cluster address (default: a local Ray)")
    ] = None,
    gpus_per_run: Annotated[
        float | None, typer.Option("--gpus-per-run", help="ray: GPUs per run (default: 1 on cuda, else 0)")
    ] = None,
    limit_train: Annotated[
        int | None, typer.Option("--limit-train", help="class-balanced subset of the training set")
    ] = None,
    limit_val: Annotated[int | None, typer.Option("--limit-val", help="class-balanced subset of the val set")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="images per step and process")] = 64,
    lr: Annotated[float, typer.Option(help="learning rate")] = 0.05,
    opt: Annotated[str, typer.Option(help="timm optimizer: sgd, adamw, lamb, ...")] = "sgd",
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="weight decay")] = 5e-4,
    workers: Annotated[int, typer.Option(help="data-loading processes per run")] = 2,
    divisor: Annotated[int, typer.Option(help="widths are multiples of this")] = 8,
    measure: Annotated[bool, typer.Option(help="time each trained model (--no-measure: skip)")] = True,
    verify: Annotated[
        bool, typer.Option(help="open every data file before training (--no-verify: only each class's first)")
    ] = True,
    min_time: Annotated[float, typer.Option("--min-time", help="seconds each latency measurement lasts")] = 1.0,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="where archives are extracted")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print study.json instead of the table")] = False,
    debug: Annotated[bool, typer.Option(help="show tracebacks")] = False,
) -> None:
    """Train every template at matched cost under one recipe and compare accuracy, params, FLOPs and latency."""
    try:
        from ..errors import UsageError
        from ..study.executors import ExecutorOptions
        from ..study.studies import run_study
        from ..training.config import TrainConfig

        if sum((from_scratch, pretrained, checkpoint is not None)) > 1:
            raise UsageError("give at most one of --from-scratch, --pretrained and --checkpoint PATH")
        init = "pretrained" if pretrained else "checkpoint" if checkpoint is not None else "scratch"
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, opt=opt, weight_decay=weight_decay,
                             workers=workers, device=device, amp=amp, channels_last=channels_last)  # fmt: skip
        gpus = gpus_per_run if gpus_per_run is not None else 1.0 if device.startswith("cuda") else 0.0
        options = ExecutorOptions(nproc_per_node=nproc_per_node, ray_address=ray_address, gpus_per_run=gpus)
        bars, update = _progress()
        try:
            result = run_study(model, data, templates=templates.split(","), match=match, seeds=seeds, config=config,
                               init=init, checkpoint=checkpoint, out=out, executor=executor, executor_options=options,
                               limit_train=limit_train, limit_val=limit_val, cache_dir=cache_dir, divisor=divisor,
                               measure=measure, verify=verify, min_time=min_time, progress=update)  # fmt: skip
        finally:
            if bars.live.is_started:
                bars.stop()
    except Exception as exc:  # mapped to one line and an exit code
        fail(exc, debug)
        return
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    out_console.print(result.to_markdown(), highlight=False, markup=False)
    if result.skipped:
        err_console.print(f"{len(result.skipped)} run(s) finished before were not run again", style="dim")
    err_console.print(f"wrote study.csv, study.json, study.md and study.png to {out}", style="dim")
