"""Pipeline timing: how long trace, matching and surgery take next to simply creating the model.

For each timm model (``pretrained=False``, input size from ``model.pretrained_cfg["input_size"]``) this measures
the median wall time over ``--repeats`` runs of the four pipeline steps:

* **create**   ``timm.create_model(name)`` (the reference: building and initialising the base model)
* **trace**    ``redistribute.trace(model)`` (fx tracing on the meta device + channel-group discovery)
* **match**    ``redistribute.plan(graph, "d")`` (template "d" at equal FLOPs, bisection on the width multiplier)
* **surgery**  ``redistribute.apply(model, plan)`` (deep copy + channel selection + weight resizing)

and reports ``(trace + match + surgery) / create``; the target is at most 1.0x (PASS/MISS per model).

It also checks, once per model and outside the timed runs, that

* matching never rebuilds a model: during ``plan()`` it counts calls to ``redistribute.surgery.rebuild.apply_`` /
  ``apply``, ``redistribute.trace``, top-level ``copy.deepcopy`` and ``nn.Module.__init__`` (all must be 0), and
  counts the analytic cost evaluations (``CostModel.evaluate`` / ``delta`` / ``report``) and bisection steps;
* the rebuilt model is right: FLOPs within the match tolerance, ``sum(p.numel())`` equal to the plan's params,
  and a forward pass giving the base model's output shape.

Run from the repository root::

    .venv/bin/python benchmarks/pipeline.py
    .venv/bin/python benchmarks/pipeline.py --models resnet50,vgg19 --repeats 5 --json results.json
    .venv/bin/python benchmarks/pipeline.py --breakdown     # also split surgery into copy / scoring / resizing
    .venv/bin/python benchmarks/pipeline.py --e2e --models resnet50 --repeats 3   # whole processes instead

``--e2e`` runs ``pipeline_e2e.py`` (end-to-end process figures: wall time and peak RSS of the CLI's commands next
to a bare ``timm.create_model`` process, the targets of issue 15) with the other arguments; see its docstring.

Timings are wall clock (``time.perf_counter``) with torch's default thread count (``--threads N`` overrides it);
on a busy or small machine expect noise, which is why the median is reported. When the cores are shared with other
work, torch's intra-op threads contend and surgery (many small tensor ops) can slow down several-fold: compare
with ``--threads 1``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import timm
import torch
from torch import nn

import redistribute
import redistribute.groups.graph as _graph
import redistribute.planning.cost as _cost
import redistribute.planning.planner as _plan
import redistribute.surgery.rebuild as _surgery

DEFAULT_MODELS = ("resnet50", "vgg19", "efficientnet_b0", "convnext_tiny", "densenet121")
TEMPLATE = "d"
STEPS = ("create", "trace", "match", "surgery")


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def timm_input_size(model: nn.Module) -> tuple[int, ...]:
    """The model's default input size (C, H, W) from its timm ``pretrained_cfg``."""
    cfg: dict[str, Any] = getattr(model, "pretrained_cfg", {})
    return tuple(cfg["input_size"])


def run_once(name: str) -> dict[str, float]:
    """One pass of the four steps; returns their seconds."""
    model, t_create = _timed(lambda: timm.create_model(name, pretrained=False))
    input_size = timm_input_size(model)
    graph, t_trace = _timed(lambda: redistribute.trace(model, input_size))
    plan, t_match = _timed(lambda: redistribute.plan(graph, TEMPLATE))
    _, t_surgery = _timed(lambda: redistribute.apply(model, plan))
    return {"create": t_create, "trace": t_trace, "match": t_match, "surgery": t_surgery}


@contextlib.contextmanager
def _count_calls(counts: Counter[str]) -> Iterator[None]:
    """Count model rebuilds and cost evaluations while the block runs (monkeypatching, restored after)."""
    patches: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, attr: str, key: str, top_level_only: bool = False) -> None:
        orig = getattr(owner, attr)
        depth = [0]

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not top_level_only or depth[0] == 0:
                counts[key] += 1
            depth[0] += 1
            try:
                return orig(*args, **kwargs)
            finally:
                depth[0] -= 1

        patches.append((owner, attr, orig))
        setattr(owner, attr, wrapper)

    patch(_surgery, "apply_", "surgery.apply_")
    patch(_surgery, "apply", "surgery.apply")
    patch(redistribute, "apply_", "surgery.apply_ (public name)")
    patch(redistribute, "apply", "surgery.apply (public name)")
    patch(_graph, "trace", "trace")
    patch(redistribute, "trace", "trace (public name)")
    patch(_plan, "trace", "trace (as imported by _plan)")
    patch(copy, "deepcopy", "copy.deepcopy", top_level_only=True)
    patch(nn.Module, "__init__", "nn.Module.__init__", top_level_only=True)
    patch(_cost.CostModel, "evaluate", "cost.evaluate")
    patch(_cost.CostModel, "delta", "cost.delta")
    patch(_cost.CostModel, "report", "cost.report")
    try:
        yield
    finally:
        for owner, attr, orig in reversed(patches):
            setattr(owner, attr, orig)


