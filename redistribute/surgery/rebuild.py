"""Rebuild a model at a plan's widths: choose channels per group, resize every layer, fix timm metadata.

Each group's channels are chosen *once* and applied to every producer, consumer and member of the group, so the
layers stay consistent across residual adds, concatenations and depthwise convs. Shrinking keeps the channels
with the largest importance (``l1`` or ``l2`` magnitude of the producers' output weights, or ``bn`` scale);
growing keeps every old channel and appends new ones (see :mod:`redistribute.surgery.handlers`).

The rebuilt model is the same classes as the original, with ``in_channels``/``num_features``-style attributes and
timm's ``feature_info``, ``num_features`` and ``head_hidden_size`` matching the real widths.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping

import torch
from torch import nn

from ..errors import ConstraintError, UsageError
from ..groups.attention import HEAD_SPECS
from ..groups.graph import ChannelGraph
from ..groups.spaces import Layout
from ..groups.uses import LayerUse
from ..planning.planner import IMPORTANCE, Plan, check_options
from ..tracing.behaviour import lookup
from ..tracing.clone import copy_sharing_tensors, unshare
from ..tracing.gcpause import gc_paused
from .attention import resize_heads
from .checkpoint import assign_state_dict, check_state_dict, read_state_dict
from .handlers import HANDLERS, forget_prepared, resize_norm_like, take
from .verify import verify

__all__ = ["IMPORTANCE", "apply", "apply_", "channel_normalized_groups", "channel_scores", "select_channels"]

_logger = logging.getLogger(__name__)


def _score_sources(graph: ChannelGraph) -> dict[int, list[LayerUse]]:
    """The uses whose output channels are exactly one group: the layers that score that group's channels."""
    sources: dict[int, list[LayerUse]] = {}
    for u in graph.uses:
        lay = u.out_layout
        if lay is not None and len(lay) == 1 and lay[0].space is not None and u.kind in ("conv", "linear", "norm"):
            sources.setdefault(lay[0].space, []).append(u)
        elif lay and lay[0].space is not None and u.kind in ("conv", "linear") and set(lay) == {lay[0]}:
            sources.setdefault(lay[0].space, []).append(u)  # copies of one group: attention heads, a GLU's halves
    return sources


