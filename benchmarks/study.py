"""The paper's question on real data: accuracy at matched FLOPs for base and templates a-e, image and audio.

Runs two studies with the committed command (``python -m redistribute study ...``), each template with the same
recipe and at least two seeds, and writes ``results/study_cifar10.md`` and ``results/study_fsdd.md``: the exact
command, the recipe, the machine, and the study's own table (accuracy mean ± std over seeds; params, FLOPs,
activation memory and latency with their ratios to base). Numbers are reported as they come out.

Presets (``--preset``):

* ``cpu`` (default; about half an hour on 2 cores): CIFAR-10 with ``examples/study_cifar10.py:resnet20`` on a
  class-balanced subset of 2,000 train / 1,000 test images, 4 epochs; FSDD with ``examples/study_fsdd.py:audio_cnn``
  on the whole official split (2,700 / 300 recordings as log-mel spectrograms), 4 epochs. Few epochs and a subset:
  the accuracies are far below a converged network's and say how the templates compare at this budget only.
* ``gpu`` (``benchmarks/study_gpu.sh``, one GPU, under 10 minutes): the full CIFAR-10 train set (50,000 / 10,000),
  ResNet-20, 10 epochs, ``--amp --channels-last``; writes ``results/study_cifar10_gpu.md``; then the NAS-Bench-101
  ResNet-like cell (``examples/nasbench101.py:resnet_like``, the package's default stem and stacks), 4 epochs,
  into ``results/study_nasbench_gpu.md``.

    .venv/bin/python benchmarks/study.py                 # both CPU studies
    .venv/bin/python benchmarks/study.py --only fsdd     # one of them
    .venv/bin/python benchmarks/study.py --preset gpu    # on a machine with CUDA
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = Path(os.environ.get("REDISTRIBUTE_DATA", ROOT.parent / "shared" / "data"))
RESULTS = HERE / "results"

PRESETS: dict[str, dict[str, list[str]]] = {
    "cpu": {
        "cifar10": [
            "examples/study_cifar10.py:resnet20", "--data", f"cifar10:{DATA / 'cifar10'}", "--limit-train", "2000",
            "--limit-val", "1000", "--epochs", "4", "--seeds", "2", "--batch-size", "64", "--lr", "0.05",
            "--device", "cpu", "--workers", "0", "--min-time", "0.5",
        ],
        "fsdd": [
            "examples/study_fsdd.py:audio_cnn", "--data", f"fsdd:{DATA / 'fsdd'}", "--epochs", "4", "--seeds", "2",
            "--batch-size", "32", "--lr", "0.05", "--device", "cpu", "--workers", "0", "--min-time", "0.5",
        ],
    },
    "gpu": {
        "cifar10_gpu": [
            "examples/study_cifar10.py:resnet20", "--data", f"cifar10:{DATA / 'cifar10'}", "--epochs", "10",
            "--seeds", "2", "--batch-size", "256", "--lr", "0.2", "--device", "cuda", "--amp", "--channels-last",
            "--workers", "4",
        ],
        "nasbench_gpu": [
            "examples/nasbench101.py:resnet_like", "--data", f"cifar10:{DATA / 'cifar10'}", "--epochs", "4",
            "--seeds", "2", "--batch-size", "256", "--lr", "0.1", "--device", "cuda", "--amp", "--channels-last",
            "--workers", "4", "--divisor", "1",
        ],
    },
}  # fmt: skip


def run(name: str, args: list[str], work: Path) -> Path:
    """Run one study into ``work/name`` and write ``results/study_<name>.md``."""
    out = work / name
    cmd = [sys.executable, "-m", "redistribute", "study", *args, "--templates", "base,a,b,c,d,e", "--out", str(out)]
    shown = "redistribute study " + " ".join(shlex.quote(a) for a in cmd[4:])
    print(f"$ {shown}", flush=True)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall, load1 = time.perf_counter() - t0, os.getloadavg()[0]
    table = (out / "study.md").read_text()
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    try:
        import torch

        machine += f", torch {torch.__version__}" + (
            f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
        )
    except ImportError:  # pragma: no cover
        pass
    text = (
        f"# Study: {name}\n\n"
        f"Produced by `benchmarks/study.py` with the committed command (run from the repository root):\n\n"
        f"```\n{shown}\n```\n\n"
        f"Machine: {machine}. Wall time {wall / 60:.1f} min for {len(list(out.glob('runs/*/result.json')))} runs; "
        f"1-minute load average {load0:.1f} at the start, {load1:.1f} at the end (latency and throughput are "
        f"measured once per run, so load from other processes shows in them, not in accuracy or the analytic "
        f"columns).\n\n"
        f"{table}"
    )
    RESULTS.mkdir(exist_ok=True)
    dest = RESULTS / f"study_{name}.md"
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(dest)
    print(f"wrote {dest.relative_to(ROOT)} ({wall:.0f} s)", flush=True)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--only", help="run only this study of the preset (e.g. fsdd)")
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "study-bench", help="study folders (resumable)")
    args = ap.parse_args()
    for name, study_args in PRESETS[args.preset].items():
        if args.only in (None, name):
            run(name, study_args, args.work)


if __name__ == "__main__":
    main()
