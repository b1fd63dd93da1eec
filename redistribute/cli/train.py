"""The ``redistribute train`` command: options in, :func:`redistribute.training.loop.train` called, epochs rendered."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from .checks import check_device, check_weights
from .render import err_console, fail, new_table, out_console, show, train_progress

__all__ = ["classifier_note", "train"]


def classifier_note(spec: Path, data_dir: Path) -> None:
    """Say, before training, when the data's class count differs from the spec's, so the classifier is replaced."""
    from ..spec import read_spec
    from ..timm import spec_num_classes
    from ..training.data import splits

    train_dir, _ = splits(data_dir)  # a data folder laid out wrong fails here, before any model is built
    data_classes = sum(1 for p in train_dir.iterdir() if p.is_dir())
    spec_classes = spec_num_classes(read_spec(spec))
    if spec_classes is not None and data_classes and spec_classes != data_classes:
        err_console.print(
            Text.assemble(("note: ", "yellow"), f"replacing the classifier: the model in {spec} predicts {spec_classes} "
                          f"classes and {data_dir} has {data_classes}; the new {data_classes}-class head starts fresh"),
            highlight=False, soft_wrap=True,
        )  # fmt: skip


def train(
    spec: Annotated[Path, typer.Argument(help="spec.json, or the --out folder holding it (and its weights)")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="image folder: DIR/train/<class>/*, DIR/val/<class>/*")],
    output: Annotated[
        Path | None,
        typer.Option(help="folder for metrics.csv, last.pth.tar and the trained model (default: SPEC's folder/train)"),
    ] = None,
    epochs: Annotated[int, typer.Option(help="epochs to train")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="images per step and process")] = 64,
    lr: Annotated[float, typer.Option(help="learning rate")] = 0.05,
    opt: Annotated[str, typer.Option(help="timm optimizer: sgd, adamw, lamb, ...")] = "sgd",
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="weight decay")] = 2e-5,
    sched: Annotated[str, typer.Option(help="timm scheduler: cosine, step, none, ...")] = "cosine",
    warmup_epochs: Annotated[int, typer.Option("--warmup-epochs", help="linear warm-up epochs")] = 0,
    img_size: Annotated[
        int | None, typer.Option("--img-size", help="training resolution (default: the spec's input size)")
    ] = None,
    workers: Annotated[int, typer.Option(help="data-loading processes per training process")] = 4,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available)")] = None,
    amp: Annotated[bool, typer.Option(help="mixed precision")] = False,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="channels-last memory format")] = False,
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    smoothing: Annotated[float, typer.Option(help="label smoothing")] = 0.1,
    mixup: Annotated[float, typer.Option(help="Mixup alpha (0: off)")] = 0.0,
    cutmix: Annotated[float, typer.Option(help="CutMix alpha (0: off)")] = 0.0,
    aug: Annotated[bool, typer.Option(help="timm's training augmentation")] = True,
    ema: Annotated[bool, typer.Option(help="keep, validate and export an EMA of the weights")] = False,
    ema_decay: Annotated[float, typer.Option("--ema-decay", help="EMA decay")] = 0.9998,
    sync_bn: Annotated[
        bool, typer.Option("--sync-bn", help="synchronised BatchNorm across processes (torchrun)")
    ] = False,
    teacher: Annotated[
        str | None, typer.Option(help="distil from this model, e.g. the original: timm:resnet50")
    ] = None,
    teacher_checkpoint: Annotated[
        Path | None, typer.Option("--teacher-checkpoint", help="the teacher's trained weights")
    ] = None,
    kd_temperature: Annotated[float, typer.Option("--kd-temperature", help="distillation temperature")] = 4.0,
    kd_weight: Annotated[float, typer.Option("--kd-weight", help="weight of the distillation loss in [0, 1]")] = 0.5,
    weights: Annotated[
        bool | None, typer.Option(help="start from the weights saved beside the spec (default: when present)")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="continue from this last.pth.tar at the next epoch")] = None,
    force: Annotated[bool, typer.Option(help="start over in an --output that holds a checkpoint")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the epochs as one JSON object")] = False,
    debug: Annotated[bool, typer.Option(help="show tracebacks")] = False,
) -> None:
    """Train the redistributed model in SPEC on an image folder with timm (torchrun for many GPUs)."""
    try:
        from ..training.loop import TrainConfig
        from ..training.loop import train as run_train

        check_device(device)
        if teacher is not None:  # a zoo teacher without a checkpoint gets its pretrained weights: reachable?
            zoo = teacher.partition(":")[0] in ("timm", "torchvision")
            check_weights(zoo and teacher_checkpoint is None, teacher_checkpoint, teacher, "--teacher-checkpoint")
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, opt=opt, weight_decay=weight_decay, sched=sched,
                             warmup_epochs=warmup_epochs, img_size=img_size, workers=workers, device=device, amp=amp,
                             channels_last=channels_last, seed=seed, smoothing=smoothing, mixup=mixup, cutmix=cutmix, aug=aug,
                             ema=ema, ema_decay=ema_decay, sync_bn=sync_bn, teacher=teacher,
                             teacher_checkpoint=None if teacher_checkpoint is None else str(teacher_checkpoint),
                             kd_temperature=kd_temperature, kd_weight=kd_weight)  # fmt: skip
        classifier_note(spec, data_dir)
        bars, update = train_progress(err_console)
        try:
            result = run_train(
                spec, data_dir, output, config, weights=weights, resume=resume, force=force, progress=update
            )
        finally:
            if bars.live.is_started:
                bars.stop()
    except Exception as exc:  # mapped to one line and an exit code
        fail(exc, debug)
        return
    if result.rank != 0:
        return
    from dataclasses import asdict

    rows = [asdict(h) for h in result.history]
    if as_json:
        sys.stdout.write(json.dumps({"output": str(result.output), "epochs": rows}, indent=2) + "\n")
        return
    table = new_table(f"trained {spec} ({result.world_size} process(es))")
    for col in ("epoch", "train loss", "val loss", "val top-1", "val top-5", "lr", "images/s"):
        table.add_column(col, justify="right")
    fmt = lambda v, spec="{:.4f}": "" if v is None else spec.format(v)  # noqa: E731
    for r in rows:
        table.add_row(str(r["epoch"]), fmt(r["train_loss"]), fmt(r["val_loss"]), fmt(r["val_top1"], "{:.2f}"), fmt(r["val_top5"], "{:.2f}"),
                      fmt(r["lr"], "{:.3g}"), fmt(r["images_per_s"], "{:.1f}"))  # fmt: skip
    show(out_console, table)
    out_console.print(
        f"wrote {result.metrics_csv}, {result.checkpoint} and the trained model in {result.output}", highlight=False
    )
