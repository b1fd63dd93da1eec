"""Where a study's runs execute: one after another here (``local``), DDP on this machine's GPUs (``torchrun``), or
one task per run on a Ray cluster (``ray``).

An executor is registered with :func:`register_executor` under a name; it is a class built from
:class:`ExecutorOptions` whose ``check()`` raises before any training when it cannot work (Ray not installed) and
whose ``run(jobs, report)`` executes the jobs (each a :class:`~redistribute.study.runs.RunSpec` and its folder, with
``run.json`` already written) so that each finished run leaves its ``result.json``. ``report`` is called with
:class:`ExecutorEvent` s: per training step and epoch where the executor can see them (``local``), per finished run
everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import RedistributeError, UsageError
from ..io import atomic_write_text
from .runs import RESULT, RunResult, RunSpec, execute_run, read_result

if TYPE_CHECKING:
    from ..training.loop import TrainProgress
    from ..training.readers import StudyData

__all__ = [
    "Executor",
    "ExecutorEvent",
    "ExecutorOptions",
    "Job",
    "executor_names",
    "get_executor",
    "register_executor",
]

Job = tuple[RunSpec, Path]


@dataclass(frozen=True)
class ExecutorOptions:
    """Options of the executors (each reads its own).

    Attributes:
        nproc_per_node: ``torchrun`` processes per run (one per GPU).
        ray_address: Ray cluster address (None: start a local Ray in this process).
        gpus_per_run, cpus_per_run: Resources each Ray task asks for.
        data: The study's data set, already read (``local`` reuses it instead of reading it per run).
    """

    nproc_per_node: int = 1
    ray_address: str | None = None
    gpus_per_run: float = 0.0
    cpus_per_run: float = 1.0
    data: StudyData | None = None


@dataclass(frozen=True)
class ExecutorEvent:
    """Progress of a run: ``train`` during training (``local`` only), ``result`` once it is done."""

    run: str
    train: TrainProgress | None = None
    result: RunResult | None = None


Report = Callable[[ExecutorEvent], None]


class Executor(Protocol):
    def check(self) -> None: ...

    def run(self, jobs: Sequence[Job], report: Report | None) -> None: ...


_EXECUTORS: dict[str, Callable[[ExecutorOptions], Executor]] = {}


def register_executor(name: str) -> Callable[[type], type]:
    """Register an executor class under ``name`` (decorator); it is built as ``cls(options)``."""

    def decorate(cls: type) -> type:
        _EXECUTORS[name] = cls
        return cls

    return decorate


def executor_names() -> list[str]:
    return sorted(_EXECUTORS)


def get_executor(name: str, options: ExecutorOptions | None = None) -> Executor:
    """Build the executor ``name`` and check that it can run.

    Raises:
        UsageError: Unknown name (the valid ones are listed), or the executor is not installed or not usable here.
    """
    if name not in _EXECUTORS:
        raise UsageError(f"unknown executor {name!r}; use one of {', '.join(executor_names())}")
    executor = _EXECUTORS[name](options or ExecutorOptions())
    executor.check()
    return executor


@register_executor("local")
class LocalExecutor:
    """The runs one after another in this process, with step and epoch progress."""

    def __init__(self, options: ExecutorOptions) -> None:
        self.options = options

    def check(self) -> None:
        return None

    def run(self, jobs: Sequence[Job], report: Report | None) -> None:
        for spec, run_dir in jobs:

            def step(p: TrainProgress, name: str = spec.name) -> None:
                if report is not None:
                    report(ExecutorEvent(name, train=p))

            result = execute_run(spec, run_dir, data=self.options.data, progress=step)
            if report is not None:
                report(ExecutorEvent(spec.name, result=result))


def _package_path() -> str:
    """The folder holding this ``redistribute`` package, first on ``PYTHONPATH`` so subprocesses import it too."""
    root = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get("PYTHONPATH")
    return root if not rest else os.pathsep.join([root, rest])


@register_executor("torchrun")
class TorchrunExecutor:
    """Each run in ``torchrun --nproc_per_node N -m redistribute.study.worker RUNDIR`` (DDP over the local GPUs)."""

    def __init__(self, options: ExecutorOptions) -> None:
        self.options = options

    def check(self) -> None:
        if self.options.nproc_per_node < 1:
            raise UsageError(f"--nproc-per-node {self.options.nproc_per_node} is invalid: it must be at least 1")

    def run(self, jobs: Sequence[Job], report: Report | None) -> None:
        env = {**os.environ, "PYTHONPATH": _package_path()}
        for spec, run_dir in jobs:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={self.options.nproc_per_node}", "-m", "redistribute.study.worker", str(run_dir)]  # fmt: skip
            log = run_dir / "worker.log"
            with open(log, "w", encoding="utf-8") as fh:
                code = subprocess.call(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
            result = read_result(run_dir)
            if code != 0 or result is None:
                tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                raise RedistributeError(f"run {spec.name} failed under torchrun (exit {code}): {tail[0]}. See {log}")
            if report is not None:
                report(ExecutorEvent(spec.name, result=result))


def _ray_task(spec: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """A Ray task: execute one run where Ray put it; the result goes back to the driver, which writes it."""
    return execute_run(RunSpec.from_dict(spec), run_dir, write=False).to_dict()


@register_executor("ray")
class RayExecutor:
    """One Ray task per run (``ray.init(address=...)``; without an address, a local Ray in this process).

    Every node needs ``redistribute`` installed and the data at the same path; results come back to the driver.
    """

    def __init__(self, options: ExecutorOptions) -> None:
        self.options = options

    def check(self) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("--executor ray needs Ray. Hint: pip install 'redistribute[ray]'") from None

    def run(self, jobs: Sequence[Job], report: Report | None) -> None:
        import ray

        started = not ray.is_initialized()  # a Ray this executor starts, it also stops
        if started and self.options.ray_address is None:  # a local Ray: its workers import this package too
            env = {"env_vars": {"PYTHONPATH": _package_path()}}
            ray.init(runtime_env=env, include_dashboard=False, log_to_driver=False)
        elif started:
            ray.init(address=self.options.ray_address, log_to_driver=False)
        try:
            task = ray.remote(num_cpus=self.options.cpus_per_run, num_gpus=self.options.gpus_per_run)(_ray_task)
            pending = {task.remote(spec.to_dict(), str(run_dir)): (spec, run_dir) for spec, run_dir in jobs}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                spec, run_dir = pending.pop(done[0])
                result = RunResult.from_dict(ray.get(done[0]))
                atomic_write_text(run_dir / RESULT, json.dumps(result.to_dict(), indent=2) + "\n")
                if report is not None:
                    report(ExecutorEvent(spec.name, result=result))
        finally:
            if started:
                ray.shutdown()
