"""End-to-end process figures: wall time and peak RSS of redistribute's commands next to a bare timm process.

Each figure is a whole process, started the way a user starts it, so it counts Python start-up, imports, model
creation and everything the command does. Per model ``NAME`` one *round* runs, in this order,

* **bare**     ``python -c "import timm; timm.create_model(NAME)"`` (the reference)
* **bare, os._exit**  the same ended with ``os._exit(0)``: no interpreter teardown, as the ``redistribute`` command
  ends (``redistribute/cli/startup.py``); shown for the reader, no target. The teardown after ``import timm`` is
  about 125 MB of peak RSS and a second of wall time here, which the bare reference pays and our commands do not.
* **main**     ``python -m redistribute timm:NAME -t d --match flops``
* **inspect**  ``python -m redistribute inspect timm:NAME``
* **out**      ``python -m redistribute timm:NAME -t d --match flops --out DIR`` (a fresh DIR each time)

and ``--repeats`` rounds (default 5) alternate them (bare main inspect out bare main ...), so slow drift of the
machine hits all four alike; the table shows medians and the ratios ``command / bare``. Then, also alternating:

* ``python -m redistribute --help`` and ``python -m redistribute templates`` (wall; target under 0.5 s);
* ``python -m redistribute inspect timm:convnext_xxlarge`` against ``python -c "import timm"`` (target at most
  1.3x, wall and peak RSS);
* ``python -m redistribute timm:resnet50 -t d --match flops --checkpoint FILE --out DIR`` for a ``.safetensors``
  and a ``.pth`` checkpoint of timm's resnet50 with random weights (written to a temporary folder first): target
  peak RSS at most checkpoint size + new model size (the ``weights.safetensors`` written to DIR) + 300 MB.

Targets (issue 15): main <= 1.0x bare, wall and peak RSS; out <= 1.2x; inspect is reported without a target except
on convnext_xxlarge, as above. Peak RSS is the child's own ``ru_maxrss`` from ``os.wait4`` (Linux: KiB; it covers
the child and any process it waited for, and nothing else). Children run with ``cwd`` and ``PYTHONPATH`` set to
``--repo`` (default: this checkout) and the interpreter ``--python`` (default: the one running this script).

Before measuring, the script compiles the measured package to bytecode (``compileall``), the state pip leaves an
installed package in and timm's and torch's own files are in.

The measuring process must stay small: on Linux a child's ``ru_maxrss`` starts from the RSS of the process it was
forked from (``exec`` folds the old address space's high-water mark in), so a parent holding torch (900 MB here)
would put a 900 MB floor under every child. This script imports only the standard library, and ``main`` re-executes
a fresh interpreter when it finds torch already loaded (as under ``pipeline.py --e2e``).

    .venv/bin/python benchmarks/pipeline_e2e.py                          # six models, 5 rounds, all extras
    .venv/bin/python benchmarks/pipeline_e2e.py --models resnet50 --repeats 3
    .venv/bin/python benchmarks/pipeline_e2e.py --write                  # also results/pipeline_e2e.md
    .venv/bin/python benchmarks/pipeline_e2e.py --repo ../other-checkout  # measure another checkout's code
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = ("resnet50", "vgg19", "efficientnet_b0", "convnext_tiny", "densenet121", "convnext_xxlarge")
TARGETS = {"bare_exit": None, "main": 1.0, "inspect": None, "out": 1.2}  # ratio to the bare process, wall and peak RSS
STARTUP_TARGET_S = 0.5
XXL_MODEL, XXL_TARGET = "convnext_xxlarge", 1.3
CKPT_MODEL, CKPT_SLACK_MB = "resnet50", 300.0
MB = 1024 * 1024


@dataclass(frozen=True)
class Proc:
    """One measured child process.

    Attributes:
        wall: seconds from start to exit (``time.perf_counter`` around ``Popen`` and ``os.wait4``).
        rss_mb: peak resident set size of the child, MiB (``ru_maxrss`` from ``os.wait4``).
        rc: exit status (0 on success).
        err: last line of the child's stderr when ``rc != 0``, else "".
    """

    wall: float
    rss_mb: float
    rc: int
    err: str = ""


@dataclass(frozen=True)
class Runner:
    """Starts children with one interpreter and one checkout on the import path."""

    python: str
    repo: Path

    def env(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        return {**os.environ, "PYTHONPATH": str(self.repo) + (os.pathsep + path if path else "")}

    def run(self, args: Sequence[str], timeout: float) -> Proc:
        """Run ``python ARGS`` to completion and measure it (stdout discarded, stderr kept for the message)."""
        with tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            p = subprocess.Popen(
                [self.python, *args], cwd=self.repo, env=self.env(), stdout=subprocess.DEVNULL, stderr=err
            )
            _, status, usage = _wait4(p, timeout)
            wall = time.perf_counter() - t0
            rc = os.waitstatus_to_exitcode(status)
            p.returncode = rc  # os.wait4 reaped it: tell Popen not to wait again
            tail = ""
            if rc != 0:
                err.seek(0)
                lines = err.read().decode(errors="replace").strip().splitlines()
                tail = (lines or [f"exit status {rc}"])[-1][:160]
                if wall >= timeout:
                    tail = f"killed after the {timeout:.0f} s timeout"
        return Proc(wall=wall, rss_mb=usage.ru_maxrss * 1024 / MB, rc=rc, err=tail)


def _wait4(p: subprocess.Popen[bytes], timeout: float) -> tuple[int, int, Any]:
    """``os.wait4`` on the child, killing it after ``timeout`` seconds (its figures then describe the killed run)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            return pid, status, usage
        if time.monotonic() > deadline:
            p.kill()
            return os.wait4(p.pid, 0)
        time.sleep(0.005)


