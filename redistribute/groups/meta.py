"""The channel layouts behind timm's metadata: ``num_features``, ``head_hidden_size``, ``feature_info`` and the
classifier head's own width attributes, so surgery can set them to the real widths."""

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
    clf_name, clf_in = _classifier_input(model, traced, w)
    if clf_in is not None and isinstance(head, int) and _size(clf_in) == head:
        out["head_hidden_size"] = seg_map(clf_in)
    if "head_hidden_size" not in out and isinstance(head, int) and head == num_features and "num_features" in out:
        out["head_hidden_size"] = out["num_features"]
    owner = clf_name.rpartition(".")[0] if clf_name else ""
    if owner:  # timm's ClassifierHead / NormMlpClassifierHead: their own widths, which reset_classifier reads
        trunk = out.get("num_features")
        clf = seg_map(clf_in) if clf_in is not None else None
        head_mod = traced.index.modules.get(owner)
        for attr, order in (("in_features", (trunk, clf)), ("num_features", (clf, trunk)), ("hidden_size", (clf,))):
            value = getattr(head_mod, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                lay = next((lay for lay in order if lay is not None and _size(lay) == value), None)
                if lay is not None:
                    out[f"{owner}.{attr}"] = lay
    return out


def _size(layout: Layout) -> int:
    return sum(s.size for s in layout)


def _classifier_input(model: nn.Module, traced: TracedModel, w: Walker) -> tuple[str | None, Layout | None]:
    """The name of timm's classifier (``get_classifier()``) and the (walker's) layout of its input channels."""
    get_classifier = getattr(model, "get_classifier", None)
    if not callable(get_classifier):
        return None, None
    try:
        clf = get_classifier()
    except Exception:  # metadata is best effort
        return None, None
    clf_name = traced.index.paths.get(clf) if isinstance(clf, nn.Module) else None
    use = next((u for u in w.uses if u.module == clf_name and u.in_layout is not None), None)
    return clf_name, (use.in_layout if use is not None else None)