class _MatchLog(logging.Handler):
    """Captures the matcher's "matched ... after N steps and M fix-ups" record."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.steps: int | None = None
        self.fixups: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("matched") and isinstance(record.args, tuple) and len(record.args) >= 4:
            self.steps, self.fixups = int(record.args[2]), int(record.args[3])  # type: ignore[call-overload]


REBUILD_KEYS = (
    "surgery.apply_",
    "surgery.apply",
    "surgery.apply_ (public name)",
    "surgery.apply (public name)",
    "trace",
    "trace (public name)",
    "trace (as imported by _plan)",
    "copy.deepcopy",
    "nn.Module.__init__",
)


def check_model(name: str) -> dict[str, Any]:
    """Untimed checks: no rebuild inside plan(), cost evaluations, and correctness of the rebuilt model."""
    model = timm.create_model(name, pretrained=False).eval()
    input_size = timm_input_size(model)
    graph = redistribute.trace(model, input_size)

    counts: Counter[str] = Counter()
    log = _MatchLog()
    logger = logging.getLogger(_plan.__name__)
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(log)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with _count_calls(counts):
            plan = redistribute.plan(graph, TEMPLATE)
    finally:
        logger.removeHandler(log)
        logger.setLevel(old_level)
        logger.propagate = old_propagate

    rebuilds = {k: counts[k] for k in REBUILD_KEYS}
    new = redistribute.apply(model, plan)
    x = torch.randn(1, *input_size)
    with torch.inference_mode():
        base_shape = tuple(model(x).shape)
        new_shape = tuple(new.eval()(x).shape)
    real_params = sum(p.numel() for p in new.parameters())
    flops_err = abs(plan.cost.flops / plan.base_cost.flops - 1)
    changed = plan.changed()
    return {
        "input_size": list(input_size),
        "groups": len(graph.groups),
        "free_groups": len(graph.free_groups()),
        "changed_groups": len(changed),
        "k": plan.k,
        "bisection_steps": log.steps,
        "fixups": log.fixups,
        "cost_evaluate_calls": counts["cost.evaluate"],
        "cost_delta_calls": counts["cost.delta"],
        "cost_report_calls": counts["cost.report"],
        "rebuilds_during_plan": rebuilds,
        "no_rebuild": all(v == 0 for v in rebuilds.values()),
        "base_flops": plan.base_cost.flops,
        "new_flops": plan.cost.flops,
        "flops_rel_err": flops_err,
        "flops_ok": flops_err <= plan.tolerance,
        "base_params": plan.base_cost.params,
        "plan_params": plan.cost.params,
        "real_params": real_params,
        "params_ok": real_params == plan.cost.params,
        "base_output_shape": list(base_shape),
        "new_output_shape": list(new_shape),
        "shape_ok": base_shape == new_shape,
    }


def surgery_breakdown(name: str) -> dict[str, float]:
    """Where surgery's time goes (one untimed-table run): the deep copy, channel scoring, and the resizing."""
    model = timm.create_model(name, pretrained=False)
    plan = redistribute.plan(redistribute.trace(model, timm_input_size(model)), TEMPLATE)
    work, t_copy = _timed(lambda: copy.deepcopy(model))
    orig, t_select = _surgery.select_channels, [0.0]

    def timed_select(*args: Any, **kwargs: Any) -> Any:
        out, t = _timed(lambda: orig(*args, **kwargs))
        t_select[0] += t
        return out

    _surgery.select_channels = timed_select  # time the selection inside the very apply_ call being measured
    try:
        _, t_apply_ = _timed(lambda: _surgery.apply_(work, plan))
    finally:
        _surgery.select_channels = orig
    return {"deepcopy": t_copy, "select_channels": t_select[0], "resize": t_apply_ - t_select[0]}


