"""Coverage of timm's architecture families: redistribute vs torch-pruning's and torch-kirigami's dependency graphs.

The set is one model per timm module, the one with the fewest parameters (``coverage_models.py`` generates it;
``results/coverage_models.json`` caches it). Each model runs in its own subprocess with a timeout, at its default
configuration (``pretrained=False``, eval mode, batch 1 at ``pretrained_cfg["input_size"]``):

* **eager**: the base model runs forward (models that do not are excluded from the denominator);
* **ours**: ``redistribute.trace`` (seconds timed), free/fixed groups, then for each template ``a``-``e`` a plan at
  equal FLOPs (tolerance 0.5 %), surgery, a forward pass with the base output shape; a model counts as
  *redistributed* when all five pass. Under ``--scope conv``, a model with no free conv-produced group but free
  Linear-produced ones (an isotropic transformer) is run under ``--scope all`` instead, and its row says why;
  the summary counts those separately. A model with no free group at all counts as a miss, with the reason.
* **all widths changed**: every free group set to another width (``k = 0.75`` without matching): the model must
  run forward with the base output shape, or be refused *before* surgery with a redistribute error (never a wrong
  model and never a crash inside surgery).
* **torch-kirigami**: ``DependencyGraph.build(model, args=(x,))`` (seconds timed, best of two): success means it
  returns a graph; its diagnostics (captured operators it cannot analyse, which become barriers) are counted. Its
  pruner's candidate discovery is not run (minutes on resnet50 here).
* **torch-pruning**: ``DependencyGraph().build_dependency`` (seconds timed), then ``MetaPruner`` with L1 magnitude
  importance and a 25 % uniform ratio (classifier ignored), ``step()`` and a forward pass.

The peers run after ours in the same worker, torch-kirigami first: each prints its row as soon as it is done, so a
timeout in torch-pruning loses neither ours nor torch-kirigami's figures.

    .venv/bin/python benchmarks/coverage.py                       # the whole set, writes results/coverage.md
    .venv/bin/python benchmarks/coverage.py --models resnet,vgg   # some timm modules only
    .venv/bin/python benchmarks/coverage.py --names resnet50,densenet121 --out part.md   # these timm models
    .venv/bin/python benchmarks/coverage.py --scope all --families transformers --out results/coverage_all.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results"
TEMPLATES = ("a", "b", "c", "d", "e")
TRANSFORMERS = (
    "vision_transformer", "deit", "beit", "eva", "swin_transformer", "swin_transformer_v2", "swin_transformer_v2_cr",
    "cait", "xcit", "pvt_v2", "mvitv2", "twins", "levit", "pit", "crossvit", "mlp_mixer",
)  # fmt: skip


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:180]


def run_one(name: str, scope: str) -> dict[str, Any]:
    """Everything measured for one model (runs inside the worker subprocess)."""
    import timm
    import torch

    import redistribute

    torch.set_num_threads(1)
    torch.manual_seed(0)
    row: dict[str, Any] = {"model": name}
    model = timm.create_model(name, pretrained=False).eval()
    size = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
    row["input"] = "x".join(str(s) for s in size)
    x = torch.randn(1, *size)
    try:
        with torch.no_grad():
            base_shape = tuple(model(x).shape)
        row["eager"] = True
    except Exception as exc:
        row.update(eager=False, eager_reason=_reason(exc))
        return row
    _warm_up()
    # ours
    try:
        times = []
        for _ in range(2):  # best of two: the first call in a process also pays one-off costs
            t0 = time.perf_counter()
            graph = redistribute.trace(model, size)
            times.append(time.perf_counter() - t0)
        row["ours_s"] = min(times)
        free = graph.free_groups(scope)
        row["groups"], row["free"] = len(graph.groups), len(free)
        row["opaque"] = sorted(graph.opaque)[:3]
    except Exception as exc:
        row["ours_error"] = _reason(exc)
        free = []
    if not free and scope == "conv" and "ours_error" not in row and graph.free_groups("all"):
        # an isotropic transformer has no conv-produced width to move: say so, and redistribute its Linear widths
        row["scope_fallback"] = "no free group under --scope conv: " + _fixed_summary(graph)
        scope = "all"
        free = graph.free_groups(scope)
        row["free"] = len(free)
    row["scope"] = scope
    passed: dict[str, str] = {}
    if free:
        for t in TEMPLATES:
            try:
                p = redistribute.plan(graph, t, scope=scope, tolerance=0.005)
                err = abs(p.cost.flops / p.base_cost.flops - 1.0)
                new = redistribute.apply(model, p).eval()
                with torch.no_grad():
                    out = new(x)
                ok = tuple(out.shape) == base_shape and bool(torch.isfinite(out).all()) and err <= 0.005
                passed[t] = "ok" if ok else f"shape {tuple(out.shape)} / FLOPs err {err:.4%}"
                if t == "d":
                    row["reset_classifier"] = _reset_classifier(new, x)
            except Exception as exc:
                passed[t] = _reason(exc)
    elif "ours_error" not in row:
        row["ours_error"] = f"no free group under --scope {scope}: " + _fixed_summary(graph)
    row["templates"] = passed
    row["ours_ok"] = bool(passed) and all(v == "ok" for v in passed.values())
    if free:
        row["all_changed"] = _all_changed(model, graph, scope, x, base_shape)
    print(json.dumps(row), flush=True)  # ours is done: a peer's timeout must not lose it
    if os.environ.get("COVERAGE_NO_KG"):
        row.update(kg_ok=False, kg_error=os.environ["COVERAGE_NO_KG"], kg_skipped=True)
    else:
        row.update(_torch_kirigami(model, x))
    print(json.dumps(row), flush=True)  # so is torch-kirigami
    if os.environ.get("COVERAGE_NO_TP"):
        return {**row, "tp_ok": False, "tp_error": os.environ["COVERAGE_NO_TP"]}
    # torch-pruning
    row.update(_torch_pruning(name, x, base_shape))
    return row


def _reset_classifier(model: Any, x: Any) -> str:
    """timm's ``reset_classifier(7)`` on a redistributed model: its forward must then give 7 classes."""
    import torch

    if not hasattr(model, "reset_classifier"):
        return "n/a"
    try:
        model.reset_classifier(7)
        with torch.no_grad():
            out = model.eval()(x)
        return "ok" if out.shape[-1] == 7 else f"gives {tuple(out.shape)}"
    except Exception as exc:
        return _reason(exc)


