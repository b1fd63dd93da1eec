"""The study: for every template and seed, redistribute at matched cost, train under one recipe, evaluate, measure.

:func:`run_study` checks everything a user can get wrong first (executor, templates, data, model, plans, output
folder), before any training. It then writes one folder per run, ``OUT/runs/<template>-seed<S>/`` with its
``run.json``, hands the unfinished runs to an executor (:mod:`~redistribute.study.executors`), and summarises the
``result.json`` of every run into ``study.csv``, ``study.json``, ``study.md`` and ``study.png``
(:mod:`~redistribute.study.results`). A run with a ``result.json`` is skipped, so an interrupted study resumes
where it stopped; a finished run made with other settings is refused rather than mixed in.

Example:
    >>> r = run_study("timm:test_resnet", "mnist", templates=["base", "d"], limit_train=200, limit_val=100,
    ...               config=TrainConfig(epochs=1, batch_size=32, workers=0), out="study")  # doctest: +SKIP
    >>> r.row("d").top1, r.row("d").ratios["params"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import DataError, OutputError, UsageError
from ..io import atomic_write_text
from ..training.config import TrainConfig
from ..training.loop import TrainProgress
from .executors import ExecutorEvent, ExecutorOptions, Job, get_executor
from .results import StudyResult, summarise
from .runs import RUN_SPEC, RunResult, RunSpec, build_base, read_result

__all__ = ["DEFAULT_TEMPLATES", "StudyProgress", "run_study"]

_logger = logging.getLogger(__name__)

DEFAULT_TEMPLATES = ("base", "a", "b", "c", "d", "e")


@dataclass(frozen=True)
class StudyProgress:
    """What the ``progress`` callback gets.

    Attributes:
        kind: ``skip`` (a finished run found), ``train`` (a training step or epoch of a run), ``done`` (a run ended).
        run: The run's name (``d-seed0``).
        done, total: Runs finished so far (skipped ones included) and in all.
        train: The trainer's progress (``kind == "train"``).
        result: The run's result (``skip`` and ``done``).
    """

    kind: str
    run: str
    done: int
    total: int
    train: TrainProgress | None = None
    result: RunResult | None = None


def _run_name(template: str, seed: int) -> str:
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', template)}-seed{seed}"


def _absolute(model: str, data: str) -> tuple[str, str]:
    """The model file and data paths made absolute, so a run spec means the same in any process's working folder."""
    from ..training.readers import reader_names

    path, _, factory = model.rpartition(":")
    if path.endswith(".py"):
        model = f"{Path(path).resolve()}:{factory}"
    name, sep, arg = data.partition(":")
    if sep and name in reader_names() and arg and Path(arg).exists():
        data = f"{name}:{Path(arg).resolve()}"
    elif not sep and Path(data).is_dir():
        data = str(Path(data).resolve())
    return model, data


def _settings(spec: dict[str, Any]) -> dict[str, Any]:
    """A run spec without what does not change its numbers (CPU threads, data-loading processes, latency timing)."""
    kept = {k: v for k, v in spec.items() if k not in ("threads", "min_time", "measure")}
    kept["train"] = {k: v for k, v in dict(spec.get("train") or {}).items() if k != "workers"}
    return kept


def _seeds(seeds: int | Sequence[int]) -> tuple[int, ...]:
    chosen = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not chosen or len(set(chosen)) != len(chosen):
        raise UsageError(f"seeds {seeds!r} are invalid: give a count of at least 1 (e.g. --seeds 3) or distinct seeds")
    return chosen


