"""Training hyper-parameters: :class:`TrainConfig`, shared by the loop, the data loaders and distillation.

It lives alone so that :mod:`~redistribute.training.loop`, :mod:`~redistribute.training.data` and
:mod:`~redistribute.training.distill` can all import it without importing each other.

Example:
    >>> TrainConfig(epochs=3, lr=0.1).epochs
    3
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a training run (paths and resume options are arguments of :func:`train`).

    Attributes:
        epochs, batch_size: Schedule length; images per step and process.
        lr, opt, weight_decay, sched, warmup_epochs: timm optimizer (``sgd``, ``adamw``, ...) and scheduler.
        img_size: Training resolution; default the spec's input size.
        workers: Data-loading processes per training process.
        device: ``cpu`` or ``cuda`` (under torchrun each process takes the GPU of its local rank).
        amp: Mixed precision (float16 with loss scaling on CUDA, bfloat16 on CPU).
        channels_last: Channels-last memory format.
        seed: Seed of the initialisation (the same on every rank) and of augmentation (offset by rank).
        smoothing, mixup, cutmix, aug: Label smoothing, Mixup/CutMix alphas (0: off), timm's training augmentation.
        ema, ema_decay: Keep a ``ModelEmaV3`` average; it is what is validated and exported.
        sync_bn: Synchronised BatchNorm across processes (CUDA and torchrun only).
        teacher, teacher_checkpoint: Distil from this model source (the original model) with these weights.
        kd_temperature, kd_weight: Distillation temperature, and weight of the distillation term in [0, 1].

    Example:
        >>> TrainConfig(epochs=3, opt="adamw", lr=1e-3).batch_size
        64
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    opt: str = "sgd"
    weight_decay: float = 2e-5
    sched: str = "cosine"
    warmup_epochs: int = 0
    img_size: int | None = None
    workers: int = 4
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    seed: int = 42
    smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    aug: bool = True
    ema: bool = False
    ema_decay: float = 0.9998
    sync_bn: bool = False
    teacher: str | None = None
    teacher_checkpoint: str | None = None
    kd_temperature: float = 4.0
    kd_weight: float = 0.5

    def __post_init__(self) -> None:
        from timm.optim import list_optimizers

        rules = (  # field, valid, what it must be, example
            ("epochs", self.epochs >= 1, "at least 1", "--epochs 10"),
            ("batch_size", self.batch_size >= 1, "at least 1", "--batch-size 64"),
            ("lr", self.lr > 0, "positive", "--lr 0.05"),
            ("weight_decay", self.weight_decay >= 0, "zero or positive", "--weight-decay 2e-5"),
            ("warmup_epochs", self.warmup_epochs >= 0, "zero or positive", "--warmup-epochs 0"),
            ("workers", self.workers >= 0, "zero or positive", "--workers 4"),
            ("img_size", self.img_size is None or self.img_size >= 8, "at least 8", "--img-size 224"),
            ("smoothing", 0 <= self.smoothing < 1, "in [0, 1)", "--smoothing 0.1"),
            ("mixup", self.mixup >= 0, "zero (off) or positive", "--mixup 0.2"),
            ("cutmix", self.cutmix >= 0, "zero (off) or positive", "--cutmix 1.0"),
            ("ema_decay", 0 < self.ema_decay < 1, "in (0, 1)", "--ema-decay 0.9998"),
            ("kd_temperature", self.kd_temperature > 0, "positive", "--kd-temperature 4"),
            ("kd_weight", 0 <= self.kd_weight <= 1, "in [0, 1]", "--kd-weight 0.5"),
        )
        for name, ok, must, example in rules:
            if not ok:
                raise UsageError(
                    f"{name.replace('_', ' ')} {getattr(self, name)!r} is invalid: it must be {must} (e.g. {example})"
                )
        if self.opt.lower() not in list_optimizers():
            raise UsageError(
                f"unknown optimizer {self.opt!r}. Hint: sgd, adamw, lamb, ... (timm.optim.list_optimizers())"
            )
        if (self.mixup or self.cutmix) and self.batch_size % 2:
            raise UsageError(
                f"Mixup/CutMix needs an even batch size, got {self.batch_size}. Hint: --batch-size {self.batch_size + 1}"
            )
        if self.sync_bn and not self.device.startswith("cuda"):
            raise UsageError(
                "--sync-bn needs CUDA (SyncBatchNorm has no CPU kernel). Hint: drop it; BatchNorm statistics are averaged over processes each epoch"
            )
        if self.teacher_checkpoint and not self.teacher:
            raise UsageError("--teacher-checkpoint needs --teacher (the original model's source, e.g. timm:resnet50)")
