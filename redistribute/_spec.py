"""The spec: a versioned JSON file from which anyone can rebuild a redistributed model.

It records the source, the template and matching settings, the costs, and the width of every non-fixed group
keyed by the group's stable signature (its producer layer names). :func:`load` rebuilds the model; a spec that
does not fit its source (renamed layers, another timm version) is refused with the difference.

Example:
    >>> import timm, redistribute
    >>> m = timm.create_model("test_resnet")
    >>> p = redistribute.plan(m, "a", input_size=(3, 64, 64), source="timm:test_resnet")
    >>> spec = spec_from_plan(p)
    >>> rebuilt = load(spec)
    >>> [g.width for g in redistribute.trace(rebuilt, (3, 64, 64)).groups] == list(p.widths.values())
    True
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from torch import nn

from ._errors import SpecError, SpecMismatchError
from ._graph import trace
from ._io import atomic_write_text
from ._plan import Plan, plan_from_widths
from ._source import load_model

__all__ = ["FORMAT", "VERSION", "spec_from_plan", "save_spec", "read_spec", "load", "spec_to_plan"]

FORMAT = "redistribute.spec"
VERSION = 1


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(float(x), 6)


def spec_from_plan(plan: Plan, source: str | None = None, model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The spec of ``plan`` as a JSON-ready dict (deterministic: same plan, same bytes)."""
    import timm
    import torch

    from . import __version__

    graph = plan.graph
    policies = sorted({(u.module, u.mode) for u in graph.uses if u.kind == "conv" and u.mode in ("count", "width")})
    return {
        "format": FORMAT,
        "version": VERSION,
        "source": source or plan.source,
        "model_kwargs": dict(model_kwargs or {}),
        "model_class": graph.model_class,
        "input_size": list(graph.input_shape[1:]),
        "template": plan.template,
        "match": plan.match,
        "k": _num(plan.k),
        "ratio": _num(plan.ratio),
        "divisor": plan.divisor,
        "scope": plan.scope,
        "tolerance": _num(plan.tolerance),
        "target": _num(plan.target),
        "cost": {
            "base": {"flops": plan.base_cost.flops, "params": plan.base_cost.params, "memory": plan.base_cost.memory},
            "new": {"flops": plan.cost.flops, "params": plan.cost.params, "memory": plan.cost.memory},
        },
        "grouped_convs": {name: ("group count kept" if mode == "count" else "group width kept") for name, mode in policies},
        "groups": [
            {"signature": g.signature, "base": g.width, "width": plan.widths[g.id]} for g in graph.groups if g.fixed is None
        ],
        "versions": {"redistribute": __version__, "timm": timm.__version__, "torch": torch.__version__.split("+")[0]},
    }


def save_spec(spec: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``spec`` as JSON, atomically."""
    atomic_write_text(path, json.dumps(spec, indent=2, sort_keys=True) + "\n")


def read_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a spec file (format and version)."""
    p = Path(path)
    if p.is_dir():
        p = p / "spec.json"
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec {str(p)!r}: {exc.strerror}. Hint: give the spec.json written by --out") from exc
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"spec {str(p)!r} is not JSON ({exc.msg} at line {exc.lineno}). Hint: give the spec.json written by --out") from exc
    validate_spec(spec, str(p))
    return spec  # type: ignore[no-any-return]


def validate_spec(spec: Any, where: str = "spec") -> None:
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise SpecError(f"{where} is not a redistribute spec (no \"format\": \"{FORMAT}\")")
    if spec.get("version") != VERSION:
        raise SpecError(f"{where} has format version {spec.get('version')!r}; this redistribute reads version {VERSION}")
    if not isinstance(spec.get("groups"), list):
        raise SpecError(f"{where} has no list of groups")


def spec_to_plan(spec: dict[str, Any], model: nn.Module) -> Plan:
    """Trace ``model`` and map the spec's widths onto its groups by signature."""
    validate_spec(spec)
    graph = trace(model, tuple(spec["input_size"]) if spec.get("input_size") else None)
    by_sig = {g.signature: g for g in graph.groups if g.fixed is None}
    wanted = {}
    for item in spec["groups"]:
        try:
            wanted[str(item["signature"])] = int(item["width"])
        except (KeyError, TypeError, ValueError):
            raise SpecError(f"spec group entry {item!r} needs a 'signature' and an integer 'width'") from None
    missing = sorted(set(wanted) - set(by_sig))
    extra = sorted(set(by_sig) - set(wanted))
    if missing or extra:
        diff = "; ".join(
            part
            for part in (
                f"{len(missing)} spec group(s) not in the model, first {missing[0]!r}" if missing else "",
                f"{len(extra)} model group(s) not in the spec, first {extra[0]!r}" if extra else "",
            )
            if part
        )
        raise SpecMismatchError(
            f"spec does not fit {type(model).__name__} ({diff}). Hint: rebuild with the same source and timm "
            f"{spec.get('versions', {}).get('timm', '?')}"
        )
    widths = {by_sig[sig].id: w for sig, w in wanted.items()}
    fields = {k: spec.get(k) for k in ("template", "match", "k", "ratio", "divisor", "scope", "tolerance", "target", "source")}
    fields = {k: v for k, v in fields.items() if v is not None}
    return plan_from_widths(graph, widths, **fields)


def load(spec: str | os.PathLike[str] | dict[str, Any], model: nn.Module | None = None, weights: str | os.PathLike[str] | None = None) -> nn.Module:
    """Rebuild the redistributed model described by ``spec``.

    Args:
        spec: A spec dict, a ``spec.json`` path, or the ``--out`` folder holding it.
        model: The base model; by default it is built from the spec's ``source``.
        weights: A ``.safetensors`` state dict of the redistributed model to load (strictly).

    Raises:
        SpecError: Unreadable spec, another format version.
        SpecMismatchError: The spec's groups do not fit the model.
        ConstraintError: A width breaks its group's constraint.
    """
    data = spec if isinstance(spec, dict) else read_spec(spec)
    if model is None:
        source = data.get("source")
        if not source:
            raise SpecError("spec has no 'source'; pass the base model: redistribute.load(spec, model=...)")
        model = load_model(str(source), **dict(data.get("model_kwargs") or {}))
    from ._surgery import apply_

    built = apply_(model, spec_to_plan(data, model))
    if weights is not None:
        from ._weights import load_weights_into

        load_weights_into(built, weights)
    return built