def run_study(
    model: str,
    data: str,
    *,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    match: str = "flops",
    seeds: int | Sequence[int] = 1,
    config: TrainConfig | None = None,
    init: str = "scratch",
    checkpoint: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] = "study",
    executor: str = "local",
    executor_options: ExecutorOptions | None = None,
    limit_train: int | None = None,
    limit_val: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    divisor: int = 8,
    measure: bool = True,
    verify: bool = True,
    min_time: float = 1.0,
    threads: int | None = None,
    progress: Callable[[StudyProgress], None] | None = None,
) -> StudyResult:
    """Run (or resume) a study and write its table, CSV, JSON and plot into ``out``.

    Args:
        model: Model source (``timm:resnet18``, ``path/to/file.py:factory``); it is built with the data's
            ``num_classes`` (and ``in_chans``, see :func:`~redistribute.study.runs.build_base`).
        data: ``--data`` spec: ``cifar10:DIR``, ``fsdd:DIR``, ``mnist`` or an image folder.
        templates: Templates to compare; ``base`` gives the ratios.
        match: Cost every template is matched to the base on (``flops``, ``params``, ``memory``).
        seeds: A count (seeds 0..N-1) or the seeds themselves.
        config: The one training recipe (its ``seed`` is replaced by each run's).
        init: ``scratch`` (seeded ``reset_parameters``), ``pretrained`` (the zoo's weights, carried through
            surgery) or ``checkpoint`` (``checkpoint``'s weights, carried through surgery).
        checkpoint: Weights of the base model, with ``init="checkpoint"``.
        out: The study folder.
        executor: ``local``, ``torchrun`` or ``ray`` (see :mod:`~redistribute.study.executors`).
        executor_options: Their options.
        limit_train, limit_val: Class-balanced subset sizes (None: all).
        cache_dir: Where archives are extracted (default ``~/.cache/redistribute/data``).
        divisor: Width divisor of the plans.
        measure: Time each trained model (batch 1, on ``config.device``).
        verify: Open every data file before training (:meth:`StudyData.verify`), so an unreadable one stops the
            study before it starts rather than in the middle of a run.
        min_time: Seconds each latency measurement lasts at least.
        threads: CPU threads torch trains with in every run (default: this process's count).
        progress: Called with :class:`StudyProgress` events.

    Returns:
        The :class:`~redistribute.study.results.StudyResult` (also written to ``out``).

    Raises:
        UsageError: An unknown or uninstalled executor, a bad template, seed or option.
        DataError: The data is missing, not laid out by class, unreadable, or smaller than one batch.
        SourceError, TraceError, InfeasibleTargetError: The model cannot be built, traced or matched.
        OutputError: ``out`` is not writable, or holds finished runs made with other settings.
    """
    from ..groups.graph import trace
    from ..planning.planner import plan
    from ..training.readers import load_data

    cfg = config or TrainConfig()
    opts = executor_options or ExecutorOptions()
    runner = get_executor(executor, opts)
    if importlib.util.find_spec("matplotlib") is None:  # study.png is drawn at the end: say so before training
        raise UsageError("the study draws study.png with matplotlib. Hint: pip install 'redistribute[study]'")
    names = [str(t).strip() for t in templates if str(t).strip()]
    if not names or len(set(names)) != len(names):
        raise UsageError(f"templates {list(templates)!r} are invalid: give distinct names (e.g. base,a,b,c,d,e)")
    seed_list = _seeds(seeds)
    if init == "checkpoint" and checkpoint is None:
        raise UsageError("init 'checkpoint' needs --checkpoint PATH")
    if checkpoint is not None:
        init = "checkpoint"
    ds = load_data(data, limit_train=limit_train, limit_val=limit_val, cache_dir=cache_dir)
    if verify:
        ds.verify()
    if len(ds.train) // opts.nproc_per_node < cfg.batch_size:  # type: ignore[arg-type]
        raise DataError(
            f"{len(ds.train)} training items do not fill one batch of {cfg.batch_size}. Hint: lower --batch-size"  # type: ignore[arg-type]
        )
    ckpt = None if checkpoint is None else str(checkpoint)
    base = build_base(model, ds.num_classes, ds.input_size[0], init, ckpt)
    graph = trace(base, ds.input_size)
    plans = tuple(plan(graph, t, match, divisor=divisor, source=model) for t in names)

    root = Path(out)
    runs_dir = root / "runs"
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create study folder {str(root)!r}: {exc.strerror}. Hint: choose a writable --out"
        ) from exc
    train_fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "seed"}
    abs_model, abs_data = _absolute(model, data)
    common = dict(model=abs_model, data=abs_data, limit_train=limit_train, limit_val=limit_val,
                  cache_dir=None if cache_dir is None else str(Path(cache_dir).resolve()), init=init, checkpoint=ckpt, match=match,
                  divisor=divisor, train=train_fields, measure=measure, min_time=min_time,
                  threads=threads or torch.get_num_threads())  # fmt: skip
    specs = [RunSpec(name=_run_name(t, s), template=t, seed=s, **common) for t in names for s in seed_list]  # type: ignore[arg-type]
    jobs: list[Job] = []
    finished: dict[str, RunResult] = {}
    for spec in specs:
        run_dir = runs_dir / spec.name
        done = read_result(run_dir)
        if done is not None:
            old = json.loads((run_dir / RUN_SPEC).read_text(encoding="utf-8")) if (run_dir / RUN_SPEC).is_file() else {}
            if _settings(old) != _settings(spec.to_dict()):
                raise OutputError(
                    f"run {spec.name} in {str(root)!r} was made with other settings. Hint: use a new --out, or "
                    f"delete {run_dir} to redo it"
                )
            finished[spec.name] = done
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / RUN_SPEC, json.dumps(spec.to_dict(), indent=2) + "\n")
        jobs.append((spec, run_dir))

    total, count = len(specs), len(finished)
    if progress is not None:
        for i, name in enumerate(finished, 1):
            progress(StudyProgress("skip", name, i, total, result=finished[name]))

    def report(event: ExecutorEvent) -> None:
        nonlocal count
        if event.result is not None:
            count += 1
        if progress is not None:
            kind = "done" if event.result is not None else "train"
            progress(StudyProgress(kind, event.run, count, total, train=event.train, result=event.result))

    if jobs:
        runner = get_executor(executor, dataclasses.replace(opts, data=ds))
        runner.run(jobs, report)
    results = []
    for spec in specs:
        r = read_result(runs_dir / spec.name)
        if r is None:
            raise OutputError(f"run {spec.name} left no {runs_dir / spec.name / 'result.json'}. Hint: rerun the study")
        results.append(r)
    recipe = {**train_fields, "match": match, "divisor": divisor, "init": init, "limit_train": limit_train,
              "limit_val": limit_val, "threads": common["threads"]}  # fmt: skip
    result = StudyResult(model=model, data=ds.description, out=root, recipe=recipe, templates=tuple(names),
                         seeds=seed_list, runs=tuple(results), rows=summarise(results, names),
                         skipped=tuple(finished), plans=plans)  # fmt: skip
    result.write()
    return result
