"""``python -m redistribute.study.worker RUNDIR``: execute the run described by ``RUNDIR/run.json``.

The ``torchrun`` executor starts it as ``torchrun --nproc_per_node N -m redistribute.study.worker RUNDIR``; every
rank trains its share (DDP) and rank 0 writes ``RUNDIR/result.json``. Errors print one line and exit non-zero.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ..errors import RedistributeError
from .runs import RUN_SPEC, RunSpec, execute_run

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the worker; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m redistribute.study.worker RUNDIR", file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        spec = RunSpec.from_dict(json.loads((run_dir / RUN_SPEC).read_text(encoding="utf-8")))
        execute_run(spec, run_dir)
    except RedistributeError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {run_dir / RUN_SPEC}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
