"""Measured cost of a built model: latency, throughput and peak memory of its forward pass.

* **Latency** is the median wall time of one forward pass (``torch.no_grad``, eval mode) over repeated timed
  blocks, after a warm-up of untimed passes (at least ``warmup`` seconds and one pass), timed with
  :class:`torch.utils.benchmark.Timer`, which synchronises CUDA before reading the clock. A block repeats the call
  enough times to last about 10 ms, so fast models are not timed at the clock's resolution; the spread is the
  inter-quartile range of the blocks. **Throughput** is ``batch_size / latency`` in images per second.
* **Threads.** On CPU torch runs with ``threads`` threads while measuring, by default one, as ``Timer`` does by
  default: single-stream latency is reproducible, multi-threaded timings on a shared machine are not (on the
  2-core machine this was written on, under load from other jobs, ResNet50 ran about 4x *slower* with 2 threads
  than with 1). Pass ``threads`` for multi-threaded latency on a machine of your own.
* **Peak memory** is the most memory held at once by tensors that the forward pass allocates, above what was
  allocated before it: activations and op outputs, not the weights or the input. On CUDA it is
  ``torch.cuda.max_memory_allocated()`` during the pass minus ``torch.cuda.memory_allocated()`` before it (so it
  includes cuDNN workspaces). On CPU, where torch keeps no allocator statistics, every tensor returned by an aten
  op is followed (a ``TorchDispatchMode``) and its storage counted from allocation until it is freed; views and
  in-place results share an input's storage and are not counted again. Scratch buffers that a kernel allocates
  and frees inside itself (oneDNN reorders, im2col columns) are invisible to this method, so the CPU figure is a
  lower bound of the process's real peak.

Nothing here mutates the caller's model: a model that is not on the requested device is copied there, and eval
mode is set only for the measurement and restored afterwards.

Example:
    >>> import timm
    >>> m = timm.create_model("test_resnet")
    >>> t = measure_latency(m, (3, 64, 64), min_time=0.05)
    >>> t.median_ms > 0 and t.throughput > 0
    True
    >>> peak_memory(m, (3, 64, 64)) > 0
    True
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..errors import UsageError

__all__ = [
    "DEFAULT_THREADS",
    "Timing",
    "check_threads",
    "measure_interleaved",
    "measure_latency",
    "peak_memory",
    "relative_spread",
    "resolve_device",
    "torch_threads",
]

_BLOCK_SECONDS = 0.01

DEFAULT_THREADS = 1
"""CPU threads while timing unless told otherwise: ``torch.utils.benchmark.Timer``'s own default (single-stream
latency, reproducible on a shared machine)."""


@dataclass(frozen=True)
class Timing:
    """Latency of a forward pass.

    Attributes:
        median_ms: Median time of one forward pass, in milliseconds.
        iqr_ms: Inter-quartile range of the timed blocks, in milliseconds (0 with fewer than two blocks).
        blocks: Number of timed blocks.
        calls_per_block: Forward passes per block.
        batch_size: Images per forward pass.
        device: Device the model ran on.
        threads: CPU threads torch used (``torch.set_num_threads``) while timing.
        peak_memory: Peak bytes of one forward pass (see :func:`peak_memory`), when measured with the timing.
    """

    median_ms: float
    iqr_ms: float
    blocks: int
    calls_per_block: int
    batch_size: int
    device: str
    threads: int = 1
    peak_memory: int | None = None

    @property
    def throughput(self) -> float:
        """Images per second at this batch size."""
        return self.batch_size / (self.median_ms / 1000.0)

    @property
    def spread(self) -> float:
        """Relative spread of the blocks: ``iqr / median``."""
        return self.iqr_ms / self.median_ms if self.median_ms else float("nan")


def relative_spread(values: list[float]) -> float:
    """``IQR / median`` of ``values`` (quartiles by the inclusive method; 0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    med = statistics.median(values)
    return (q3 - q1) / med if med else float("nan")


def resolve_device(device: str | torch.device) -> torch.device:
    """Check that ``device`` is ``cpu`` or an available ``cuda`` device.

    Raises:
        UsageError: Unknown device type, or CUDA asked for where there is none.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"device {device!r} is not a device. Hint: --device cpu or --device cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} asked for, but CUDA is not available here. Hint: --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"device {device!r} is not supported for timing; use cpu or cuda")
    return dev


@contextmanager
def _on_device(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """``model`` in eval mode on ``device``: the model itself when it is there already (its mode restored
    afterwards), else an eval-mode copy."""
    tensors = [*model.parameters(), *model.buffers()]
    here = all(
        t.device.type == device.type and (device.index is None or t.device.index == device.index) for t in tensors
    )
    if not here:
        yield copy.deepcopy(model).to(device).eval()
        return
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes.items():
            m.training = training


def check_threads(threads: int | None) -> int:
    """``threads`` validated; ``None`` means :data:`DEFAULT_THREADS`."""
    if threads is None:
        return DEFAULT_THREADS
    if not isinstance(threads, int) or threads < 1:
        raise UsageError(f"thread count {threads!r} is invalid: it must be a whole number >= 1 (e.g. --threads 1)")
    return threads


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_batch(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size {batch_size!r} is invalid: it must be a whole number >= 1 (e.g. --batch-size 8)")


def measure_latency(
    model: nn.Module,
    input_size: tuple[int, ...],
    *,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    warmup: float = 0.25,
    min_time: float = 1.0,
    min_blocks: int = 3,
    threads: int | None = None,
    max_blocks: int = 1000,
    peak: bool = False,
) -> Timing:
    """Median latency of ``model``'s forward pass on random input (see module docstring).

    Args:
        model: The model; not modified.
        input_size: Input size without batch, e.g. ``(3, 224, 224)``.
        batch_size: Images per forward pass.
        device: ``cpu`` or ``cuda``.
        warmup: Seconds of untimed forward passes first (at least one pass).
        min_time: Keep timing blocks until this many seconds have passed ...
        min_blocks: ... and at least this many blocks were timed.
        max_blocks: Stop after this many blocks regardless.
        threads: CPU threads for torch while timing, restored afterwards (default :data:`DEFAULT_THREADS`, 1).
        peak: Also measure :func:`peak_memory` during the warm-up (on CPU the first warm-up pass is the measured
            one; on CUDA one pass after the first), saving a forward pass.

    Returns:
        The :class:`Timing`.

    Example:
        >>> import timm
        >>> t = measure_latency(timm.create_model("test_resnet"), (3, 64, 64), batch_size=2, min_time=0.05)
        >>> t.blocks >= 3 and abs(t.throughput - 2 / (t.median_ms / 1000)) < 1e-6
        True
    """
    _check_batch(batch_size)
    dev = resolve_device(device)
    n_threads = check_threads(threads)
    x = torch.randn(batch_size, *input_size, device=dev)
    with _on_device(model, dev) as m, torch.no_grad(), torch_threads(n_threads):
        timer, number, peak_bytes = _warm_up(m, x, dev, n_threads, warmup, peak)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < max_blocks and (len(times) < min_blocks or time.perf_counter() - start < min_time):
            times.append(timer.timeit(number).mean)
    return _timing(times, number, batch_size, dev, n_threads, peak_bytes)


def _warm_up(m: nn.Module, x: torch.Tensor, dev: torch.device, n_threads: int, warmup: float, peak: bool) -> Any:
    """A ``Timer`` for ``m(x)`` after ``warmup`` seconds of untimed calls, the calls per ~10 ms block, and the peak
    bytes of one pass when ``peak``."""
    from torch.utils import benchmark

    timer = benchmark.Timer(stmt="model(x)", globals={"model": m, "x": x}, num_threads=n_threads)
    start = time.perf_counter()
    per_call = 0.0
    peak_bytes = None
    while per_call == 0.0 or time.perf_counter() - start < warmup:
        t0 = time.perf_counter()
        if peak and peak_bytes is None and dev.type == "cpu":
            peak_bytes = _peak_pass(m, x, dev)
        else:
            timer.timeit(1)
        per_call = time.perf_counter() - t0
    if peak and peak_bytes is None:
        peak_bytes = _peak_pass(m, x, dev)
    return timer, max(1, int(_BLOCK_SECONDS / max(per_call, 1e-9))), peak_bytes


def _timing(
    times: list[float], number: int, batch_size: int, dev: torch.device, n_threads: int, peak: int | None
) -> Timing:
    ms = [t * 1000.0 for t in times]
    iqr = 0.0
    if len(ms) >= 2:
        q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
        iqr = q3 - q1
    return Timing(statistics.median(ms), iqr, len(ms), number, batch_size, str(dev), n_threads, peak)


def measure_interleaved(
    models: list[nn.Module],
    input_size: tuple[int, ...],
    *,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    warmup: float = 0.25,
    min_time: float = 1.0,
    min_blocks: int = 5,
    threads: int | None = None,
    peak: bool = False,
) -> list[Timing]:
    """Time several models in turns, A B C C B A A B C ..., one ~10 ms block each per turn.

    A drift of the machine's speed (another job starting, a clock change) then hits every model alike instead of
    whichever was timed at the time, so their ratios stay comparable. Each model is warmed up first; the timing
    goes on until every model has had ``min_time`` seconds of blocks in total and at least ``min_blocks`` blocks.

    Args:
        models: The models; none is modified.
        input_size, batch_size, device, warmup, threads, peak: As for :func:`measure_latency`.
        min_time: Seconds of timed blocks per model (the whole call takes about ``len(models)`` times as long).
        min_blocks: Blocks per model at least.

    Returns:
        One :class:`Timing` per model, in order.

    Example:
        >>> import timm
        >>> a, b = timm.create_model("test_resnet"), timm.create_model("test_vit")
        >>> ta, tb = measure_interleaved([a, b], (3, 64, 64), min_time=0.05)
        >>> ta.blocks >= 5 and tb.blocks >= 5
        True
    """
    _check_batch(batch_size)
    dev = resolve_device(device)
    n_threads = check_threads(threads)
    x = torch.randn(batch_size, *input_size, device=dev)
    with contextlib.ExitStack() as stack, torch.no_grad(), torch_threads(n_threads):
        ready = [_warm_up(stack.enter_context(_on_device(m, dev)), x, dev, n_threads, warmup, peak) for m in models]
        times: list[list[float]] = [[] for _ in models]
        spent = [0.0] * len(models)
        turn = 0
        while any(s < min_time or len(t) < min_blocks for s, t in zip(spent, times, strict=True)):
            order = range(len(models)) if turn % 2 == 0 else range(len(models) - 1, -1, -1)
            for i in order:
                timer, number, _ = ready[i]
                t0 = time.perf_counter()
                times[i].append(timer.timeit(number).mean)
                spent[i] += time.perf_counter() - t0
            turn += 1
    return [_timing(t, r[1], batch_size, dev, n_threads, r[2]) for t, r in zip(times, ready, strict=True)]


class _LiveTensorBytes(TorchDispatchMode):
    """Counts bytes of storages created by aten ops while they are alive, and the peak of that count."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _freed(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {id(t.untyped_storage()) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()  # one Python object per live storage (torch keeps it while C++ holds it)
            key = id(storage)
            if key in inputs or key in self._seen:
                continue  # a view or an in-place result, or counted already
            nbytes = storage.nbytes()
            self._seen.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key, nbytes)
        return out


def peak_memory(
    model: nn.Module, input_size: tuple[int, ...], *, batch_size: int = 1, device: str | torch.device = "cpu"
) -> int:
    """Peak bytes held by tensors that one forward pass allocates (see module docstring for the method per device).

    On CUDA the model runs once before the measured pass, so one-time allocations (cuDNN autotuning, lazy
    initialisation) are not counted; on CPU the first pass is measured, since tensor sizes do not depend on it.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        >>> peak_memory(net, (3, 32, 32))  # conv output and ReLU output, both float32 8x32x32, alive together
        65536
    """
    _check_batch(batch_size)
    dev = resolve_device(device)
    x = torch.randn(batch_size, *input_size, device=dev)
    with _on_device(model, dev) as m, torch.no_grad():
        if dev.type == "cuda":
            m(x)
        return _peak_pass(m, x, dev)


def _peak_pass(model: nn.Module, x: torch.Tensor, dev: torch.device) -> int:
    """One forward pass (under ``no_grad``, the model ready on ``dev``), returning its peak bytes."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        model(x)
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev) - before)
    mode = _LiveTensorBytes()
    with mode:
        out = model(x)
    del out
    return int(mode.peak)
