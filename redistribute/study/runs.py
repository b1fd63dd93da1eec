"""One run of a study: a template and a seed, redistributed, trained under the study's recipe, evaluated, measured.

A :class:`RunSpec` is everything a run needs, as JSON (``run.json`` in the run's folder), so any process can execute
it: the study's own process (``local``), each rank of ``torchrun`` (:mod:`~redistribute.study.worker`), or a Ray
task. :func:`execute_run` builds the base model for the data (``num_classes``, ``in_chans``), redistributes it with
:func:`redistribute.redistribute` at matched cost, re-initialises it from the seed when training from scratch,
trains it with :func:`redistribute.training.loop.train_model`, and measures it. Its :class:`RunResult` goes to
``result.json`` (written atomically, last): a folder with one is a finished run, skipped when a study is resumed.

Determinism: the run seeds the initialisation, the data order and every other random draw from its seed, and
runs torch with the study's thread count, so on CPU the same spec gives the same numbers in any process.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import OutputError, UsageError
from ..io import atomic_write_text

if TYPE_CHECKING:
    from ..planning.planner import Plan
    from ..training.loop import TrainConfig, TrainProgress
    from ..training.readers import StudyData

__all__ = ["INITS", "RESULT", "RUN_SPEC", "RunResult", "RunSpec", "build_base", "execute_run", "read_result"]

_logger = logging.getLogger(__name__)

RUN_SPEC, RESULT = "run.json", "result.json"
#: Where a run's weights start: a fresh seeded initialisation, the zoo's pretrained weights, or a checkpoint.
INITS = ("scratch", "pretrained", "checkpoint")


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs (JSON-serialisable; ``run.json``).

    Attributes:
        name: Folder name of the run (``d-seed0``).
        template: Template name.
        seed: Seed of the initialisation, data order and augmentation.
        model: Model source (``timm:resnet18``, ``file.py:factory``).
        data: The ``--data`` spec (see :func:`redistribute.training.readers.load_data`).
        limit_train, limit_val: Class-balanced subset sizes (None: all).
        cache_dir: Folder archives are extracted into (None: the default cache).
        init: One of :data:`INITS`.
        checkpoint: Weights of the base model when ``init == "checkpoint"``.
        match, divisor: Matched metric and width divisor of the plan.
        train: :class:`~redistribute.training.config.TrainConfig` fields (``seed`` is this run's).
        measure: Time the trained model's forward pass.
        min_time: Seconds each latency measurement lasts at least.
        threads: CPU threads torch uses while training (reproducible numbers need the same count).
    """

    name: str
    template: str
    seed: int
    model: str
    data: str
    limit_train: int | None = None
    limit_val: int | None = None
    cache_dir: str | None = None
    init: str = "scratch"
    checkpoint: str | None = None
    match: str = "flops"
    divisor: int = 8
    train: dict[str, Any] = field(default_factory=dict)
    measure: bool = True
    min_time: float = 1.0
    threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def config(self) -> TrainConfig:
        from ..training.config import TrainConfig

        return TrainConfig(**{**self.train, "seed": self.seed})


@dataclass(frozen=True)
class RunResult:
    """What one run measured (``result.json``).

    Attributes:
        name, template, seed: Which run.
        top1, top5: Validation accuracy after the last epoch, in percent.
        val_loss, train_loss: Losses of the last epoch.
        params, flops, memory: The plan's analytic cost (parameters, MACs at batch 1, activation bytes at batch 1).
        latency_ms, throughput: Median forward latency at batch 1 and images per second (None when not measured).
        train_seconds: Wall time of training (all epochs).
        epochs: Epochs trained.
        world_size: Processes that trained it.
        k: The plan's width multiplier.
    """

    name: str
    template: str
    seed: int
    top1: float
    top5: float
    val_loss: float | None
    train_loss: float
    params: float
    flops: float
    memory: float
    latency_ms: float | None
    throughput: float | None
    train_seconds: float
    epochs: int
    world_size: int
    k: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def read_result(run_dir: Path) -> RunResult | None:
    """The finished run's result in ``run_dir``, or None when it has none (not run, or interrupted)."""
    path = run_dir / RESULT
    if not path.is_file():
        return None
    try:
        return RunResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"unreadable {path} ({exc}). Hint: delete it to rerun that run") from None


