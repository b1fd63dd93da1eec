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
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from .errors import SpecError, SpecMismatchError, UsageError
from .groups.graph import ChannelGraph, trace
from .io import atomic_paths, atomic_write_text
from .planning.planner import MAX_WIDTH, Plan, plan_from_widths
from .source import load_model

__all__ = [
    "FORMAT",
    "VERSION",
    "load",
    "read_spec",
    "save_result",
    "save_spec",
    "spec_from_plan",
    "spec_json",
    "spec_to_plan",
]

FORMAT = "redistribute.spec"
VERSION = 1


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(float(x), 6)


def spec_from_plan(plan: Plan, source: str | None = None, model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The spec of ``plan`` as a JSON-ready dict (deterministic: same plan, same bytes)."""
    import timm
    import torch

    from .version import __version__

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
        "grouped_convs": {
            name: ("group count kept" if mode == "count" else "group width kept") for name, mode in policies
        },
        "groups": [
            {"signature": g.signature, "base": g.width, "width": plan.widths[g.id]}
            for g in graph.groups
            if g.fixed is None
        ],
        "versions": {"redistribute": __version__, "timm": timm.__version__, "torch": torch.__version__.split("+")[0]},
    }


def spec_json(spec: dict[str, Any]) -> str:
    """The text of a spec file: sorted keys, two-space indent, a final newline (same spec, same bytes).

    Raises:
        SpecError: A value is not JSON (a tensor, ``NaN``, an object): nothing is written.
    """
    try:
        return json.dumps(spec, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise SpecError(
            f"spec cannot be written as JSON: {exc}. Hint: build it with redistribute.spec_from_plan"
        ) from exc


def save_spec(spec: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``spec`` as JSON, atomically: ``path`` holds the old file or the new one, never a partial file.

    Raises:
        SpecError: ``spec`` holds a value that is not JSON.
        OutputError: ``path`` cannot be written.
    """
    atomic_write_text(path, spec_json(spec))


def save_result(folder: str | os.PathLike[str], spec: dict[str, Any], model: nn.Module) -> dict[str, Path]:
    """Write ``spec.json`` and ``weights.safetensors`` into ``folder`` as one atomic step.

    Both files are written in full before either replaces an older one, and Ctrl-C or ``SIGTERM`` cannot cut the
    renames apart (see :mod:`redistribute.io`), so the folder holds the old pair or the new pair.

    Returns:
        ``{"spec": path, "weights": path}``.

    Raises:
        SpecError: ``spec`` holds a value that is not JSON (nothing is written).
        OutputError: The folder cannot be written (nothing is replaced).
    """
    from .surgery.weights import write_weights

    out = Path(folder)
    text = spec_json(spec)
    paths = {"spec": out / "spec.json", "weights": out / "weights.safetensors"}
    with atomic_paths([paths["spec"], paths["weights"]]) as (spec_tmp, weights_tmp):
        spec_tmp.write_text(text, encoding="utf-8")
        write_weights(model, weights_tmp)
    return paths


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a spec file (format and version)."""
    p = Path(path)
    if p.is_dir():
        p = p / "spec.json"
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(
            f"cannot read spec {str(p)!r}: {exc.strerror}. Hint: give the spec.json written by --out"
        ) from exc
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"spec {str(p)!r} is not JSON (not UTF-8 text). Hint: give the spec.json written by --out"
        ) from exc
    try:
        spec = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"spec {str(p)!r} is not JSON ({exc.msg} at line {exc.lineno}). Hint: give the spec.json written by --out"
        ) from exc
    except ValueError as exc:  # NaN or Infinity: Python writes them, JSON has no such numbers
        raise SpecError(f"spec {str(p)!r} is not JSON ({exc}). Hint: give the spec.json written by --out") from exc
    validate_spec(spec, str(p))
    return spec  # type: ignore[no-any-return]


def _whole(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate_spec(spec: Any, where: str = "spec") -> None:
    """Check a spec's format, version and field types; the message names the first bad field.

    Raises:
        SpecError: Not a spec, another version, or a field of the wrong type or range.
    """
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise SpecError(f'{where} is not a redistribute spec (no "format": "{FORMAT}")')
    if spec.get("version") != VERSION or isinstance(spec.get("version"), bool):
        raise SpecError(
            f"{where} has format version {spec.get('version')!r}; this redistribute reads version {VERSION}"
        )
    if not isinstance(spec.get("groups"), list):
        raise SpecError(f"{where} has no list of groups")
    size = spec.get("input_size")
    if size is not None and not (isinstance(size, list) and size and all(_whole(s) and s > 0 for s in size)):
        raise SpecError(
            f"{where} has input_size {size!r}; it must be a list of positive integers such as [3, 224, 224]"
        )
    for key in ("source", "template", "match", "scope"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise SpecError(f"{where} has {key} {spec[key]!r}; it must be a string")
    if spec.get("divisor") is not None and not (_whole(spec["divisor"]) and spec["divisor"] >= 1):
        raise SpecError(f"{where} has divisor {spec['divisor']!r}; it must be a whole number >= 1")
    for key in ("k", "ratio", "tolerance", "target"):
        if spec.get(key) is not None and not _number(spec[key]):
            raise SpecError(f"{where} has {key} {spec[key]!r}; it must be a number or null")
    for key in ("model_kwargs", "versions"):
        if not isinstance(spec.get(key) or {}, dict):
            raise SpecError(f"{where} has {key} {spec[key]!r}; it must be a JSON object")
    seen: set[str] = set()
    for item in spec["groups"]:
        if not (isinstance(item, dict) and isinstance(item.get("signature"), str) and _whole(item.get("width"))):
            raise SpecError(f"spec group entry {item!r} needs a 'signature' and an integer 'width'")
        if item["width"] > MAX_WIDTH:
            raise SpecError(
                f"spec group {item['signature']!r} has width {item['width']}, above {MAX_WIDTH}: the spec is corrupt"
            )
        if item["signature"] in seen:
            raise SpecError(f"spec lists group {item['signature']!r} twice")
        seen.add(item["signature"])


#: Why a headless model (``num_classes=0``) fixes the group its classifier used to read.
_OUTPUT = "model output"


def _headless(graph: ChannelGraph, wanted: dict[str, int]) -> ChannelGraph:
    """``graph`` with the spec's groups that are fixed only as the model's output set free again.

    Without its classifier (timm's ``num_classes=0``, a feature extractor) the model returns the last features, so
    the trace fixes their group as the model output; the spec, made with a classifier, sets its width. The built
    model then returns features at the new width (timm's ``num_features`` follows).
    """
    if not any(g.fixed == _OUTPUT and g.signature in wanted for g in graph.groups):
        return graph
    groups = tuple(replace(g, fixed=None) if g.fixed == _OUTPUT and g.signature in wanted else g for g in graph.groups)
    # the output now follows a free group's width: the rebuild check runs the forward but has no base shape to keep
    return replace(graph, groups=groups, output_shapes=())


def spec_to_plan(spec: dict[str, Any], model: nn.Module) -> Plan:
    """Trace ``model`` and map the spec's widths onto its groups by signature."""
    validate_spec(spec)
    graph = trace(model, tuple(spec["input_size"]) if spec.get("input_size") else None)
    wanted = {str(item["signature"]): int(item["width"]) for item in spec["groups"]}
    graph = _headless(graph, wanted)
    by_sig = {g.signature: g for g in graph.groups if g.fixed is None}
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
    fields = {
        k: spec.get(k) for k in ("template", "match", "k", "ratio", "divisor", "scope", "tolerance", "target", "source")
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    return plan_from_widths(graph, widths, **fields)


def load(
    spec: str | os.PathLike[str] | dict[str, Any],
    model: nn.Module | None = None,
    weights: str | os.PathLike[str] | None = None,
    inplace: bool = False,
    **model_kwargs: Any,
) -> nn.Module:
    """Rebuild the redistributed model described by ``spec``.

    Args:
        spec: A spec dict, a ``spec.json`` path, or the ``--out`` folder holding it.
        model: The base model; by default a skeleton of it is built from the spec's ``source`` (large tensors on
            the meta device) and only the result is allocated and initialised. It is not modified unless
            ``inplace`` is set. A timm model built with ``num_classes=0`` (no classifier) fits too.
        weights: The redistributed model's weights, loaded strictly: ``.safetensors`` (what ``--out`` writes), or
            a PyTorch file (``.pth``, ``.pt``, ``.bin``, a timm ``.pth.tar`` training checkpoint).
        inplace: Resize the given ``model`` itself (saves a copy) instead of a copy of it.
        **model_kwargs: Passed to the source's factory over the spec's own ``model_kwargs`` when ``model`` is not
            given, e.g. ``num_classes=10`` (a new classifier) or ``num_classes=0`` (none).

    Raises:
        SpecError: Unreadable spec, another format version.
        SpecMismatchError: The spec's groups do not fit the model.
        ConstraintError: A width breaks its group's constraint.
        CheckpointError: ``weights`` cannot be read or do not fit (the message names the formats and the key).
        UsageError: ``model_kwargs`` given together with ``model``.

    Example:
        >>> head = load("out/resnet50_d", num_classes=10)  # doctest: +SKIP
        >>> features = load("out/resnet50_d", model=timm.create_model("resnet50", num_classes=0))  # doctest: +SKIP
    """
    if not isinstance(spec, (dict, str, os.PathLike)):
        raise SpecError(f"spec {spec!r} is neither a spec dict nor a path. Hint: give the spec.json written by --out")
    data = spec if isinstance(spec, dict) else read_spec(spec)
    validate_spec(data)
    if model is None:
        source = data.get("source")
        if not source:
            raise SpecError("spec has no 'source'; pass the base model: redistribute.load(spec, model=...)")
        kwargs = {**dict(data.get("model_kwargs") or {}), **model_kwargs}
        return _build_from_source(str(source), kwargs, data, weights)
    elif model_kwargs:
        raise UsageError(
            f"load() got {', '.join(model_kwargs)} and a model: they are for building the base. Hint: build the "
            "model with them, or drop model="
        )
    from .surgery.rebuild import apply, apply_

    plan = spec_to_plan(data, model)
    built = apply_(model, plan) if inplace else apply(model, plan)
    if weights is not None:
        _load_weights(built, weights)
    return built


def _build_from_source(source: str, kwargs: dict[str, Any], data: dict[str, Any], weights: Any) -> nn.Module:
    """The model a spec describes, built from its source without building the base: surgery on a skeleton, each
    new tensor initialised by its layer (:func:`redistribute.api.build`), then the weights, if any."""
    from .api import build

    base = load_model(source, meta=True, **kwargs)
    built = build(base, spec_to_plan(data, base), source=source, model_kwargs=kwargs)
    if weights is not None:
        _load_weights(built, weights)
    return built


#: Weight files :func:`load` reads: safetensors, and what ``torch.save`` and timm's ``train.py`` write.
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".pth.tar", ".tar", ".ckpt")


def _load_weights(model: nn.Module, weights: str | os.PathLike[str]) -> None:
    from .errors import CheckpointError

    name = Path(weights).name.lower()
    if name.endswith(".safetensors"):
        from .surgery.weights import load_weights_into

        load_weights_into(model, weights)
    elif name.endswith(WEIGHT_SUFFIXES):
        from .surgery.checkpoint import load_checkpoint

        load_checkpoint(model, weights)
    else:
        raise CheckpointError(
            f"weights {str(weights)!r} are not in a format load() reads. Hint: pass one of "
            f"{', '.join(WEIGHT_SUFFIXES)} (a state dict or a timm checkpoint)"
        )