def _score(modules: Mapping[str, nn.Module], width: int, uses: list[LayerUse], importance: str) -> torch.Tensor:
    score = torch.zeros(width, dtype=torch.float64)
    for u in uses:
        if importance == "bn" and u.kind == "norm":
            if isinstance(modules[u.module], nn.PReLU):  # slopes, not scales
                continue
            w = getattr(modules[u.module], "weight", None)
            if w is not None and w.shape[0] == width and not w.is_meta:
                score += w.detach().abs().double().cpu()
            continue
        if importance != "bn" and u.kind in ("conv", "linear"):
            m = modules[u.module]
            weight = getattr(m, "weight", None)
            if weight is None or weight.is_meta:  # a skeleton's weights have no values: they are initialised afresh
                continue
            w = weight.detach()
            if getattr(m, "transposed", False):
                w = w.transpose(0, 1)
            lay = u.out_layout or ()
            if len(lay) == 1 and lay[0].repeat > 1 and w.shape[0] == width * lay[0].repeat:
                w = w.reshape(width, -1)  # each channel's rows in a row (a depthwise conv's channel multiplier)
            elif w.shape[0] != width and w.shape[0] % width == 0:  # copies of the group: score per copy, summed
                w = w.reshape(w.shape[0] // width, width, -1).transpose(0, 1)
            if w.shape[0] != width:
                continue
            flat = w.reshape(width, -1)  # a reduction in the weight's own dtype: no float64 copy of big layers
            norm = _l1_rows(flat) if importance == "l1" else torch.linalg.vector_norm(flat, ord=2, dim=1)
            s = norm.double().cpu()
            score += s / s.mean().clamp_min(1e-12)
    return score


def _l1_rows(flat: torch.Tensor, block: int = 1 << 20) -> torch.Tensor:
    """Row-wise L1 norm. torch's CPU ``vector_norm(ord=1)`` is 5-10x slower than ``abs().sum()``, which needs a
    temporary copy: rows go in blocks of about ``block`` elements, so a 400 MB VGG layer needs 4 MB at a time."""
    rows = max(1, block // max(1, flat.shape[1]))
    if rows >= flat.shape[0]:
        return flat.abs().sum(1)
    return torch.cat([part.abs().sum(1) for part in flat.split(rows)])


def _choose(score: torch.Tensor, new: int, chunks: int, block: int) -> torch.Tensor:
    """Old channel per new channel (``-1``: new), chunk- and block-aware, in the original order."""
    old = score.numel()
    if block > 1:  # whole blocks (a grouped conv keeping its group width)
        blocks = score.view(old // block, block).sum(1)
        keep_blocks = min(new // block, blocks.numel())
        chosen = torch.sort(torch.topk(blocks, keep_blocks).indices).values
        idx = (chosen.view(-1, 1) * block + torch.arange(block)).flatten()
        return torch.cat([idx, torch.full((new - idx.numel(),), -1, dtype=torch.long)])
    per_old, per_new = old // chunks, new // chunks
    parts = []
    for c in range(chunks):
        s = score[c * per_old : (c + 1) * per_old]
        keep = min(per_new, per_old)
        chosen = torch.sort(torch.topk(s, keep).indices).values + c * per_old
        parts.append(torch.cat([chosen, torch.full((per_new - keep,), -1, dtype=torch.long)]))
    return torch.cat(parts)


def channel_scores(model: nn.Module, graph: ChannelGraph, importance: str = "l1") -> dict[int, torch.Tensor]:
    """Per-channel importance of every group (``float64``, one score per channel), as shrinking uses it."""
    check_options(importance=importance)
    sources = _score_sources(graph)
    modules = _by_name(model)
    return {g.id: _score(modules, g.width, sources.get(g.id, []), importance) for g in graph.groups}


def _by_name(model: nn.Module) -> dict[str, nn.Module]:
    """Every module by qualified name, aliases included (``get_submodule`` walks ``getattr`` on each call)."""
    return dict(model.named_modules(remove_duplicate=False))


def select_channels(
    model: nn.Module,
    plan: Plan,
    importance: str = "l1",
    scores: Mapping[int, torch.Tensor] | None = None,
    modules: Mapping[str, nn.Module] | None = None,
) -> dict[int, torch.Tensor]:
    """For every group whose width changes, the old channel kept at each new position (``-1`` = new).

    ``scores`` (from :func:`channel_scores`, same ``importance``) saves scoring again when the caller has them;
    ``modules`` (``model``'s modules by name, aliases included) saves walking the model for them.
    """
    check_options(importance=importance)
    graph = plan.graph
    modules = modules if modules is not None else (_by_name(model) if scores is None else {})
    maps: dict[int, torch.Tensor] = {}
    sources = _score_sources(graph) if scores is None else {}
    order = sorted(graph.groups, key=lambda g: (g.tie is not None, g.id))
    for g in order:
        new = plan.widths[g.id]
        if new == g.width:
            continue
        if g.fixed is not None:
            raise ConstraintError(f"group g{g.id} ({g.signature}) is fixed ({g.fixed}) but the plan sets width {new}")
        chunks = g.multiple if g.multiple > 1 else 1
        if new % max(g.block, 1) or new % chunks:
            raise ConstraintError(
                f"width {new} of group g{g.id} ({g.signature}) breaks its constraint ({g.constraints}). "
                f"Hint: use a multiple of {max(g.block, chunks)}"
            )
        if g.tie is not None and g.block > 1 and g.tie[0] in maps:  # follow the source's block choice
            src = graph.groups[g.tie[0]]
            src_map = maps[g.tie[0]]
            src_blocks = src_map.view(-1, src.block)[:, 0]
            idx = []
            for b in src_blocks.tolist():
                base = (b // src.block) * g.block if b >= 0 else -1
                idx.extend(range(base, base + g.block) if base >= 0 else [-1] * g.block)
            maps[g.id] = torch.tensor(idx[:new] + [-1] * max(0, new - len(idx)), dtype=torch.long)
            continue
        score = scores[g.id] if scores is not None else _score(modules, g.width, sources.get(g.id, []), importance)
        maps[g.id] = _choose(score, new, chunks, g.block)
    return maps


def _expand(layout: Layout | None, maps: Mapping[int, torch.Tensor]) -> torch.Tensor | None:
    """Index map of a whole tensor dimension (``None`` when none of its groups change)."""
    if layout is None or not any(s.space in maps for s in layout):
        return None
    return _offset_fix(layout, maps)


def _offset_fix(layout: Layout, maps: Mapping[int, torch.Tensor]) -> torch.Tensor:
    if len(layout) == 1 and layout[0].repeat == 1 and layout[0].space in maps:  # the common case: one group
        return maps[layout[0].space]  # type: ignore[index]
    # One gather for the whole dimension: the segments' maps (an identity for unchanged ones, blocks of channels
    # for a flatten's repeats) are concatenated and shifted by their segment's offset in a few tensor ops, not
    # three per segment (a DenseNet concat has dozens of segments).
    bases, offsets, lengths, offset = [], [], [], 0
    for s in layout:
        base = maps[s.space] if s.space is not None and s.space in maps else _arange(s.width)
        if s.repeat > 1:
            rep = _arange(s.repeat)
            base = torch.where(base.view(-1, 1) >= 0, base.view(-1, 1) * s.repeat + rep, -1).flatten()
        bases.append(base)
        offsets.append(offset)
        lengths.append(base.numel())
        offset += s.size
    base = torch.cat(bases)
    shift = torch.tensor(offsets, dtype=torch.long).repeat_interleave(torch.tensor(lengths, dtype=torch.long))
    return torch.where(base >= 0, base + shift, base)


@functools.lru_cache(maxsize=512)
def _arange(n: int) -> torch.Tensor:
    """``torch.arange(n)``, shared: index maps are never modified in place."""
    return torch.arange(n)


def _handler(m: nn.Module) -> object:
    """The resize handler of ``m``'s nearest class along its MRO: a registered handler or an attention class (the
    search stops at a class that overrides ``forward`` without a rule; see :func:`~redistribute.tracing.behaviour.lookup`)."""
    table: dict[type, object] = {**{t: resize_heads for t in HEAD_SPECS}, **HANDLERS}
    return lookup(table, type(m), HEAD_SPECS)


def _resize_param(modules: Mapping[str, nn.Module], use: LayerUse, idx: torch.Tensor) -> None:
    owner_name, _, attr = use.module.rpartition(".")
    owner = modules[owner_name]
    t = getattr(owner, attr)
    fill: str | float = "mean" if isinstance(t, nn.Parameter) else 0.0
    new = take(t.data, use.dim, idx, fill)
    if isinstance(t, nn.Parameter):
        setattr(owner, attr, nn.Parameter(new, requires_grad=t.requires_grad))
    else:
        owner.register_buffer(attr, new, persistent=attr not in getattr(owner, "_non_persistent_buffers_set", set()))


def channel_normalized_groups(model: nn.Module, graph: ChannelGraph) -> dict[int, str]:
    """Groups that some op reduces or normalises *across* (a channel mean, sum, max or softmax, ``F.normalize``,
    LayerNorm, GroupNorm with several channels per group, a hand-written LayerNorm), mapped to that op's node.

    Found from the graph (:attr:`ChannelGraph.cross_channel`), not from module types: new channels change what
    such an op computes, so growing these groups cannot keep the function exactly (BatchNorm-style norms are per
    channel and do not have this problem). ``model`` is unused and kept for callers.
    """
    del model
    return dict(graph.cross_channel)


def _check_fits(model: nn.Module, modules: Mapping[str, nn.Module], plan: Plan) -> None:
    """Refuse a plan traced from another model: every layer it resizes must exist with its traced width."""
    source = plan.graph.model_class or "another model"
    for u in plan.graph.uses:
        if u.kind not in ("conv", "linear"):
            continue
        m = modules.get(u.module)
        width = getattr(m, "out_channels", getattr(m, "out_features", None))
        base = sum(s.size for s in u.out_layout or ())
        if m is None or (isinstance(width, int) and u.out_layout is not None and width != base):
            found = "is missing" if m is None else f"has {width} output channels, not {base}"
            raise UsageError(
                f"the plan was traced from {source}, and layer '{u.module}' of this {type(model).__name__} {found}. "
                "Hint: apply a plan to the model it was made for"
            )


def apply_(model: nn.Module, plan: Plan, importance: str = "l1") -> nn.Module:
    """Resize ``model`` *in place* to ``plan``'s widths and return it. See :func:`apply`.

    The result is checked (:func:`~redistribute.surgery.verify.verify`) before it is returned: an inconsistent
    layer, parameter count or output shape raises :class:`~redistribute.errors.RebuildError` naming it.
    """
    modules = _by_name(model)
    _check_fits(model, modules, plan)
    maps = select_channels(model, plan, importance, modules=modules)
    grown = [gid for gid, idx in maps.items() if bool((idx < 0).any())]
    if grown:
        normalized = channel_normalized_groups(model, plan.graph)
        for gid in grown:
            if gid in normalized:
                _logger.info(
                    "group g%d grows, and %r normalises across its channels: the new channels change its statistics, "
                    "so the grown model is not function-preserving there",
                    gid,
                    normalized[gid],
                )
    done: set[tuple[str, int]] = set()
    expanded: dict[Layout, torch.Tensor | None] = {}

    def expand(layout: Layout | None) -> torch.Tensor | None:
        """One index map per distinct layout: a DenseNet concat feeds a norm and a conv, built once."""
        if layout is None:
            return None
        if layout not in expanded:
            expanded[layout] = _expand(layout, maps)
        return expanded[layout]

    try:
        with torch.no_grad():
            for u in plan.graph.uses:
                key = (u.module, u.dim if u.kind == "param" else -1)
                if key in done or u.kind == "flops":
                    continue
                done.add(key)
                in_idx, out_idx = expand(u.in_layout), expand(u.out_layout)
                if in_idx is None and out_idx is None:
                    continue
                if u.kind == "param":
                    _resize_param(modules, u, out_idx)  # type: ignore[arg-type]
                    continue
                if u.kind == "attr":  # an int attribute that sizes a slice (GhostNet's oup): the new width
                    owner, _, attr = u.module.rpartition(".")
                    setattr(modules[owner], attr, int(out_idx.numel()))  # type: ignore[union-attr]
                    continue
                m = modules[u.module]
                handler = _handler(m) or (resize_norm_like if u.kind == "norm" else None)
                if handler is None:
                    raise ConstraintError(
                        f"no resize handler for layer '{u.module}' ({type(m).__name__}); its group must stay fixed"
                    )
                handler(m, u, in_idx, out_idx)  # type: ignore[operator]
    finally:
        forget_prepared()
    _fix_metadata(model, plan)
    verify(model, plan, modules)
    return model


@gc_paused
def apply(
    model: nn.Module,
    plan: Plan,
    importance: str = "l1",
    weights: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Return a copy of ``model`` rebuilt at ``plan``'s widths; ``model`` itself is not modified.

    Shrinking a group keeps its most important channels (chosen once per group, applied to every layer in it);
    growing keeps every old channel and adds new ones that do not change the function (new input weights are
    zero), except where a norm takes statistics across channels (LayerNorm over channels, as in ConvNeXt).

    Args:
        model: The model the plan was made for (same layer names).
        plan: From :func:`redistribute.plan`.
        importance: How shrinking picks channels: ``l1`` (default), ``l2`` or ``bn``.
        weights: Weights of the *base* architecture to carry over instead of ``model``'s own: a checkpoint path
            (``.pth``/``.pt``/``.safetensors``, timm training checkpoints) or a state dict; checked strictly.

    Returns:
        A new model of the same classes, sharing no tensor with ``model`` or ``weights``.

    Raises:
        CheckpointError: ``weights`` cannot be read or does not fit ``model`` (the first bad key is named).
        RebuildError: The rebuilt model fails its check (see :func:`~redistribute.surgery.verify.verify`).

    Example:
        >>> import timm, torch
        >>> import redistribute
        >>> m = timm.create_model("test_resnet")
        >>> p = redistribute.plan(m, "b", input_size=(3, 64, 64))
        >>> redistribute.apply(m, p)(torch.randn(1, 3, 64, 64)).shape
        torch.Size([1, 1000])
    """
    # Copy the modules but not the tensors: the ones surgery resizes are rebuilt from the originals anyway, and
    # `unshare` clones the rest, so no weight is copied twice and the result shares no tensor with `model`.
    work = copy_sharing_tensors(model)
    owners: list[nn.Module | list[torch.Tensor]] = [model]
    if weights is not None:
        state = weights if isinstance(weights, Mapping) else read_state_dict(weights)
        source = "weights" if isinstance(weights, Mapping) else f"checkpoint {str(weights)!r}"
        check_state_dict(work, state, source)
        with torch.no_grad():
            assign_state_dict(work, state)
        owners.append(list(state.values()))
    return unshare(apply_(work, plan, importance), *owners)


def _fix_metadata(model: nn.Module, plan: Plan) -> None:
    """Set timm's metadata (``num_features``, ``head_hidden_size``, ``embed_dim``, ``feature_info``, the classifier
    head's ``in_features``/``num_features``/``hidden_size``) to the widths of the layouts the tracer found behind them."""
    widths = plan.widths

    def width(layout: Layout) -> int:
        return sum((widths[s.space] if s.space is not None else s.width) * s.repeat for s in layout)

    info = getattr(model, "feature_info", None)
    for key, layout in plan.graph.meta_layouts.items():
        if key.startswith("feature_info."):
            i = int(key.rpartition(".")[2])
            if isinstance(info, list) and i < len(info) and isinstance(info[i], dict):
                info[i]["num_chs"] = width(layout)
            continue
        if key.endswith("]"):  # one entry of a tuple of widths: ``embed_dim[2]``
            attr, _, index = key[:-1].partition("[")
            value = getattr(model, attr, None)
            if isinstance(value, tuple | list) and int(index) < len(value):
                entries = list(value)
                entries[int(index)] = width(layout)
                setattr(model, attr, type(value)(entries))
            continue
        owner_name, _, attr = key.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        if isinstance(getattr(owner, attr, None), int):
            setattr(owner, attr, width(layout))