def build_base(
    source: str, num_classes: int, in_chans: int, init: str = "scratch", checkpoint: str | None = None
) -> nn.Module:
    """The base model for the data: ``num_classes`` outputs, ``in_chans`` input channels.

    ``timm:`` sources get both as keyword arguments; ``torchvision:`` ones only ``num_classes`` (3-channel data
    only); a ``file.py:factory`` gets ``num_classes``, and ``in_chans`` when the data is not RGB.

    Raises:
        UsageError: Unknown ``init``, a checkpoint without ``init="checkpoint"``, or 1-channel data for torchvision.
        SourceError: The source cannot be built with these arguments.
        CheckpointError: Pretrained weights or the checkpoint cannot be loaded.
    """
    from ..source import load_model

    if init not in INITS:
        raise UsageError(f"unknown initialisation {init!r}; use one of {', '.join(INITS)}")
    if (init == "checkpoint") != (checkpoint is not None):
        raise UsageError("--checkpoint PATH goes with init 'checkpoint' (and only with it)")
    prefix = source.partition(":")[0]
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if prefix == "timm" or in_chans != 3:
        if prefix == "torchvision":
            raise UsageError(
                f"{source} takes 3-channel input but the data has {in_chans}. Hint: use a timm: source (in_chans) "
                "or a file.py:factory that takes in_chans"
            )
        kwargs["in_chans"] = in_chans
    model = load_model(source, pretrained=init == "pretrained", **kwargs)
    if checkpoint is not None:
        from ..surgery.checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint)
    return model


def _reinitialise_(model: nn.Module, seed: int) -> None:
    """Every module's own ``reset_parameters`` under ``seed``: one initialisation rule for all templates."""
    torch.manual_seed(seed)
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()


def redistributed(spec: RunSpec, data: StudyData) -> tuple[nn.Module, Plan]:
    """The run's model (redistributed from the base at matched cost, initialised per ``spec.init``) and its plan."""
    from ..api import redistribute

    torch.manual_seed(spec.seed)
    base = build_base(spec.model, data.num_classes, data.input_size[0], spec.init, spec.checkpoint)
    model, plan = redistribute(
        base, spec.template, spec.match, input_size=data.input_size, divisor=spec.divisor, source=spec.model
    )
    if spec.init == "scratch":
        _reinitialise_(model, spec.seed)
    return model, plan


def execute_run(
    spec: RunSpec,
    run_dir: str | os.PathLike[str],
    *,
    data: StudyData | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    write: bool = True,
) -> RunResult:
    """Redistribute, train, evaluate and measure one run; write ``run_dir/result.json`` (rank 0) when ``write``.

    Args:
        spec: The run.
        run_dir: Its folder (training metrics and checkpoint go to ``run_dir/train``).
        data: The data set, when the caller has already read it (else read from ``spec.data``).
        progress: The trainer's callback (rank 0).
        write: Write ``result.json``; a Ray task returns the result to the driver instead.

    Returns:
        The :class:`RunResult` (on every rank; only rank 0's is written).
    """
    from ..training.loop import train_model
    from ..training.readers import load_data
    from .timing import measure_latency

    out = Path(run_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        if data is None:
            data = load_data(
                spec.data, limit_train=spec.limit_train, limit_val=spec.limit_val, cache_dir=spec.cache_dir
            )
        cfg = spec.config()
        model, plan = redistributed(spec, data)
        trained = train_model(model, data.train, data.val, data.num_classes, out / "train", cfg, progress=progress)
        last = trained.history[-1]
        timing = None
        if spec.measure and trained.rank == 0:
            timing = measure_latency(trained.model, data.input_size, device=cfg.device, min_time=spec.min_time)
    finally:
        torch.set_num_threads(threads)
    result = RunResult(
        name=spec.name, template=spec.template, seed=spec.seed, top1=float(last.val_top1 or 0.0),
        top5=float(last.val_top5 or 0.0), val_loss=last.val_loss, train_loss=last.train_loss,
        params=plan.cost.params, flops=plan.cost.flops, memory=plan.cost.memory,
        latency_ms=None if timing is None else timing.median_ms, throughput=None if timing is None else timing.throughput,
        train_seconds=sum(h.seconds for h in trained.history), epochs=len(trained.history),
        world_size=trained.world_size, k=plan.k,
    )  # fmt: skip
    if write and trained.rank == 0:
        atomic_write_text(out / RESULT, json.dumps(result.to_dict(), indent=2) + "\n")
    _logger.info("run %s: top-1 %.2f%%", spec.name, result.top1)
    return result
