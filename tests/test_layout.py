"""The package's shape: one subpackage per stage, imports one way, no cycles, no module over 400 lines.

The import graph is read from the source (``ast``), so it counts every import: module level, inside functions
and under ``TYPE_CHECKING``. A package's lazy re-exports (``_EXPORTS`` in its ``__init__``) are not imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "redistribute"
MAX_LINES = 400

# Stage rank: a module may import modules of its own rank or lower, never higher.
# cli -> study/training -> surgery/spec -> planning -> groups -> tracing; leaves (errors, io, ...) at 0.
RANKS = {
    "tracing": 1,
    "groups": 2,
    "planning": 3,
    "surgery": 4,
    "spec": 4,
    "timm": 4,
    "api": 4,
    "study": 5,
    "training": 5,
    "cli": 6,
    "__main__": 7,
}
LEAVES = {"errors", "io", "source", "skeleton", "version", "_lazy"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every ``redistribute`` module that ``name`` imports (resolved to module files where they exist)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "redistribute")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "redistribute":
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & known
            out.update(subs or {target})
    out.discard(name)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _rank(name: str) -> float | None:
    parts = name.split(".")
    if len(parts) == 1:
        return None  # the package's own __init__: imports everything, only under TYPE_CHECKING
    return 0 if parts[1] in LEAVES else RANKS[parts[1]]


def test_every_module_has_a_rank() -> None:
    unranked = [n for n in _modules() if n != "redistribute" and n.split(".")[1] not in RANKS.keys() | LEAVES]
    assert not unranked, f"place these modules in a stage (RANKS) or among the leaves: {unranked}"


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycles.append([*stack[stack.index(m) :], m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_imports_go_one_way() -> None:
    upward = []
    for name, deps in _graph().items():
        mine = _rank(name)
        if mine is None:
            continue
        upward += [f"{name} -> {d}" for d in sorted(deps) if (r := _rank(d)) is not None and r > mine]
    assert not upward, (
        "imports against the stage order (cli -> study/training -> surgery -> planning -> groups -> tracing): "
        + ", ".join(upward)
    )


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_size(name: str) -> None:
    lines = _modules()[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines (at most {MAX_LINES}): split it along an idea"


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above would fail on a planted cycle and on tracing importing from cli (guards the parser)."""
    fake = tmp_path / "redistribute"
    (fake / "tracing").mkdir(parents=True)
    (fake / "cli").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "tracing" / "__init__.py").write_text("")
    (fake / "cli" / "__init__.py").write_text("")
    (fake / "tracing" / "a.py").write_text("from ..cli.b import x\n")
    (fake / "cli" / "b.py").write_text("def f():\n    from ..tracing import a\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    with pytest.raises(AssertionError, match=r"redistribute\.tracing\.a -> redistribute\.cli\.b"):
        test_no_import_cycles()
    with pytest.raises(AssertionError, match=r"redistribute\.tracing\.a -> redistribute\.cli\.b"):
        test_imports_go_one_way()