def _warm_up() -> None:
    """Run the three tools once on a tiny timm model, so one-off costs (lazy imports, first kernels) are paid by none."""
    import timm
    import torch
    import torch_kirigami as kg
    import torch_pruning as tp

    import redistribute

    m = timm.create_model("test_resnet").eval()
    x = torch.randn(1, 3, 64, 64)
    redistribute.trace(m, (3, 64, 64))
    if not os.environ.get("COVERAGE_NO_TP"):
        tp.DependencyGraph().build_dependency(m, example_inputs=x)
    if not os.environ.get("COVERAGE_NO_KG"):
        kg.DependencyGraph.build(m, args=(x,))


def _torch_kirigami(model: Any, x: Any) -> dict[str, Any]:
    """torch-kirigami's graph build on the base model: best-of-two seconds, success, diagnostics count."""
    import torch_kirigami as kg

    row: dict[str, Any] = {}
    try:
        times = []
        for _ in range(2):  # best of two, as for ours
            t0 = time.perf_counter()
            graph = kg.DependencyGraph.build(model, args=(x,))
            times.append(time.perf_counter() - t0)
        row.update(kg_s=min(times), kg_ok=True, kg_diag=len(graph.diagnostics))
        if graph.diagnostics:
            row["kg_note"] = _reason_text(str(graph.diagnostics[0]))
        graph.invalidate()
    except Exception as exc:
        row.update(kg_ok=False, kg_error=_reason(exc))
    return row


def _reason_text(text: str) -> str:
    return (text.splitlines() or [""])[0][:180]


def _fixed_summary(graph: Any) -> str:
    reasons: dict[str, int] = {}
    for g in graph.groups:
        if g.fixed:
            reasons[g.fixed] = reasons.get(g.fixed, 0) + 1
    top = sorted(reasons.items(), key=lambda kv: -kv[1])[:2]
    return "; ".join(f"{n}x {r}" for r, n in top) or "no channel groups"


