"""What a training run writes: its output folder, ``metrics.csv`` (one :class:`EpochMetrics` row per epoch) and the
trained model as ``spec.json`` + ``config.json`` + ``model.safetensors``."""

from __future__ import annotations

import copy
import csv
import io
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, OutputError, UsageError
from ..io import atomic_paths, atomic_write_text

__all__ = ["CHECKPOINT", "METRICS", "EpochMetrics", "export_model", "output_folder", "read_rows", "write_rows"]

CHECKPOINT = "last.pth.tar"
METRICS = "metrics.csv"


@dataclass(frozen=True)
class EpochMetrics:
    """One row of ``metrics.csv``: ``epoch`` counts from 1, accuracies are percentages, ``samples`` is over all ranks."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_top1: float | None
    val_top5: float | None
    lr: float
    images_per_s: float
    samples: int
    seconds: float


def output_folder(spec: Any, output: str | os.PathLike[str] | None, resume: Any, force: bool) -> Path:
    if output is None:
        if isinstance(spec, Mapping):
            raise UsageError("give an output folder for a spec passed as a dict: train(spec, data_dir, output=...)")
        output = (Path(spec) if Path(spec).is_dir() else Path(spec).parent) / "train"
    out = Path(output)
    if (out / CHECKPOINT).exists() and resume is None and not force:
        hint = f"use --resume {out / CHECKPOINT} to continue or --force to start over"
        raise OutputError(f"output folder {str(out)!r} already holds {CHECKPOINT}. Hint: {hint}")
    if resume is not None and not Path(resume).is_file():
        raise CheckpointError(
            f"checkpoint {str(resume)!r} to resume from does not exist. Hint: give {out / CHECKPOINT}"
        )
    return out


def read_rows(path: Path, upto: int) -> list[EpochMetrics]:
    kinds = {f.name: f.type for f in fields(EpochMetrics)}
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    rows = [
        {k: None if v == "" else int(v) if kinds[k] == "int" else float(v) for k, v in r.items()}
        for r in csv.DictReader(io.StringIO(text))
    ]
    return [EpochMetrics(**r) for r in rows if r["epoch"] <= upto]  # type: ignore[arg-type, operator]


def write_rows(path: Path, rows: list[EpochMetrics]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(EpochMetrics)], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in asdict(r).items()} for r in rows)
    atomic_write_text(path, buf.getvalue())


def export_model(out: Path, spec: dict[str, Any], model: nn.Module, base_classes: int) -> None:
    """The trained model as spec.json (its class count in ``model_kwargs``), timm's config.json and model.safetensors."""
    from ..spec import spec_json
    from ..timm import _num_classes, write_timm_files

    export = copy.deepcopy(model).to(device="cpu", memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    spec, classes = copy.deepcopy(spec), _num_classes(export)
    if classes != base_classes:
        spec["model_kwargs"] = {**dict(spec.get("model_kwargs") or {}), "num_classes": classes}
    with atomic_paths([out / "spec.json", out / "config.json", out / "model.safetensors"]) as (
        spec_tmp,
        config_tmp,
        weights_tmp,
    ):
        spec_tmp.write_text(spec_json(spec), encoding="utf-8")
        write_timm_files(config_tmp, weights_tmp, spec, export)
