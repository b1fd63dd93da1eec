"""The training hand-off: train a redistributed model with timm's components, on one device or many.

:func:`train` builds the model from a spec through the ``redistributed`` timm entrypoint (starting from the saved
weights when there are some), reads an image folder with ``timm.data``, and runs timm's classification task (or
logit distillation from the original model) with ``create_optimizer_v2``, ``create_scheduler_v2``, Mixup/CutMix,
label smoothing, ``ModelEmaV3``, native AMP and channels-last. Under ``torchrun`` it trains with
DistributedDataParallel: distributed samplers, optional synchronised BatchNorm, metrics reduced over all ranks,
and only rank 0 writing files.

The output folder gets ``metrics.csv`` (one row per epoch), ``last.pth.tar`` (a timm training checkpoint, written
atomically every epoch; ``resume=`` continues from it at the next epoch) and, at the end, the trained model as
``spec.json`` + ``config.json`` + ``model.safetensors`` (``timm.create_model("local-dir:OUT", pretrained=True)``).

Example:
    >>> result = train("out/resnet50_d", "data/flowers", config=TrainConfig(epochs=3))  # doctest: +SKIP
    >>> result.history[-1].val_top1  # doctest: +SKIP
    87.5
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..errors import CheckpointError, DataError
from ..io import atomic_path
from .config import TrainConfig
from .data import dataset, distributed, loaders, splits
from .files import CHECKPOINT, METRICS, EpochMetrics, export_model, output_folder, read_rows, write_rows

__all__ = [
    "CHECKPOINT",
    "METRICS",
    "EpochMetrics",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "train",
    "train_model",
]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainProgress:
    """What the ``progress`` callback gets: after every step, and once more per epoch with ``metrics`` set."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    metrics: EpochMetrics | None = None


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train` (``history`` includes the epochs of earlier runs when resuming)."""

    output: Path
    checkpoint: Path
    metrics_csv: Path
    history: tuple[EpochMetrics, ...]
    start_epoch: int
    rank: int
    world_size: int
    model: nn.Module = field(repr=False)


def _model(spec: Any, weights: bool, classes: int, cfg: TrainConfig, device: torch.device, world: int) -> nn.Module:
    import timm

    from ..timm import ARCHITECTURE

    torch.manual_seed(cfg.seed)  # the same initialisation on every rank
    model = timm.create_model(ARCHITECTURE, spec=spec, pretrained=weights, num_classes=classes)
    model.to(device=device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)  # type: ignore[call-overload]
    if world > 1 and cfg.sync_bn:
        from timm.layers import convert_sync_batchnorm

        model = convert_sync_batchnorm(model)
    return model  # type: ignore[no-any-return]


class _Run:
    """This process's share of a run: task (classification or distillation), optimizer, schedule, precision, EMA."""

    def __init__(
        self, model: nn.Module, cfg: TrainConfig, classes: int, device: torch.device, world: int, steps: int
    ) -> None:
        from timm.data import Mixup
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2
        from timm.utils import NativeScaler

        from .distill import training_task

        self.cfg, self.device, self.world, self.steps, self.updates = cfg, device, world, steps, 0
        self.fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        mixing = cfg.mixup > 0 or cfg.cutmix > 0
        self.mixup = (
            Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.smoothing, num_classes=classes)
            if mixing
            else None
        )
        self.task = training_task(model, cfg, classes, device)  # a timm.task.TrainingTask
        if cfg.ema:  # before resuming: the checkpoint's EMA state replaces this copy
            self.task.setup_ema(decay=cfg.ema_decay, use_warmup=True)
        self.optimizer = create_optimizer_v2(model, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay)
        half = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.amp = partial(torch.autocast, device_type=device.type, dtype=half) if cfg.amp else nullcontext
        self.scaler = NativeScaler(device=device.type) if cfg.amp and half == torch.float16 else None
        self.sched, _ = create_scheduler_v2(self.optimizer, sched=cfg.sched, num_epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs,
                                            warmup_lr=cfg.lr * 0.01, updates_per_epoch=steps)  # fmt: skip

    def resume(self, path: str | os.PathLike[str]) -> int:
        """Load model, optimizer, scaler and EMA state; returns the epoch to start at (0-based)."""
        from timm.task import load_task_ema_checkpoint, resume_task_checkpoint

        try:
            start = resume_task_checkpoint(self.task, str(path), self.optimizer, self.scaler, log_info=False) or 0
            if self.cfg.ema:
                load_task_ema_checkpoint(self.task, str(path))
        except (RuntimeError, KeyError, ValueError, OSError) as exc:
            raise CheckpointError(
                f"cannot resume from {str(path)!r}: {exc}".splitlines()[0]
                + ". Hint: give a checkpoint of this spec and data"
            ) from exc
        self.updates = start * self.steps
        if self.sched is not None and start > 0:
            self.sched.step(start)
        return start

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        with self.amp():
            loss = self.task(x.contiguous(memory_format=self.fmt), y)["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler(loss, self.optimizer, parameters=self.task.get_trainable_module().parameters())
        else:
            loss.backward()
            self.optimizer.step()
        self.updates += 1
        if self.cfg.ema:
            self.task.update_ema(step=self.updates)
        if self.sched is not None:
            self.sched.step_update(num_updates=self.updates)
        return float(loss.detach())

    def epoch(
        self, epoch: int, loader: Any, progress: Callable[[TrainProgress], None] | None
    ) -> tuple[float, int, float]:
        """Train one epoch: (mean loss, samples, seconds), summed over all processes."""
        from timm.utils import distribute_bn

        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        self.task.train()
        total, count, tic = 0.0, 0, time.perf_counter()
        for i, (x, y) in enumerate(loader, 1):
            loss = self.step(x, y)
            total, count = total + loss * x.shape[0], count + x.shape[0]
            if progress is not None:
                progress(TrainProgress(epoch + 1, self.cfg.epochs, i, len(loader), total / count))
        seconds = time.perf_counter() - tic
        sums = torch.tensor([total, count], dtype=torch.float64, device=self.device)
        if self.world > 1:
            torch.distributed.all_reduce(sums)
            if not self.cfg.sync_bn:  # the same BatchNorm statistics on every rank before validating and saving
                distribute_bn(self.task.get_trainable_module(), self.world, reduce=True)
        return float(sums[0]) / max(float(sums[1]), 1.0), int(sums[1]), seconds

    def validate(self, loader: Any) -> dict[str, float]:
        """Loss, top-1 and top-5 over the whole validation set (each rank's share, without sampler padding)."""
        from timm.task import ClassificationEvaluator, evaluation_sample_limit

        model = self.task.get_eval_model(ema=self.cfg.ema)
        evaluator = ClassificationEvaluator(self.device, max_samples=evaluation_sample_limit(loader))
        model.eval()
        with torch.no_grad():
            for x, y in loader:
                with self.amp():
                    evaluator.update(model(x.contiguous(memory_format=self.fmt)), y)
        return dict(evaluator.compute(distributed=self.world > 1))

    def save(self, path: Path, epoch: int, **extra: Any) -> None:
        """A timm training checkpoint (0-based ``epoch``, version 2: resuming starts at the next epoch), atomically."""
        state = {
            "epoch": epoch,
            "version": 2,
            "optimizer": self.optimizer.state_dict(),
            **extra,
            **self.task.get_checkpoint_state(),
        }
        if self.cfg.ema:
            state.update(self.task.get_checkpoint_state(ema=True))
        if self.scaler is not None:
            state[self.scaler.state_dict_key] = self.scaler.state_dict()
        with atomic_path(path) as tmp:
            torch.save(state, tmp)


def train(
    spec: str | os.PathLike[str] | Mapping[str, Any],
    data_dir: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    config: TrainConfig | None = None,
    *,
    weights: bool | None = None,
    resume: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Train the redistributed model a spec describes on an image folder.

    Run it in one process, or in each of ``torchrun --nproc_per_node N`` processes (DDP; rank 0 writes).

    Args:
        spec: ``spec.json``, the ``--out`` folder holding it, or a spec dict.
        data_dir: ``DIR/train/<class>/*`` and optionally ``DIR/val/<class>/*`` (or ``valid``, ``validation``).
        output: Folder for metrics, checkpoint and the trained model; default ``<spec folder>/train``.
        config: Hyper-parameters.
        weights: Start from the weights saved beside the spec (default: when there are some).
        resume: A ``last.pth.tar`` to continue from, at the epoch after it.
        force: Start over in an ``output`` that already holds a checkpoint.
        progress: Called on rank 0 after every step, and after every epoch with its metrics.

    Raises:
        DataError: The data folder is missing or not laid out by class.
        OutputError: ``output`` holds a checkpoint and neither ``resume`` nor ``force`` is given.
        CheckpointError: ``resume`` or a teacher checkpoint cannot be read or does not fit.
    """
    from ..spec import read_spec
    from ..timm import ARCHITECTURE, _weights_in

    cfg = config or TrainConfig()
    spec_data = dict(spec) if isinstance(spec, Mapping) else read_spec(spec)
    out = output_folder(spec, output, resume, force)
    train_dir, val_dir = splits(data_dir)
    ds_train = dataset(train_dir)
    classes = dict(ds_train.reader.class_to_idx)
    ds_val = dataset(val_dir, classes) if val_dir is not None else None
    if weights is None:
        weights = (
            not isinstance(spec, Mapping)
            and _weights_in(Path(spec) if Path(spec).is_dir() else Path(spec).parent) is not None
        )

    device, rank, world, started = distributed(cfg.device)
    try:
        _check_batch(len(ds_train), world, cfg.batch_size)
        model = _model(
            spec_data if isinstance(spec, Mapping) else spec, bool(weights), len(classes), cfg, device, world
        )
        base_classes = int(getattr(model, "pretrained_cfg", {})["num_classes"])
        result = _fit(
            model, cfg, len(classes), device, rank, world, out,
            partial(loaders, model, ds_train, ds_val, cfg, device, world),
            resume=resume, progress=progress, extra={"arch": ARCHITECTURE, "spec": spec_data},
        )  # fmt: skip
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            export_model(out, spec_data, result.model, base_classes)
    finally:
        if started:
            torch.distributed.destroy_process_group()
    return result


def train_model(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    num_classes: int,
    output: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Train a copy of ``model`` on in-memory datasets with the same loop and recipe as :func:`train`.

    The datasets yield ``(float tensor (C, H, W), class index)`` already normalised (e.g. a
    :class:`~redistribute.training.readers.StudyData`'s); they are batched as given (timm's image transforms and
    ``cfg.aug`` do not apply), shuffled with ``cfg.seed``. Under ``torchrun`` each rank trains its share (DDP).
    ``output`` gets ``metrics.csv`` and ``last.pth.tar`` (rank 0); no model files are exported.

    Args:
        model: The model to train; it is copied, not modified.
        train_set: Training items.
        val_set: Validation items, or None to skip validation.
        num_classes: Number of classes the model predicts.
        output: Folder for the metrics and checkpoint.
        config: Hyper-parameters.
        progress: Called on rank 0 after every step, and after every epoch with its metrics.

    Returns:
        The :class:`TrainResult`; ``model`` is the trained copy (the EMA when ``cfg.ema``).

    Raises:
        DataError: The training set does not fill one batch per process.
    """
    import copy

    from .data import tensor_loaders

    cfg = config or TrainConfig()
    out = Path(output)
    device, rank, world, started = distributed(cfg.device)
    try:
        _check_batch(len(train_set), world, cfg.batch_size)  # type: ignore[arg-type]
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        copied = copy.deepcopy(model).to(device=device, memory_format=fmt)  # type: ignore[call-overload]
        if world > 1 and cfg.sync_bn:
            from timm.layers import convert_sync_batchnorm

            copied = convert_sync_batchnorm(copied)
        result = _fit(
            copied, cfg, num_classes, device, rank, world, out,
            partial(tensor_loaders, train_set, val_set, cfg, device, world, rank), progress=progress,
        )  # fmt: skip
    finally:
        if started:
            torch.distributed.destroy_process_group()
    return result


def _check_batch(samples: int, world: int, batch_size: int) -> None:
    if samples // world < batch_size:
        raise DataError(
            f"{samples} training images over {world} process(es) do not fill one batch of {batch_size}. "
            "Hint: lower --batch-size"
        )


def _fit(
    model: nn.Module,
    cfg: TrainConfig,
    classes: int,
    device: torch.device,
    rank: int,
    world: int,
    out: Path,
    make_loaders: Callable[[], tuple[Any, Any]],
    *,
    resume: str | os.PathLike[str] | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    """The epoch loop shared by :func:`train` and :func:`train_model`: train, validate, checkpoint, log."""
    from timm.utils import random_seed, unwrap_model

    show = progress if rank == 0 else None
    random_seed(cfg.seed, rank)
    loader_train, loader_val = make_loaders()
    run = _Run(model, cfg, classes, device, world, len(loader_train))
    start = run.resume(resume) if resume is not None else 0
    if world > 1:
        run.task.prepare_distributed(device_ids=[device] if device.type == "cuda" else None)
    history = read_rows(out / METRICS, start)
    for epoch in range(start, cfg.epochs):
        lr = run.optimizer.param_groups[0]["lr"]
        loss, samples, seconds = run.epoch(epoch, loader_train, show)
        val = run.validate(loader_val) if loader_val is not None else {}
        row = EpochMetrics(
            epoch + 1, loss, val.get("loss"), val.get("top1"), val.get("top5"), lr, samples / seconds, samples, seconds
        )
        history.append(row)
        if run.sched is not None:
            run.sched.step(epoch + 1, val.get("top1"))
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            run.save(out / CHECKPOINT, epoch, metric=row.val_top1, config=asdict(cfg), **(extra or {}))
            write_rows(out / METRICS, history)
            _logger.info("epoch %d/%d: %s", epoch + 1, cfg.epochs, row)
            if show is not None:
                show(TrainProgress(epoch + 1, cfg.epochs, len(loader_train), len(loader_train), loss, row))
    final = unwrap_model(run.task.get_eval_model(ema=cfg.ema))
    return TrainResult(out, out / CHECKPOINT, out / METRICS, tuple(history), start, rank, world, final)