def _all_changed(model: Any, graph: Any, scope: str, x: Any, base_shape: tuple[int, ...]) -> str:
    import torch

    import redistribute

    try:
        p = redistribute.plan(graph, "base", match="none", k=0.75, scope=scope, divisor=1)
    except redistribute.RedistributeError as exc:
        return f"refused: {_reason(exc)}"
    try:
        new = redistribute.apply(model, p).eval()
    except redistribute.RedistributeError as exc:
        return f"refused: {_reason(exc)}"
    except Exception as exc:
        return f"CRASH in surgery: {_reason(exc)}"
    try:
        with torch.no_grad():
            out = new(x)
    except Exception as exc:
        return f"WRONG: forward fails: {_reason(exc)}"
    if tuple(out.shape) != base_shape:
        return f"WRONG: output shape {tuple(out.shape)}"
    return "ok"


def _torch_pruning(name: str, x: Any, base_shape: tuple[int, ...]) -> dict[str, Any]:
    import timm
    import torch
    import torch_pruning as tp

    row: dict[str, Any] = {}
    model = timm.create_model(name, pretrained=False).eval()
    try:
        times = []
        for _ in range(2):  # best of two, as for ours
            t0 = time.perf_counter()
            tp.DependencyGraph().build_dependency(model, example_inputs=x)
            times.append(time.perf_counter() - t0)
        row["tp_s"] = min(times)
    except Exception as exc:
        row["tp_error"] = _reason(exc)
        return row
    try:
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        ignored = [
            m for m in ([head] if isinstance(head, torch.nn.Module) else []) if any(True for _ in m.parameters())
        ]
        pruner = tp.pruner.MetaPruner(
            model, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.25, ignored_layers=ignored
        )
        pruner.step()
        with torch.no_grad():
            out = model(x)
        row["tp_ok"] = tuple(out.shape) == base_shape
        if not row["tp_ok"]:
            row["tp_error"] = f"output shape {tuple(out.shape)}"
    except Exception as exc:
        row["tp_ok"] = False
        row["tp_error"] = _reason(exc)
    return row