def bare_create(name: str, fast_exit: bool = False) -> list[str]:
    """The reference process; ``fast_exit`` ends it with ``os._exit(0)`` as the ``redistribute`` command ends."""
    tail = "; import os; os._exit(0)" if fast_exit else ""
    return ["-c", f"import timm; timm.create_model({name!r}){tail}"]


#: ``import timm`` alone, ended without teardown: the floor under any of our processes (they end with os._exit).
IMPORT_FLOOR = ["-c", "import timm, os; os._exit(0)"]


def commands(name: str, out_dir: Callable[[], str]) -> dict[str, Callable[[], list[str]]]:
    """The measured commands of one model, in round order (``out`` gets a fresh folder on every call)."""
    main = ["-m", "redistribute", f"timm:{name}", "-t", "d", "--match", "flops"]
    return {
        "bare": lambda: bare_create(name),
        "bare_exit": lambda: bare_create(name, fast_exit=True),
        "main": lambda: main,
        "inspect": lambda: ["-m", "redistribute", "inspect", f"timm:{name}"],
        "out": lambda: [*main, "--out", out_dir()],
    }


def alternate(
    runner: Runner, cmds: dict[str, Callable[[], list[str]]], repeats: int, timeout: float
) -> dict[str, list[Proc]]:
    """``repeats`` rounds of all commands in order (A B C A B C ...); the measurements of each command."""
    runs: dict[str, list[Proc]] = {k: [] for k in cmds}
    for _ in range(repeats):
        for key, argv in cmds.items():
            runs[key].append(runner.run(argv(), timeout))
    return runs


