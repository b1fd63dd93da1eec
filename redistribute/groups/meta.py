"""The channel layouts behind timm's metadata (``num_features``, ``head_hidden_size``, ``feature_info``), so surgery
can set them to the real widths."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..tracing.tracer import TracedModel
from .spaces import Layout
from .walk import Walker

__all__ = ["meta_layouts"]


def _channel_layout(dims: Any, size: int) -> Layout | None:
    """The layout of the channel dim (1, or last for channels-last) of ``size`` channels; a dim that carries a
    channel group wins over a spatial one of the same size (a channels-last 16x16 map with 16 channels)."""
    if not isinstance(dims, tuple):
        return None
    found = [dims[d] for d in (1, len(dims) - 1) if 0 <= d < len(dims) and sum(s.size for s in dims[d]) == size]
    return next((lay for lay in found if any(s.space is not None for s in lay)), found[0] if found else None)


def meta_layouts(model: nn.Module, traced: TracedModel, w: Walker, seg_map: Any) -> dict[str, Layout]:
    out: dict[str, Layout] = {}
    num_features = getattr(model, "num_features", None)
    node = traced.marks.get("features")
    if isinstance(num_features, int) and node is not None:
        lay = _channel_layout(w.dims(node), num_features)
        if lay is not None:
            out["num_features"] = seg_map(lay)
    for i, info in enumerate(getattr(model, "feature_info", None) or []):
        if not isinstance(info, dict) or "module" not in info:
            continue
        node = traced.module_outputs.get(str(info["module"]))
        lay = _channel_layout(w.dims(node), int(info.get("num_chs", -1))) if node is not None else None
        if lay is not None:
            out[f"feature_info.{i}"] = seg_map(lay)
    head = getattr(model, "head_hidden_size", None)
    get_classifier = getattr(model, "get_classifier", None)
    if isinstance(head, int) and callable(get_classifier):
        try:
            clf = get_classifier()
        except Exception:  # metadata is best effort
            clf = None
        clf_name = traced.index.paths.get(clf) if isinstance(clf, nn.Module) else None
        use = next((u for u in w.uses if u.module == clf_name and u.in_layout is not None), None)
        if use is not None and sum(s.size for s in use.in_layout) == head:  # type: ignore[union-attr]
            out["head_hidden_size"] = seg_map(use.in_layout)
    if "head_hidden_size" not in out and isinstance(head, int) and head == num_features and "num_features" in out:
        out["head_hidden_size"] = out["num_features"]
    return out