# -- driver -------------------------------------------------------------------------------------------------------
def _load_set(refresh: bool) -> list[dict[str, Any]]:
    path = RESULTS / "coverage_models.json"
    if refresh or not path.exists():
        subprocess.run(
            [sys.executable, str(HERE / "coverage_models.py"), "--out", str(path)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return json.loads(path.read_text())["models"]


def _worker(name: str, scope: str, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", name, "--scope", scope]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        partial = [ln for ln in out.splitlines() if ln.startswith("{")]
        if partial:  # ours finished (and maybe torch-kirigami); torch-pruning did not
            row = json.loads(partial[-1])
            if "kg_ok" not in row:
                row.update(kg_ok=False, kg_error=f"timeout after {timeout:.0f} s")
            return {**row, "tp_ok": False, "tp_error": f"timeout after {timeout:.0f} s", "wall_s": timeout}
        return {"model": name, "eager": True, "ours_error": f"timeout after {timeout:.0f} s", "wall_s": timeout}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:180]
        return {"model": name, "eager": True, "ours_error": f"worker died (rc {done.returncode}): {tail}"}
    row = json.loads(lines[-1])
    row["wall_s"] = time.perf_counter() - t0
    return row


def _cell(ok: bool | None) -> str:
    return "yes" if ok else "no"


def _kg_cell(r: dict[str, Any]) -> str:
    if "kg_ok" not in r:
        return ""  # a row from before torch-kirigami joined, or a worker that died before it
    if not r["kg_ok"]:
        return "no"
    return f"yes ({r['kg_diag']} diag)" if r.get("kg_diag") else "yes"


def _median_ratio(rows: list[dict[str, Any]], peer: str) -> tuple[float, int]:
    """Median of ours_s / <peer>_s over the rows where both were timed, and how many rows that is."""
    ratios = [r["ours_s"] / r[peer] for r in rows if "ours_s" in r and r.get(peer)]
    return (statistics.median(ratios) if ratios else float("nan")), len(ratios)


def render(rows: list[dict[str, Any]], scope: str, meta: dict[str, Any]) -> str:
    lines = [
        f"# Coverage: one model per timm module (scope `{scope}`)",
        "",
        f"timm {meta['timm']}, torch {meta['torch']}, torch-pruning {meta['tp']}, "
        f"torch-kirigami {meta.get('kg', 'not run')}, redistribute {meta['ours']}; "
        f"{meta['cpus']} CPUs, 1 torch thread per worker; generated by `benchmarks/coverage.py` on {meta['date']}.",
        "",
        "| module | model | input | groups (free) | ours: a-e | all widths changed | reset_classifier (d) "
        "| ours trace s | tp build s | tp prune+fwd | kg build s | kg built | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r.get("eager", True):
            lines.append(
                f"| {r['module']} | {r['model']} | {r.get('input', '')} | | excluded | | | | | | | | does not run eagerly: {r.get('eager_reason', '')} |"
            )
            continue
        templates = r.get("templates", {})
        bad = {t: v for t, v in templates.items() if v != "ok"}
        note = r.get("ours_error") or "; ".join(f"{t}: {v}" for t, v in list(bad.items())[:1])
        if r.get("scope_fallback"):
            note = f"under --scope all ({r['scope_fallback']})" + (f"; {note}" if note else "")
        if r.get("tp_error"):
            note += f" · tp: {r['tp_error']}"
        if r.get("kg_error"):
            note += f" · kg: {r['kg_error']}"
        elif r.get("kg_note"):
            note += f" · kg diagnostic: {r['kg_note']}"
        ours = "5/5" if r.get("ours_ok") else f"{sum(v == 'ok' for v in templates.values())}/5"
        lines.append(
            f"| {r['module']} | {r['model']} | {r.get('input', '')} | {r.get('groups', '')} ({r.get('free', '')}) | {ours} | "
            f"{r.get('all_changed', '')} | {r.get('reset_classifier', '')} | {r.get('ours_s', float('nan')):.3f} | {r.get('tp_s', float('nan')):.3f} | "
            f"{_cell(r.get('tp_ok'))} | {r.get('kg_s', float('nan')):.3f} | {_kg_cell(r)} | {note.replace('|', '/')} |"
        )
    eager = [r for r in rows if r.get("eager", True)]
    ours_n = sum(1 for r in eager if r.get("ours_ok"))
    fallback_n = sum(1 for r in eager if r.get("ours_ok") and r.get("scope_fallback"))
    tp_n = sum(1 for r in eager if r.get("tp_ok"))
    kg_n = sum(1 for r in eager if r.get("kg_ok"))
    kg_run = sum(1 for r in eager if "kg_ok" in r and not r.get("kg_skipped"))  # --no-kg rows are not misses
    tp_ratio, tp_count = _median_ratio(eager, "tp_s")
    kg_ratio, kg_count = _median_ratio(eager, "kg_s")
    wrong = [r["model"] for r in eager if str(r.get("all_changed", "")).startswith(("WRONG", "CRASH"))]
    heads = [r for r in eager if r.get("reset_classifier", "n/a") != "n/a"]
    heads_ok = sum(1 for r in heads if r["reset_classifier"] == "ok")
    lines += [
        "",
        f"**Summary:** ours {ours_n}/{len(eager)} redistributed with all five templates"
        + (f" ({fallback_n} of them under --scope all: no free group under --scope conv)" if fallback_n else "")
        + f" vs torch-pruning {tp_n}/{len(eager)} pruned 25 % and ran"
        + (f" vs torch-kirigami {kg_n}/{kg_run} built a dependency graph" if kg_run else " (torch-kirigami not run)")
        + f"; median trace+group time ratio ours/torch-pruning {tp_ratio:.2f}x over {tp_count} models"
        + (f", ours/torch-kirigami {kg_ratio:.2f}x over {kg_count} models" if kg_run else "")
        + "; "
        f"{len(rows) - len(eager)} excluded (no eager forward); all-widths-changed plans wrong or crashing: {len(wrong)}"
        + (f" ({', '.join(wrong)})" if wrong else "")
        + f"; timm's reset_classifier(7) after template d works on {heads_ok}/{len(heads)}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--models", help="comma-separated timm modules (default: all)")
    ap.add_argument("--names", help="comma-separated timm model names, instead of the set's one model per module")
    ap.add_argument("--families", choices=("all", "transformers"), default="all")
    ap.add_argument("--scope", choices=("conv", "all"), default="conv")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per model")
    ap.add_argument("--refresh", action="store_true", help="regenerate the model set")
    ap.add_argument("--out", type=Path, default=None, help="markdown file (default results/coverage[_all].md)")
    ap.add_argument(
        "--update", action="store_true", help="keep the other rows of the existing results; rerun --models only"
    )
    ap.add_argument("--no-tp", metavar="REASON", help="skip torch-pruning (e.g. it timed out before), with this note")
    ap.add_argument("--no-kg", metavar="REASON", help="skip torch-kirigami, with this note")
    ap.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        help="only merge the .json results of partial runs (later files replace earlier rows)",
    )
    args = ap.parse_args(argv)
    if args.one:
        try:
            row = run_one(args.one, args.scope)
        except Exception as exc:
            traceback.print_exc()
            row = {"model": args.one, "eager": True, "ours_error": f"worker failed: {_reason(exc)}"}
        print(json.dumps(row))
        return 0
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        order = {e["module"]: i for i, e in enumerate(_load_set(False))}
        latest = {r["module"]: r for part in parts for r in part["rows"]}  # a later file's row replaces an earlier one
        rows = sorted(latest.values(), key=lambda r: order.get(r["module"], len(order)))
        out = args.out or RESULTS / ("coverage.md" if args.scope == "conv" else "coverage_all.md")
        _write(out, rows, args.scope, parts[0]["meta"])
        return 0
    import timm
    import torch

    import redistribute

    if args.no_tp:
        os.environ["COVERAGE_NO_TP"] = args.no_tp  # inherited by the workers
    if args.no_kg:
        os.environ["COVERAGE_NO_KG"] = args.no_kg
    entries = _load_set(args.refresh)
    if args.names:
        entries = [{"module": _module_of(n), "model": n} for n in args.names.split(",")]
    elif args.models:
        wanted = set(args.models.split(","))
        entries = [e for e in entries if e["module"] in wanted]
    if args.families == "transformers":
        entries = [e for e in entries if e["module"] in TRANSFORMERS]
    rows = []
    for i, e in enumerate(entries, 1):
        if e["model"] is None:
            rows.append({"module": e["module"], "model": "-", "eager": False, "eager_reason": "no model builds"})
            continue
        row = {"module": e["module"], **_worker(e["model"], args.scope, args.timeout)}
        rows.append(row)
        status = "ok" if row.get("ours_ok") else ("excluded" if not row.get("eager", True) else "MISS")
        print(f"[{i}/{len(entries)}] {e['module']:26s} {e['model']:36s} ours {status:8s} tp {'ok' if row.get('tp_ok') else 'no'}"
              f" kg {'ok' if row.get('kg_ok') else 'no'}  {row.get('ours_error') or ''}", flush=True)  # fmt: skip
    meta = {
        "timm": timm.__version__, "torch": torch.__version__, "tp": _version("torch-pruning"), "kg": _version("torch-kirigami"),
        "ours": redistribute.__version__,
        "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip
    out = args.out or RESULTS / ("coverage.md" if args.scope == "conv" else "coverage_all.md")
    if args.update and out.with_suffix(".json").exists():
        fresh = {r["module"]: r for r in rows}
        old_rows = json.loads(out.with_suffix(".json").read_text())["rows"]
        rows = [fresh.pop(r["module"], r) for r in old_rows] + list(fresh.values())
    _write(out, rows, args.scope, meta)
    return 0


def _module_of(name: str) -> str:
    """The timm module that registers model ``name`` (``resnet`` for ``resnet50``)."""
    import timm
    from timm.models import is_model_in_modules

    return next((m for m in timm.list_modules() if is_model_in_modules(name, [m])), "?")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _write(out: Path, rows: list[dict[str, Any]], scope: str, meta: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render(rows, scope, meta)
    for path, content in (
        (out, text),
        (out.with_suffix(".json"), json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n"),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content)
        tmp.replace(path)
    print(text.strip().splitlines()[-1])


if __name__ == "__main__":
    raise SystemExit(main())