def median(runs: list[Proc], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def raw(runs: list[Proc]) -> list[list[float]]:
    """Every measurement, for the JSON: [wall s, peak RSS MiB, exit status] per run, in round order."""
    return [[round(r.wall, 4), round(r.rss_mb, 1), r.rc] for r in runs]


def _failed(runs: list[Proc]) -> str:
    bad = [r for r in runs if r.rc != 0]
    return f"FAILED {len(bad)}/{len(runs)}: {bad[0].err}" if bad else ""


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def model_rows(name: str, runs: dict[str, list[Proc]]) -> list[dict[str, Any]]:
    """One row per command of a model: medians, ratios to bare, target and verdict."""
    bare_wall, bare_rss = median(runs["bare"], "wall"), median(runs["bare"], "rss_mb")
    rows = []
    for key, procs in runs.items():
        wall, rss = median(procs, "wall"), median(procs, "rss_mb")
        row: dict[str, Any] = {
            "model": name, "command": key, "wall_s": wall, "rss_mb": rss, "error": _failed(procs), "runs": raw(procs)
        }  # fmt: skip
        if key != "bare":
            target = TARGETS[key]
            row.update(wall_ratio=wall / bare_wall, rss_ratio=rss / bare_rss, target=target)
            if target is not None:
                row["result"] = verdict(not row["error"] and wall / bare_wall <= target and rss / bare_rss <= target)
        rows.append(row)
    return rows


def startup_rows(runner: Runner, repeats: int, timeout: float) -> list[dict[str, Any]]:
    cmds = {"--help": ["-m", "redistribute", "--help"], "templates": ["-m", "redistribute", "templates"]}
    runs = alternate(runner, {k: (lambda v=v: v) for k, v in cmds.items()}, repeats, timeout)
    rows = []
    for key, procs in runs.items():
        wall, err = median(procs, "wall"), _failed(procs)
        rows.append(
            {"command": f"redistribute {key}", "wall_s": wall, "rss_mb": median(procs, "rss_mb"), "error": err,
             "target": f"< {STARTUP_TARGET_S} s", "result": verdict(not err and wall < STARTUP_TARGET_S),
             "runs": raw(procs)}
        )  # fmt: skip
    return rows


def xxl_row(runner: Runner, repeats: int, timeout: float) -> dict[str, Any]:
    cmds = {
        "import timm": ["-c", "import timm"],
        "floor": IMPORT_FLOOR,
        "inspect": ["-m", "redistribute", "inspect", f"timm:{XXL_MODEL}"],
    }
    runs = alternate(runner, {k: (lambda v=v: v) for k, v in cmds.items()}, repeats, timeout)
    base, ins, floor = runs["import timm"], runs["inspect"], runs["floor"]
    wall_r, rss_r = median(ins, "wall") / median(base, "wall"), median(ins, "rss_mb") / median(base, "rss_mb")
    err = _failed(ins) or _failed(base)
    return {
        "command": f"inspect timm:{XXL_MODEL} vs import timm", "wall_s": median(ins, "wall"),
        "rss_mb": median(ins, "rss_mb"), "ref_wall_s": median(base, "wall"), "ref_rss_mb": median(base, "rss_mb"),
        "wall_ratio": wall_r, "rss_ratio": rss_r, "target": f"<= {XXL_TARGET}x", "error": err,
        "result": verdict(not err and wall_r <= XXL_TARGET and rss_r <= XXL_TARGET),
        "runs": raw(ins), "ref_runs": raw(base),
        "floor_wall_s": median(floor, "wall"), "floor_rss_mb": median(floor, "rss_mb"), "floor_runs": raw(floor),
    }  # fmt: skip


def checkpoint_rows(runner: Runner, repeats: int, timeout: float, tmp: Path) -> list[dict[str, Any]]:
    """``--checkpoint`` on resnet50 from a .safetensors and a .pth file of random weights."""
    files = {"safetensors": tmp / f"{CKPT_MODEL}.safetensors", "pth": tmp / f"{CKPT_MODEL}.pth"}
    writer = (
        "import sys, timm, torch; from safetensors.torch import save_file; "
        f"sd = timm.create_model({CKPT_MODEL!r}).state_dict(); "
        "save_file({k: v.contiguous() for k, v in sd.items()}, sys.argv[1]); torch.save(sd, sys.argv[2])"
    )
    made = runner.run(["-c", writer, str(files["safetensors"]), str(files["pth"])], timeout)
    if made.rc != 0:
        return [{"command": f"--checkpoint {k}", "error": f"could not write the checkpoint: {made.err}"} for k in files]
    outs: list[Path] = []

    def fresh() -> str:
        outs.append(Path(tempfile.mkdtemp(dir=tmp)))
        return str(outs[-1])

    main = ["-m", "redistribute", f"timm:{CKPT_MODEL}", "-t", "d", "--match", "flops"]
    cmds = {k: (lambda f=f: [*main, "--checkpoint", str(f), "--out", fresh()]) for k, f in files.items()}
    cmds["import timm"] = lambda: IMPORT_FLOOR  # what the interpreter alone holds, for the reader
    runs = alternate(runner, cmds, repeats, timeout)
    base_rss = median(runs.pop("import timm"), "rss_mb")
    rows = []
    for key, procs in runs.items():
        ckpt_mb = files[key].stat().st_size / MB
        written = [d / "weights.safetensors" for d in outs if (d / "weights.safetensors").exists()]
        new_mb = statistics.median(w.stat().st_size / MB for w in written) if written else float("nan")
        limit = ckpt_mb + new_mb + CKPT_SLACK_MB
        rss, err = median(procs, "rss_mb"), _failed(procs)
        rows.append(
            {"command": f"--checkpoint {CKPT_MODEL}.{key} --out", "wall_s": median(procs, "wall"), "rss_mb": rss,
             "ckpt_mb": ckpt_mb, "new_mb": new_mb, "limit_mb": limit, "error": err, "ref_rss_mb": base_rss,
             "target": f"<= ckpt {ckpt_mb:.0f} + new {new_mb:.0f} + {CKPT_SLACK_MB:.0f} MB",
             "result": verdict(not err and rss <= limit), "runs": raw(procs)}
        )  # fmt: skip
    return rows


# -- report -------------------------------------------------------------------------------------------------------
def render(meta: dict[str, Any], models: list[dict[str, Any]], extras: list[dict[str, Any]]) -> str:
    lines = [
        f"redistribute at {meta['commit']} ({meta['repo']}), python {meta['python_version']}, {meta['cpus']} CPUs; "
        f"median of {meta['repeats']} alternating rounds; {meta['date']}; 1-minute load average "
        f"{meta['load_before']:.1f} before, {meta['load_after']:.1f} after",
        "",
        "| model | command | wall s | peak RSS MB | wall / bare | RSS / bare | target | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in models:
        if r["command"] == "bare":
            lines.append(f"| {r['model']} | bare create | {r['wall_s']:.2f} | {r['rss_mb']:.0f} | | | | reference |")
            continue
        if r["command"] == "bare_exit":
            r = {**r, "command": "bare create, os._exit"}
        ratios = f"{r['wall_ratio']:.2f}x | {r['rss_ratio']:.2f}x"
        target = f"<= {r['target']}x" if r["target"] is not None else "-"
        result = r.get("result", "-") + (f" ({r['error']})" if r["error"] else "")
        lines.append(
            f"| {r['model']} | {r['command']} | {r['wall_s']:.2f} | {r['rss_mb']:.0f} | {ratios} | {target} | {result} |"
        )
    if extras:
        lines += ["", "| command | wall s | peak RSS MB | reference | target | result |", "|---|---|---|---|---|---|"]
    for r in extras:
        if "wall_s" not in r:
            lines.append(f"| {r['command']} | | | | | {r['error']} |")
            continue
        ref = ""
        if "ref_wall_s" in r:
            ref = (f"import timm: {r['ref_wall_s']:.2f} s, {r['ref_rss_mb']:.0f} MB "
                   f"(ratios {r['wall_ratio']:.2f}x wall, {r['rss_ratio']:.2f}x RSS)")  # fmt: skip
            if "floor_rss_mb" in r:
                ref += (f"; ended with os._exit: {r['floor_wall_s']:.2f} s, {r['floor_rss_mb']:.0f} MB (ratios "
                        f"{r['wall_s'] / r['floor_wall_s']:.2f}x, {r['rss_mb'] / r['floor_rss_mb']:.2f}x)")  # fmt: skip
        elif "limit_mb" in r:
            ref = (f"limit {r['limit_mb']:.0f} MB; `import timm` alone (no teardown) {r['ref_rss_mb']:.0f} MB, "
                   f"this run {r['rss_mb'] - r['ref_rss_mb']:.0f} MB above it")  # fmt: skip
        result = r["result"] + (f" ({r['error']})" if r["error"] else "")
        lines.append(f"| {r['command']} | {r['wall_s']:.2f} | {r['rss_mb']:.0f} | {ref} | {r['target']} | {result} |")
    every = [r for r in models + extras if "result" in r]
    n_pass = sum(r["result"] == "PASS" for r in every)
    lines += ["", f"**Summary:** {n_pass}/{len(every)} targets met."]
    return "\n".join(lines) + "\n"


def _commit(repo: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "redistribute"],
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "?"
    except OSError:
        return "?"


def _current_rss_mb() -> float:
    """This process's resident set now (``VmRSS``), MiB; 0 where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "torch" in sys.modules or _current_rss_mb() > 200:  # a child's peak RSS would start from ours: start afresh
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated timm model names")
    ap.add_argument("--repeats", type=int, default=5, help="alternating rounds; medians are reported (default 5)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the children (default: this one)")
    ap.add_argument("--repo", type=Path, default=HERE.parent, help="checkout whose redistribute/ is measured")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per child process before it is killed")
    ap.add_argument("--no-extras", action="store_true", help="only the per-model table (no --help, xxlarge, ckpt)")
    ap.add_argument("--write", action="store_true", help="also write results/pipeline_e2e.md (and .json)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "pipeline_e2e.md", help="file for --write")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    runner = Runner(python=args.python, repo=args.repo.resolve())
    meta = {
        "repo": str(runner.repo), "commit": _commit(runner.repo), "python": args.python,
        "python_version": platform.python_version(), "cpus": os.cpu_count(), "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "platform": platform.platform(),
        "load_before": os.getloadavg()[0],
    }  # fmt: skip
    print(f"children: {args.python} with PYTHONPATH={runner.repo} ({meta['commit']})", flush=True)
    # the package's bytecode, as an installed package has it (pip compiles at install; timm and torch have theirs):
    # without it, where PYTHONDONTWRITEBYTECODE is set, every redistribute child would compile our modules again
    subprocess.run([args.python, "-m", "compileall", "-q", str(runner.repo / "redistribute")], check=True)
    rows: list[dict[str, Any]] = []
    extras: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="redistribute-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            runs = alternate(runner, commands(name, lambda: tempfile.mkdtemp(dir=tmp)), args.repeats, args.timeout)
            rows += model_rows(name, runs)
            for r in rows[-4:]:
                print(f"  {name:<18}{r['command']:<8} wall {r['wall_s']:7.2f} s  RSS {r['rss_mb']:7.0f} MB  "
                      f"{r.get('result', '')} {r['error']}", flush=True)  # fmt: skip
        if not args.no_extras:
            extras += startup_rows(runner, args.repeats, args.timeout)
            extras.append(xxl_row(runner, args.repeats, args.timeout))
            extras += checkpoint_rows(runner, args.repeats, args.timeout, tmp)
    meta["load_after"] = os.getloadavg()[0]
    text = render(meta, rows, extras)
    print("\n" + text)
    if args.write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("# End-to-end process figures (`benchmarks/pipeline_e2e.py`)\n\n" + text)
        args.out.with_suffix(".json").write_text(
            json.dumps({"meta": meta, "models": rows, "extras": extras}, indent=1) + "\n"
        )
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
