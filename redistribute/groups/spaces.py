"""Channel spaces: a union-find over atomic channel sets, with ordered layouts for concatenations.

Every tensor dimension that carries channels is described by a :data:`Layout`: an ordered tuple of
:class:`Segment`. A convolution's output is one segment of a fresh *atomic* space; ``torch.cat`` along channels
gives a layout of several segments; a dimension of fixed size that no layer owns (batch, spatial) is a segment
with ``space=None``. Ops that keep channels *unify* layouts: two atomic spaces become one (the same channels),
and an atomic space unified with a multi-segment layout becomes an *alias* of it (DenseNet: a transition conv's
input is the concat of its block's growth groups).

Example:
    >>> t = SpaceTable()
    >>> a, b = t.new(64, "conv1"), t.new(64, "conv2")
    >>> t.unify(t.atom(a), t.atom(b), "add")
    >>> t.find(a) == t.find(b)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Layout", "Segment", "SpaceTable", "const"]


@dataclass(frozen=True)
class Segment:
    """A run of channels in a tensor dimension.

    Attributes:
        space: Atomic space id (a group once resolved), or ``None`` for a constant run that no group owns.
        width: Base number of channels of the run (before ``repeat``).
        repeat: Each channel is repeated this many times consecutively (``flatten`` of C×H×W, channel-major).
    """

    space: int | None
    width: int
    repeat: int = 1

    @property
    def size(self) -> int:
        return self.width * self.repeat


Layout = tuple[Segment, ...]


def const(size: int) -> Layout:
    """A dimension of fixed size owned by no group."""
    return (Segment(None, int(size)),)


def layout_size(layout: Layout) -> int:
    return sum(s.size for s in layout)


class SpaceTable:
    """Union-find over atomic channel spaces, with aliases to multi-segment layouts and fixed reasons."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self.width: list[int] = []
        self.origin: list[str] = []
        self._alias: dict[int, Layout] = {}
        self.fixed: dict[int, list[str]] = {}
        self.ties: list[tuple[int, int, int, int]] = []  # (dependent, source, num, den): w_dep = w_src * num / den

    # -- creation -------------------------------------------------------------------------------------------
    def new(self, width: int, origin: str) -> int:
        self._parent.append(len(self._parent))
        self.width.append(int(width))
        self.origin.append(origin)
        return len(self._parent) - 1

    def atom(self, space: int) -> Layout:
        return (Segment(space, self.width[space]),)

    def fresh(self, width: int, origin: str) -> Layout:
        return self.atom(self.new(width, origin))

    # -- union-find -----------------------------------------------------------------------------------------
    def find(self, space: int) -> int:
        root = space
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[space] != root:
            self._parent[space], space = root, self._parent[space]
        return root

    def fix(self, layout: Layout, reason: str) -> None:
        """Mark every atomic space in ``layout`` (through aliases) as fixed."""
        for seg in self.resolve(layout):
            if seg.space is not None:
                self.fixed.setdefault(seg.space, [])
                if reason not in self.fixed[seg.space] and len(self.fixed[seg.space]) < 4:
                    self.fixed[seg.space].append(reason)

    def _union_atoms(self, a: int, b: int, where: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.width[ra] != self.width[rb]:
            self.fix(self.atom(ra) + self.atom(rb), f"width mismatch at {where}")
            return
        alias_a, alias_b = self._alias.pop(ra, None), self._alias.pop(rb, None)
        self._parent[rb] = ra
        for r in (rb,):
            if r in self.fixed:
                for reason in self.fixed.pop(r):
                    self.fixed.setdefault(ra, [])
                    if reason not in self.fixed[ra]:
                        self.fixed[ra].append(reason)
        if alias_a is not None and alias_b is not None:
            self._alias[ra] = alias_a
            self.unify(alias_a, alias_b, where)
        elif alias_a is not None or alias_b is not None:
            self._alias[ra] = alias_a if alias_a is not None else alias_b  # type: ignore[assignment]

    def unify(self, a: Layout, b: Layout, where: str) -> None:
        """Declare that two tensor dimensions carry the same channels, in the same order."""
        ra, rb = self.resolve(a), self.resolve(b)
        if ra == rb:
            return
        if len(ra) == 1 and len(rb) == 1 and ra[0].repeat == rb[0].repeat:
            sa, sb = ra[0], rb[0]
            if sa.space is not None and sb.space is not None:
                self._union_atoms(sa.space, sb.space, where)
            elif sa.space is not None or sb.space is not None:
                if sa.size != sb.size:
                    return
                self.fix(ra + rb, f"meets a fixed-size tensor at {where}")
            return
        if layout_size(ra) != layout_size(rb):
            self.fix(ra + rb, f"size mismatch at {where}")
            return
        if len(ra) == 1 and ra[0].space is not None and ra[0].repeat == 1:
            self._set_alias(ra[0].space, rb, where)
            return
        if len(rb) == 1 and rb[0].space is not None and rb[0].repeat == 1:
            self._set_alias(rb[0].space, ra, where)
            return
        if [s.size for s in ra] == [s.size for s in rb]:
            for sa, sb in zip(ra, rb, strict=False):
                self.unify((sa,), (sb,), where)
            return
        self.fix(ra + rb, f"concatenations with different splits meet at {where}")

    def _set_alias(self, space: int, layout: Layout, where: str) -> None:
        root = self.find(space)
        if any(s.space is not None and self.find(s.space) == root for s in layout):
            self.fix(self.atom(root) + layout, f"channel set contains itself at {where}")
            return
        previous = self._alias.get(root)
        self._alias[root] = layout
        if previous is not None:
            self.unify(previous, layout, where)
        if root in self.fixed:
            self.fix(layout, self.fixed[root][0])

    # -- resolution -----------------------------------------------------------------------------------------
    def resolve(self, layout: Layout, _depth: int = 0) -> Layout:
        """Expand aliases and replace spaces by their roots; merge nothing."""
        out: list[Segment] = []
        for seg in layout:
            if seg.space is None:
                out.append(seg)
                continue
            root = self.find(seg.space)
            alias = self._alias.get(root)
            if alias is None or _depth > 64:
                out.append(Segment(root, seg.width, seg.repeat))
                continue
            for sub in self.resolve(alias, _depth + 1):
                out.append(Segment(sub.space, sub.width, sub.repeat * seg.repeat))
        return tuple(out)

    def is_alias(self, space: int) -> bool:
        return self.find(space) in self._alias

    def is_fixed(self, space: int) -> bool:
        return self.find(space) in self.fixed

    def roots(self) -> list[int]:
        """Atomic spaces that are groups: roots that are not aliases of a concatenation."""
        return [i for i in range(len(self._parent)) if self._parent[i] == i and i not in self._alias]
