"""The coverage set: for every timm module, the registered model with the fewest parameters.

Parameters are counted on ``torch.device("meta")`` (no memory, no initialisation). Models that fail to build at
their default configuration are skipped (and reported); a module none of whose models builds is listed with
``model: null`` and the reason, so it shows up as a miss rather than disappearing.

    .venv/bin/python benchmarks/coverage_models.py                 # prints the set, writes results/coverage_models.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import timm
import torch

RESULTS = Path(__file__).parent / "results"


def count_params(name: str) -> int:
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def coverage_set() -> list[dict[str, Any]]:
    """One entry per timm module: ``{"module", "model", "params", "skipped"}``, sorted by module."""
    rows = []
    for module in sorted(timm.list_modules()):
        best: tuple[int, str] | None = None
        skipped: dict[str, str] = {}
        for name in timm.list_models(module=module):
            try:
                n = count_params(name)
            except Exception as exc:  # a model that does not build at its defaults is not a candidate
                skipped[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
                continue
            if best is None or (n, name) < best:
                best = (n, name)
        rows.append(
            {
                "module": module,
                "model": best[1] if best else None,
                "params": best[0] if best else None,
                "skipped": skipped,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=RESULTS / "coverage_models.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = coverage_set()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"timm": timm.__version__, "models": rows}, indent=1) + "\n")
    tmp.replace(args.out)
    for r in rows:
        print(f"{r['module']:28s} {r['model'] or '-':40s} {r['params'] or 0:>12,}")
    print(
        f"{len(rows)} modules, {sum(1 for r in rows if r['model'])} with a model, {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
