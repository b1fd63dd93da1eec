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
    classifier = _classifier(model)
    clf_name, clf_in = _input_layout(classifier, traced, w) if classifier is not None else (None, None)
    if clf_in is not None and isinstance(head, int) and _size(clf_in) == head:
        out["head_hidden_size"] = seg_map(clf_in)
    if "head_hidden_size" not in out and isinstance(head, int) and head == num_features and "num_features" in out:
        out["head_hidden_size"] = out["num_features"]
    trunk = out.get("num_features")
    clf = seg_map(clf_in) if clf_in is not None else None
    heads = [seg_map(lay) for lay in _head_list_inputs(classifier, traced, w)]
    if heads:  # several heads reading several features (EfficientViM): the trunk width is their concatenation
        joined = tuple(seg for lay in heads for seg in lay)
        for attr in ("num_features", "head_hidden_size"):
            if attr not in out and getattr(model, attr, None) == _size(joined):
                out[attr] = joined
        trunk = out.get("num_features", trunk)
    _embed_dim_layouts(model, out, trunk, heads)
    parts = clf_name.split(".")[:-1] if clf_name else []
    for owner in (".".join(parts[:i]) for i in range(len(parts), 0, -1)):  # head.classifier, then head
        # timm's ClassifierHead / NormMlpClassifierHead / EfficientViT's head: their own widths, which
        # reset_classifier reads
        head_mod = traced.index.modules.get(owner)
        for attr, order in (("in_features", (trunk, clf)), ("num_features", (clf, trunk)), ("hidden_size", (clf,))):
            value = getattr(head_mod, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                lay = next((lay for lay in order if lay is not None and _size(lay) == value), None)
                if lay is not None:
                    out[f"{owner}.{attr}"] = lay
    return out


def _embed_dim_layouts(model: nn.Module, out: dict[str, Layout], trunk: Layout | None, heads: list[Layout]) -> None:
    """``embed_dim``, which ViT-style models' ``reset_classifier`` reads: an int equal to the trunk width, or a
    tuple of stage widths whose last entry is the trunk width (LeViT) or whose entries are the widths the
    heads read, in order (EfficientViM)."""
    dim = getattr(model, "embed_dim", None)
    if isinstance(dim, int) and not isinstance(dim, bool):
        if trunk is not None and _size(trunk) == dim:
            out["embed_dim"] = trunk
        return
    if not (isinstance(dim, tuple | list) and dim and all(isinstance(d, int) for d in dim)):
        return
    if len(heads) >= len(dim) and all(_size(lay) == d for lay, d in zip(heads, dim, strict=False)):
        for i, lay in enumerate(heads[: len(dim)]):
            out[f"embed_dim[{i}]"] = lay
    elif trunk is not None and _size(trunk) == dim[-1]:
        out[f"embed_dim[{len(dim) - 1}]"] = trunk


def _size(layout: Layout) -> int:
    return sum(s.size for s in layout)


def _classifier(model: nn.Module) -> nn.Module | None:
    """timm's classifier (``get_classifier()``), or None."""
    get_classifier = getattr(model, "get_classifier", None)
    try:
        clf = get_classifier() if callable(get_classifier) else None
    except Exception:  # metadata is best effort
        return None
    return clf if isinstance(clf, nn.Module) else None


def _input_layout(module: nn.Module, traced: TracedModel, w: Walker) -> tuple[str | None, Layout | None]:
    """A module's name and the (walker's) layout of its input channels at its first call."""
    name = traced.index.paths.get(module)
    use = next((u for u in w.uses if u.module == name and u.in_layout is not None), None)
    return name, (use.in_layout if use is not None else None)


def _head_list_inputs(clf: nn.Module | None, traced: TracedModel, w: Walker) -> list[Layout]:
    """The input layouts of a classifier that is a list of linear heads (``nn.ModuleList``), in order; [] for any
    other classifier or when one head's input is unknown."""
    if not isinstance(clf, nn.ModuleList) or not all(isinstance(m, nn.Linear) for m in clf):
        return []
    layouts = [_input_layout(m, traced, w)[1] for m in clf]
    return [lay for lay in layouts if lay is not None] if all(lay is not None for lay in layouts) else []
