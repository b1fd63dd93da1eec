"""The whole torchvision zoo through redistribute: classification, video and segmentation, templates a-e.

Each model runs in its own subprocess with a timeout, with random weights (nothing is downloaded), in eval mode,
at batch 1 and the input size of its family (below). A model is **correct** when, for every template a-e:

* the plan matches the base FLOPs (tolerance 0.5 %), the rebuilt model runs forward and every output has the
  base output's shape (segmentation models return a dict: each entry is compared);
* the plan's analytic FLOPs equal ``FlopCounterMode`` on the rebuilt model (conv + mm + addmm + bmm and SDPA as
  its two products, halved; ``nn.MultiheadAttention`` counted without its fused fast path, which the counter has
  no formula for) *exactly*, and its analytic params equal the rebuilt model's parameter count;

and a **grow-only** plan (every free group one step wider) either preserves the function (largest output
difference at most 1e-4 of the output's scale) or the transfer report flags a growing group as not preserving.
A refusal (a ``RedistributeError`` before surgery) is reported as a miss with its reason; anything else that is
wrong (a crash, a shape or FLOPs mismatch, an unflagged change of function) is **wrong**.
Models with no free conv group (isotropic transformers) run under ``--scope all`` and say so.

    .venv/bin/python benchmarks/zoo.py                        # all of them, writes results/zoo.md
    .venv/bin/python benchmarks/zoo.py --models resnet18,swin_t --out /tmp/zoo.md
    .venv/bin/python benchmarks/zoo.py --jobs 2               # two models at a time
    .venv/bin/python benchmarks/zoo.py --resume               # go on after a stopped run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results"
TEMPLATES = ("a", "b", "c", "d", "e")
SIZES = {"classification": (3, 224, 224), "segmentation": (3, 224, 224)}
VIDEO_SIZES = {
    "r3d_18": (3, 8, 112, 112), "mc3_18": (3, 8, 112, 112), "r2plus1d_18": (3, 8, 112, 112),
    "swin3d_t": (3, 8, 112, 112), "swin3d_s": (3, 8, 112, 112), "swin3d_b": (3, 8, 112, 112),
}  # fmt: skip
VIDEO_DEFAULT = (3, 16, 224, 224)  # mvit (its positional embedding fixes 16x224x224), s3d (needs 224)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:180]


def zoo() -> list[tuple[str, str]]:
    """(family, name) for every torchvision classification, video and segmentation model."""
    from torchvision import models

    out = [("classification", n) for n in models.list_models(module=models)]
    out += [("video", n) for n in models.list_models(module=models.video)]
    out += [("segmentation", n) for n in models.list_models(module=models.segmentation)]
    return out


def _shapes(out: Any) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, dict):
        return {k: _shapes(v) for k, v in out.items()}
    return [_shapes(v) for v in out]


def _max_diff(a: Any, b: Any) -> float:
    import torch

    if isinstance(a, torch.Tensor):
        scale = float(a.abs().max().clamp_min(1e-6))
        return float((a - b).abs().max()) / scale
    if isinstance(a, dict):
        return max(_max_diff(a[k], b[k]) for k in a)
    return max(_max_diff(x, y) for x, y in zip(a, b, strict=True))


def _counted_macs(model: Any, x: Any) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from redistribute.study.flop_counters import mha_decomposed, sdpa_on_cpu

    # nn.MultiheadAttention's fused eval path is an op FlopCounterMode cannot count: count the same maths unfused
    with torch.no_grad(), mha_decomposed(), FlopCounterMode(display=False, custom_mapping=sdpa_on_cpu()) as fc:
        model(x)
    return fc.get_total_flops() / 2


def run_one(family: str, name: str) -> dict[str, Any]:
    """Everything checked for one model (runs inside the worker subprocess)."""
    import torch

    import redistribute
    from redistribute.planning.planner import plan_from_widths

    torch.set_num_threads(1)
    torch.manual_seed(0)
    size = SIZES.get(family) or VIDEO_SIZES.get(name, VIDEO_DEFAULT)
    row: dict[str, Any] = {"model": name, "family": family, "input": "x".join(map(str, size))}
    model = redistribute.load_model(f"torchvision:{name}").eval()
    x = torch.randn(1, *size)
    with torch.no_grad():
        base_out = model(x)
    base_shapes = _shapes(base_out)
    t0 = time.perf_counter()
    try:
        graph = redistribute.trace(model, size)
    except Exception as exc:
        return {**row, "verdict": "miss", "reason": _reason(exc)}
    row["trace_s"] = round(time.perf_counter() - t0, 3)
    scope = "conv" if graph.free_groups("conv") else "all"
    row["scope"], row["free"] = scope, len(graph.free_groups(scope))
    if not row["free"]:
        return {**row, "verdict": "miss", "reason": "no free group"}
    problems: list[str] = []
    refused: list[str] = []
    for t in TEMPLATES:
        try:
            p = redistribute.plan(graph, t, scope=scope, tolerance=0.005)
        except redistribute.RedistributeError as exc:
            refused.append(f"{t}: {_reason(exc)}")
            continue
        try:
            new = redistribute.apply(model, p).eval()
            with torch.no_grad():
                out = new(x)
            if _shapes(out) != base_shapes:
                problems.append(f"{t}: output {_shapes(out)} != {base_shapes}")
            counted = _counted_macs(new, x)
            if counted != p.cost.flops:
                problems.append(f"{t}: FLOPs {p.cost.flops:.0f} analytic vs {counted:.0f} counted")
            params = sum(q.numel() for q in new.parameters())
            if params != p.cost.params:
                problems.append(f"{t}: params {p.cost.params} analytic vs {params} counted")
        except Exception as exc:
            problems.append(f"{t}: {_reason(exc)}")
    row["templates_ok"] = len(TEMPLATES) - len(problems) - len(refused)
    # grow-only: every free group one step wider (ties follow their source)
    try:
        widths = {}
        for g in graph.free_groups(scope):
            if g.tie is None:
                widths[g.id] = g.width + max(g.multiple, g.block, 1) * max(1, 8 // max(g.multiple, g.block, 1))
        for g in graph.groups:
            if g.tie is not None and g.fixed is None:
                src, num, den = g.tie
                widths[g.id] = widths.get(src, graph.groups[src].width) * num // den
        grow = plan_from_widths(graph, widths, scope=scope)
        new = redistribute.apply(model, grow).eval()
        with torch.no_grad():
            diff = _max_diff(base_out, new(x))
        flagged = [r.group for r in redistribute.transfer_report(model, grow) if not r.preserving]
        row["grow_diff"], row["grow_flagged"] = diff, len(flagged)
        if diff > 1e-4 and not flagged:
            problems.append(f"grow-only changes the output by {diff:.2e} and nothing is flagged")
    except redistribute.RedistributeError as exc:
        row["grow"] = f"refused: {_reason(exc)}"
    except Exception as exc:
        problems.append(f"grow-only: {_reason(exc)}")
    row["problems"], row["refused"] = problems, refused
    row["verdict"] = "wrong" if problems else ("miss" if refused else "correct")
    return row


def _worker(family: str, name: str, timeout: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", f"{family}:{name}"]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": name, "family": family, "verdict": "timeout", "reason": f"over {timeout} s"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (res.stderr.strip().splitlines() or ["no output"])[-1][:180]
        return {"model": name, "family": family, "verdict": "wrong", "problems": [f"crashed: {tail}"]}
    row = json.loads(lines[-1])
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    return row


def _table(rows: list[dict[str, Any]]) -> str:
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("correct", "miss", "wrong", "timeout")}
    out = [
        f"**{counts['correct']}/{len(rows)} correct**, {counts['wrong']} wrong, {counts['miss']} missed (refused with a "
        f"reason), {counts['timeout']} timed out.",
        "",
        "| model | family | input | scope | free | templates ok | grow-only max diff | flagged | verdict | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        notes = "; ".join([*r.get("problems", []), *r.get("refused", [])] + ([r["reason"]] if "reason" in r else []))
        notes += f" {r['grow']}" if "grow" in r else ""
        diff = f"{r['grow_diff']:.1e}" if "grow_diff" in r else ""
        out.append(
            f"| {r['model']} | {r['family']} | {r.get('input', '')} | {r.get('scope', '')} | {r.get('free', '')} | "
            f"{r.get('templates_ok', '')} | {diff} | {r.get('grow_flagged', '')} | {r['verdict']} | {notes[:300]} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated names (default: the whole zoo)")
    ap.add_argument("--jobs", type=int, default=1, help="models at a time (each in its own process)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per model")
    ap.add_argument("--out", type=Path, default=RESULTS / "zoo.md")
    ap.add_argument("--resume", action="store_true", help="keep the models already in OUT's .json (not timeouts)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        family, name = args.one.split(":")
        print(json.dumps(run_one(family, name)), flush=True)
        return
    todo = zoo()
    if args.models:
        wanted = set(args.models.split(","))
        todo = [(f, n) for f, n in todo if n in wanted]
    rows: list[dict[str, Any]] = []
    if args.resume and args.out.with_suffix(".json").is_file():  # models of an interrupted run are not run again
        rows = [r for r in json.loads(args.out.with_suffix(".json").read_text()) if r["verdict"] != "timeout"]
        done = {r["model"] for r in rows}
        todo = [(f, n) for f, n in todo if n not in done]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        for row in pool.map(lambda fn: _worker(*fn, args.timeout), todo):
            rows.append(row)
            print(f"{row['model']:32s} {row['verdict']:8s} {row.get('wall_s', '')}", flush=True)
            _write(args.out, rows, time.perf_counter() - t0)  # after every model: a stopped run keeps its rows
    print(_table(rows).splitlines()[0])


def _write(out: Path, rows: list[dict[str, Any]], seconds: float) -> None:
    header = (
        f"# torchvision zoo\n\n`{' '.join(['benchmarks/zoo.py', *sys.argv[1:]])}`, {len(rows)} of "
        f"{len(zoo())} models, {seconds:.0f} s in this run, one thread per model. See the docstring of "
        f"`benchmarks/zoo.py` for what each verdict checks.\n\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out, header + _table(rows)), (out.with_suffix(".json"), json.dumps(rows, indent=1))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


if __name__ == "__main__":
    main()