def _fmt_s(x: float) -> str:
    return f"{x:8.3f}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--e2e" in argv:  # whole-process figures: another script, with its own options and defaults
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import pipeline_e2e

        return pipeline_e2e.main([a for a in argv if a != "--e2e"])  # re-executes: this process holds torch
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated timm model names")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per model; the median is reported (default 3)")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch.set_num_threads(N) before measuring (default 0: leave torch's default thread count)",
    )
    ap.add_argument(
        "--breakdown", action="store_true", help="also split surgery into deepcopy / channel selection / resizing"
    )
    ap.add_argument("--json", metavar="FILE", help="also write all raw timings and checks to FILE")
    ap.add_argument(
        "--e2e",
        action="store_true",
        help="run pipeline_e2e.py instead (whole processes: wall and peak RSS vs a bare timm process); "
        "the other arguments go to it (--models, --repeats, --python, --repo, --write, --no-extras)",
    )
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    print(
        f"redistribute {redistribute.__version__}, torch {torch.__version__}, timm {timm.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    )
    print(f"template {TEMPLATE!r}, match flops, median of {args.repeats} run(s); seconds\n")

    results: dict[str, Any] = {}
    header = f"{'model':<16}{'create':>9}{'trace':>9}{'match':>9}{'surgery':>9}{'t+m+s':>9}{'ratio':>8}  result"
    print(header)
    print("-" * len(header))
    for name in models:
        runs = []
        for _ in range(args.repeats):
            runs.append(run_once(name))
            gc.collect()  # free the previous run's models before timing the next one
        med = {s: statistics.median(r[s] for r in runs) for s in STEPS}
        ours = med["trace"] + med["match"] + med["surgery"]
        ratio = ours / med["create"]
        verdict = "PASS" if ratio <= 1.0 else "MISS"
        print(
            f"{name:<16}{_fmt_s(med['create'])} {_fmt_s(med['trace'])} {_fmt_s(med['match'])} "
            f"{_fmt_s(med['surgery'])} {_fmt_s(ours)} {ratio:6.2f}x  {verdict}",
            flush=True,
        )
        results[name] = {"runs": runs, "median": med, "ours": ours, "ratio": ratio, "pass": ratio <= 1.0}

    print("\nchecks (untimed): matching must not rebuild the model; the rebuilt model must match the plan")
    header2 = (
        f"{'model':<16}{'groups':>7}{'free':>6}{'steps':>6}{'fixups':>7}{'evals':>7}{'deltas':>8}"
        f"{'rebuilds':>9}{'FLOPs err':>10}{'params':>8}{'shape':>7}"
    )
    print(header2)
    print("-" * len(header2))
    all_ok = True
    for name in models:
        c = check_model(name)
        results[name]["checks"] = c
        ok = c["no_rebuild"] and c["flops_ok"] and c["params_ok"] and c["shape_ok"]
        all_ok &= ok
        print(
            f"{name:<16}{c['groups']:>7}{c['free_groups']:>6}{c['bisection_steps']!s:>6}{c['fixups']!s:>7}"
            f"{c['cost_evaluate_calls']:>7}{c['cost_delta_calls']:>8}{sum(c['rebuilds_during_plan'].values()):>9}"
            f"{c['flops_rel_err']:>9.3%} {'ok' if c['params_ok'] else 'BAD':>7} {'ok' if c['shape_ok'] else 'BAD':>6}",
            flush=True,
        )
        if not c["no_rebuild"]:
            print(f"  rebuild calls during plan(): {c['rebuilds_during_plan']}")
        if not c["params_ok"]:
            print(f"  params: plan says {c['plan_params']:.0f}, rebuilt model has {c['real_params']}")
    print(
        "  (rebuilds = calls during plan() to apply_/apply/trace/copy.deepcopy/nn.Module.__init__; "
        "evals/deltas = analytic CostModel.evaluate/delta calls)"
    )

    if args.breakdown:
        print(
            "\nsurgery breakdown (one run, seconds): deepcopy of the model, select_channels (importance scores), resize"
        )
        header3 = f"{'model':<16}{'deepcopy':>10}{'select':>10}{'resize':>10}"
        print(header3)
        print("-" * len(header3))
        for name in models:
            b = surgery_breakdown(name)
            results[name]["surgery_breakdown"] = b
            print(f"{name:<16}{b['deepcopy']:>10.3f}{b['select_channels']:>10.3f}{b['resize']:>10.3f}", flush=True)

    n_pass = sum(r["pass"] for r in results.values())
    geo = statistics.geometric_mean([r["ratio"] for r in results.values()])
    worst = max(results, key=lambda n: results[n]["ratio"])
    print(
        f"\nsummary: {n_pass}/{len(results)} models within 1.0x creation time "
        f"(geometric mean {geo:.2f}x, worst {worst} {results[worst]['ratio']:.2f}x); "
        f"checks {'all ok' if all_ok else 'FAILED'}"
    )
    if args.json:
        meta = {
            "redistribute": redistribute.__version__,
            "torch": torch.__version__,
            "timm": timm.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "threads_set": args.threads or None,
            "repeats": args.repeats,
            "template": TEMPLATE,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"meta": meta, "models": results}, f, indent=2)
        print(f"wrote {args.json}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
