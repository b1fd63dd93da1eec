"""Distillation from the original model: the teacher, and timm's logit-distillation task around the student.

After post-hoc reshaping the natural teacher is the model the student came from. :func:`build_teacher` builds it
from a source string with its trained weights; :func:`distillation_task` wraps student and teacher in timm's
``LogitDistillationTask`` (KL divergence between temperature-softened logits, times T², mixed with the label
loss), which also maps the student's input normalisation to the teacher's.

Example:
    >>> import timm
    >>> student = timm.create_model("test_resnet", num_classes=4)
    >>> teacher = timm.create_model("test_resnet", num_classes=4).eval()
    >>> task = distillation_task(student, teacher, temperature=2.0, kd_weight=0.5)
    >>> sorted(task(torch.randn(2, 3, 32, 32), torch.tensor([0, 1])))
    ['kd_loss', 'loss', 'output', 'task_loss']
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from ..source import load_model
from .config import TrainConfig

__all__ = ["build_teacher", "distillation_task", "training_task"]


def _classes(model: nn.Module) -> int | None:
    from ..timm import _num_classes

    return _num_classes(model)


def _with_classes(source: str, num_classes: int | None) -> nn.Module:
    model = load_model(source)
    if num_classes is not None and _classes(model) != num_classes:
        model = load_model(source, num_classes=num_classes)
    return model


def build_teacher(
    source: str,
    checkpoint: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """Build the frozen teacher, in eval mode.

    Args:
        source: ``timm:NAME``, ``torchvision:NAME`` or ``path/to/file.py:factory`` (see :func:`redistribute.load_model`).
        checkpoint: Its trained weights (a timm training checkpoint, ``.pth`` or ``.safetensors``). Without one, a
            ``timm:`` or ``torchvision:`` teacher gets the zoo's pretrained weights (from the cache or a download).
        num_classes: The student's class count; the teacher must predict the same classes.
        device: Where to put it.

    Raises:
        CheckpointError: The checkpoint is missing, unreadable or does not fit; pretrained weights cannot be fetched.
        UsageError: The teacher's class count differs from the student's, or a file source has no checkpoint.

    Example:
        >>> teacher = build_teacher("timm:resnet50", "runs/resnet50/last.pth.tar", num_classes=10)  # doctest: +SKIP
    """
    from ..surgery.checkpoint import load_checkpoint

    if checkpoint is not None:
        model = load_checkpoint(_with_classes(source, num_classes), checkpoint)
    elif source.partition(":")[0] in ("timm", "torchvision"):
        model = load_model(source, pretrained=True)
    else:
        raise UsageError(
            f"teacher {source!r} has no published weights. Hint: pass --teacher-checkpoint PATH with its trained weights"
        )
    if num_classes is not None and _classes(model) != num_classes:
        raise UsageError(
            f"teacher {source!r} predicts {_classes(model)} classes, the data has {num_classes}. Hint: pass "
            "--teacher-checkpoint with the original model trained on these classes"
        )
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def distillation_task(
    student: nn.Module,
    teacher: nn.Module,
    *,
    temperature: float = 4.0,
    kd_weight: float = 0.5,
    criterion_kwargs: dict[str, Any] | None = None,
    device: torch.device | None = None,
) -> nn.Module:
    """timm's ``LogitDistillationTask``: ``(1 - kd_weight) · label loss + kd_weight · T² · KL(teacher ‖ student)``.

    Args:
        student: The model being trained.
        teacher: The frozen teacher (:func:`build_teacher`).
        temperature: Softmax temperature ``T`` of both logits.
        kd_weight: Weight of the distillation term in [0, 1].
        criterion_kwargs: For timm's ``create_classification_loss`` (``smoothing``, ``soft_targets``).
        device: Where the task's buffers live.
    """
    if not 0.0 <= kd_weight <= 1.0:
        raise UsageError(f"distillation weight {kd_weight} is invalid: it must be in [0, 1] (e.g. --kd-weight 0.5)")
    if temperature <= 0:
        raise UsageError(
            f"distillation temperature {temperature} is invalid: it must be positive (e.g. --kd-temperature 4)"
        )
    from timm.task import LogitDistillationTask
    from timm.utils import unwrap_model

    if not isinstance(getattr(unwrap_model(student), "pretrained_cfg", None), dict):
        raise UsageError(
            f"student {type(student).__name__} has no timm pretrained_cfg (mean/std). Hint: build it with "
            "timm.create_model('redistributed', spec=...) after importing redistribute.timm"
        )
    return LogitDistillationTask(
        student, teacher, criterion_kwargs=criterion_kwargs, temperature=temperature, task_loss_weight=1.0 - kd_weight,
        device=device, verbose=False,
    )  # fmt: skip


def training_task(model: nn.Module, cfg: TrainConfig, num_classes: int, device: torch.device) -> Any:
    """The timm task :func:`redistribute.train` optimises: distillation from ``cfg.teacher``, else classification.

    Label smoothing (or Mixup/CutMix soft targets) applies to the label loss in both.
    """
    criterion = {"smoothing": cfg.smoothing, "soft_targets": cfg.mixup > 0 or cfg.cutmix > 0}
    if not cfg.teacher:
        from timm.task import ClassificationTask

        return ClassificationTask(model, criterion_kwargs=criterion, device=device, verbose=False)
    teacher = build_teacher(cfg.teacher, cfg.teacher_checkpoint, num_classes=num_classes, device=device)
    teacher.to(memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)  # type: ignore[call-overload]
    return distillation_task(
        model,
        teacher,
        temperature=cfg.kd_temperature,
        kd_weight=cfg.kd_weight,
        criterion_kwargs=criterion,
        device=device,
    )
