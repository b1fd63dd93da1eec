"""What surgery carries over: per group, how much of the importance mass the kept channels hold.

Shrinking a group keeps its most important channels; the *kept fraction* is the share of the group's total
importance (the same scores shrinking ranks by: ``l1``, ``l2`` or ``bn``) held by the channels it keeps. Growing
keeps every channel (fraction 1.0). A fraction near 1.0 means the shrunken layer holds most of what the trained
weights had; a fraction near ``new / base`` means the scores were flat (e.g. random weights).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from ..planning.planner import Plan
from ..planning.report import _stage_name
from .rebuild import channel_normalized_groups, channel_scores, select_channels

__all__ = ["TransferRow", "transfer_report"]


@dataclass(frozen=True)
class TransferRow:
    """One group in the transfer report.

    Attributes:
        group: Group id.
        stage: The group's stage label.
        producers: Layers producing the group.
        base: Width in the base model.
        new: Width in the plan.
        kept: Channels carried over from the base (``min(base, new)``).
        kept_mass: Fraction of the group's importance held by the kept channels (1.0 when nothing is dropped).
        preserving: False when the group grows and an op reduces or normalises across its channels.
        across: The first op (graph node) that reduces or normalises across the group's channels, or ``None``.
    """

    group: int
    stage: str
    producers: tuple[str, ...]
    base: int
    new: int
    kept: int
    kept_mass: float
    preserving: bool
    across: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["producers"] = list(self.producers)
        return d


def transfer_report(model: nn.Module, plan: Plan, importance: str = "l1") -> tuple[TransferRow, ...]:
    """Per changed group: base and new width and the kept fraction of the importance mass.

    Args:
        model: The base model with the weights that will be carried over.
        plan: The plan :func:`redistribute.apply` will follow.
        importance: ``l1``, ``l2`` or ``bn``, as passed to ``apply``.

    Example:
        >>> import timm
        >>> import redistribute
        >>> m = timm.create_model("test_resnet")
        >>> p = redistribute.plan(m, "d", input_size=(3, 64, 64))
        >>> rows = redistribute.transfer_report(m, p)
        >>> all(0.0 <= r.kept_mass <= 1.0 for r in rows)
        True
    """
    graph = plan.graph
    scores = channel_scores(model, graph, importance)
    maps = select_channels(model, plan, importance, scores)  # the same scores: each group is scored once
    normalized = channel_normalized_groups(model, graph)
    rows = []
    for g in graph.groups:
        if g.id not in maps:
            continue
        idx = maps[g.id]
        kept = idx[idx >= 0]
        score = scores[g.id]
        total = float(score.sum())
        mass = float(score[kept].sum()) / total if total > 0 else float(kept.numel()) / max(g.width, 1)
        grows = bool((idx < 0).any())
        rows.append(
            TransferRow(
                group=g.id,
                stage=_stage_name(g.stage),
                producers=tuple(g.producers),
                base=g.width,
                new=int(idx.numel()),
                kept=int(kept.numel()),
                kept_mass=min(1.0, mass),
                preserving=not (grows and g.id in normalized),
                across=normalized.get(g.id),
            )
        )
    return tuple(rows)
