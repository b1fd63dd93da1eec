"""Random small CNNs from building blocks, for the property-based tests (``tests/test_properties.py``).

An architecture is a tuple of :class:`Block` descriptions, so hypothesis can draw, print and shrink it; ``build``
turns it into a real ``nn.Module``. Every block reads and writes NCHW feature maps; the blocks cover each kind of
channel coupling the tracer knows: plain conv stacks, residual blocks (identity or projection shortcut),
depthwise-separable blocks (with or without expansion and shortcut), squeeze-excite gates, concatenation of
branches (with or without the input, DenseNet-style), channel splits (``chunk``, ``split``), grouped convs
(keeping their group count, or their group width like RegNet), channel shuffles (``view``/``transpose`` or
``nn.ChannelShuffle``), per-channel and scalar ``PReLU``, one conv called twice (shared parameters), a
normalisation across channels (hand-written LayerNorm, or a softmax gate over channels) and depthwise convs with a
channel multiplier.

Example:
    >>> arch = Arch(stem=8, blocks=(Block("res", out=8, mid=4), Block("se", mid=4)), classes=5)
    >>> model = build(arch)
    >>> model(torch.randn(2, 3, 16, 16)).shape
    torch.Size([2, 5])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from hypothesis import strategies as st
from torch import nn

from redistribute import register_group_width_block

__all__ = [
    "ACROSS_CHANNELS",
    "DEFAULT_KINDS",
    "KINDS",
    "Arch",
    "Block",
    "Net1d",
    "aligned_split",
    "archs",
    "build",
    "canonical",
    "nets_1d",
]

SIZE = (3, 16, 16)

#: Every block kind there is.
KINDS = (
    "conv", "res", "res_proj", "dws", "se", "cat", "dense", "split", "grouped", "grouped_width", "shuffle",
    "shuffle_module", "prelu", "shared", "reduce", "dwmult",
)  # fmt: skip

#: Kinds whose growth cannot preserve the function (they mix values across the channels they normalise).
ACROSS_CHANNELS = ("reduce",)

#: The kinds :func:`archs` draws by default: all of them.
DEFAULT_KINDS = KINDS


@dataclass(frozen=True)
class Block:
    """One building block.

    Attributes:
        kind: One of :data:`KINDS`.
        out: Output channels (blocks that keep their input width ignore it).
        mid: Hidden width (bottleneck, expansion, SE reduction, second branch).
        stride: 1 or 2.
        groups: Group count of grouped convs and shuffles.
        variant: A kind-specific switch (kernel 1 or 3, with or without shortcut or expansion, chunk or split).
    """

    kind: str
    out: int = 8
    mid: int = 8
    stride: int = 1
    groups: int = 2
    variant: int = 0


@dataclass(frozen=True)
class Arch:
    """A stem conv, blocks, global average pooling and a linear classifier."""

    stem: int
    blocks: tuple[Block, ...]
    classes: int = 10


def _cbr(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ConvBlock(nn.Module):
    def __init__(self, cin: int, b: Block) -> None:
        super().__init__()
        self.body = _cbr(cin, b.out, 1 if b.variant else 3, b.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResBlock(nn.Module):
    """Two 3x3 convs and a shortcut: identity (``kind="res"``, stride 1, width kept) or a 1x1 projection."""

    def __init__(self, cin: int, b: Block, proj: bool) -> None:
        super().__init__()
        cout = b.out if proj else cin
        stride = b.stride if proj else 1
        self.conv1 = _cbr(cin, b.mid, 3, stride)
        self.conv2 = _cbr(b.mid, cout, 3, act=False)
        self.proj = _cbr(cin, cout, 1, stride, act=False) if proj else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.proj is None else self.proj(x)
        return (self.conv2(self.conv1(x)) + shortcut).relu()


class DWSBlock(nn.Module):
    """Depthwise-separable: optional 1x1 expansion, depthwise 3x3, 1x1 projection; a shortcut where shapes allow."""

    def __init__(self, cin: int, b: Block) -> None:
        super().__init__()
        expand = b.variant & 1
        mid = b.mid if expand else cin
        self.expand = _cbr(cin, mid, 1) if expand else None
        self.dw = _cbr(mid, mid, 3, b.stride, groups=mid)
        self.project = _cbr(mid, b.out, 1, act=False)
        self.shortcut = bool(b.variant & 2) and b.stride == 1 and b.out == cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.dw(y))
        return y + x if self.shortcut else y


class SEBlock(nn.Module):
    """Squeeze-excite: a gate from the pooled input multiplies the input (width kept)."""

    def __init__(self, cin: int, b: Block) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(cin, b.mid, 1)
        self.expand = nn.Conv2d(b.mid, cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.expand(self.reduce(s).relu()).sigmoid()


class CatBlock(nn.Module):
    """Two branches (3x3 to ``out``, 1x1 to ``mid``) concatenated; ``dense`` also concatenates the input."""

    def __init__(self, cin: int, b: Block, dense: bool) -> None:
        super().__init__()
        stride = 1 if dense else b.stride
        self.a = _cbr(cin, b.out, 3, stride)
        self.b = _cbr(cin, b.mid, 1, stride)
        self.dense = dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x, self.a(x), self.b(x)] if self.dense else [self.a(x), self.b(x)]
        return torch.cat(parts, 1)


class SplitBlock(nn.Module):
    """Split the input in two along channels (``chunk`` or ``split`` by the tensor's own size), convolve, concat."""

    def __init__(self, cin: int, b: Block) -> None:
        super().__init__()
        half = cin // 2
        self.left = _cbr(half, b.out, 3)
        self.right = _cbr(cin - half, b.mid, 1)
        self.use_chunk = b.variant & 1 == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_chunk:
            a, c = x.chunk(2, dim=1)
        else:
            half = x.shape[1] // 2
            a, c = torch.split(x, [half, x.shape[1] - half], dim=1)
        return torch.cat([self.left(a), self.right(c)], 1)


class GroupedBlock(nn.Module):
    """ResNeXt-like: 1x1 to ``mid``, grouped 3x3 (``groups``), 1x1 to ``out``."""

    def __init__(self, cin: int, b: Block) -> None:
        super().__init__()
        self.conv1 = _cbr(cin, b.mid, 1)
        self.conv2 = _cbr(b.mid, b.mid, 3, b.stride, groups=b.groups)
        self.conv3 = _cbr(b.mid, b.out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(x)))


@register_group_width_block
class GroupWidthBlock(GroupedBlock):
    """A :class:`GroupedBlock` whose grouped conv keeps its group *width* when resized (RegNet's policy)."""


class ShuffleBlock(nn.Module):
    """A grouped 1x1 conv followed by a channel shuffle (ShuffleNet)."""

    def __init__(self, cin: int, b: Block, module: bool) -> None:
        super().__init__()
        self.conv = _cbr(cin, b.out, 1, groups=b.groups)
        self.groups = b.groups
        self.shuffle = nn.ChannelShuffle(b.groups) if module else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.shuffle is not None:
            return self.shuffle(x)
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class PReLUBlock(nn.Module):
    """A conv and BN followed by ``PReLU(out)`` (one slope per channel) or ``PReLU()`` (one slope)."""

    def __init__(self, cin: int, b: Block) -> None:
        super().__init__()
        self.body = _cbr(cin, b.out, 3, b.stride, act=False)
        self.act = nn.PReLU() if b.variant & 1 else nn.PReLU(b.out, init=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x))


class SharedBlock(nn.Module):
    """One 3x3 conv applied twice (its parameters are shared by both calls), with a residual add."""

    def __init__(self, cin: int, b: Block) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cin, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.conv(x).relu())


class ReduceBlock(nn.Module):
    """A normalisation across channels, then a 1x1 conv: a hand-written LayerNorm over dim 1 (variant 0) or a
    softmax gate over the channels (variant 1). Growing the input group changes its statistics."""

    def __init__(self, cin: int, b: Block) -> None:
        super().__init__()
        self.softmax = bool(b.variant & 1)
        self.proj = _cbr(cin, b.out, 1, b.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.softmax:
            y = x * x.softmax(dim=1)
        else:
            mu = x.mean(1, keepdim=True)
            y = (x - mu) / ((x - mu).pow(2).mean(1, keepdim=True) + 1e-5).sqrt()
        return self.proj(y)


class DWMultBlock(nn.Module):
    """A depthwise 3x3 conv with channel multiplier 2 (``groups = in``, ``out = 2 * in``), then a 1x1 conv."""

    def __init__(self, cin: int, b: Block) -> None:
        super().__init__()
        self.dw = _cbr(cin, 2 * cin, 3, b.stride, groups=cin)
        self.project = _cbr(2 * cin, b.out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.dw(x))


def _out_width(cin: int, b: Block) -> int:
    if b.kind in ("res", "se", "shared"):
        return cin
    if b.kind == "cat":
        return b.out + b.mid
    if b.kind == "dense":
        return cin + b.out + b.mid
    if b.kind == "split":
        return b.out + b.mid
    return b.out


class RandomNet(nn.Module):
    """The model :func:`build` returns."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.stem = _cbr(3, arch.stem, 3)
        blocks: list[nn.Module] = []
        c = arch.stem
        for b in arch.blocks:
            blocks.append(_make_block(c, b))
            c = _out_width(c, b)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, arch.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(x.mean((2, 3)))


_BUILDERS: dict[str, Callable[[int, Block], nn.Module]] = {
    "conv": ConvBlock,
    "res": lambda cin, b: ResBlock(cin, b, proj=False),
    "res_proj": lambda cin, b: ResBlock(cin, b, proj=True),
    "dws": DWSBlock,
    "se": SEBlock,
    "cat": lambda cin, b: CatBlock(cin, b, dense=False),
    "dense": lambda cin, b: CatBlock(cin, b, dense=True),
    "split": SplitBlock,
    "grouped": GroupedBlock,
    "grouped_width": GroupWidthBlock,
    "shuffle": lambda cin, b: ShuffleBlock(cin, b, module=False),
    "shuffle_module": lambda cin, b: ShuffleBlock(cin, b, module=True),
    "prelu": PReLUBlock,
    "shared": SharedBlock,
    "reduce": ReduceBlock,
    "dwmult": DWMultBlock,
}


def _make_block(cin: int, b: Block) -> nn.Module:
    if b.kind not in _BUILDERS:
        raise ValueError(f"unknown block kind {b.kind!r}")
    return _BUILDERS[b.kind](cin, b)


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and non-trivial BatchNorm statistics, so eval-mode outputs depend on every parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def build(arch: Arch, seed: int = 0) -> nn.Module:
    """Build ``arch`` with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    return _randomize(RandomNet(arch), seed).eval()


_widths = st.sampled_from((4, 8, 12, 16))


#: The fields each kind reads, and the bits of ``variant`` it uses.
_USES: dict[str, tuple[tuple[str, ...], int]] = {
    "conv": (("out", "stride"), 1),
    "res": (("mid",), 0),
    "res_proj": (("out", "mid", "stride"), 0),
    "dws": (("out", "mid", "stride"), 3),
    "se": (("mid",), 0),
    "cat": (("out", "mid", "stride"), 0),
    "dense": (("out", "mid"), 0),
    "split": (("out", "mid"), 1),
    "grouped": (("out", "mid", "stride", "groups"), 0),
    "grouped_width": (("out", "mid", "stride", "groups"), 0),
    "shuffle": (("out", "groups"), 0),
    "shuffle_module": (("out", "groups"), 0),
    "prelu": (("out", "stride"), 1),
    "shared": ((), 0),
    "reduce": (("out", "stride"), 1),
    "dwmult": (("out", "stride"), 0),
}


_FIELD_VALUES = {"out": (4, 8, 12, 16), "mid": (4, 8, 12, 16), "stride": (1, 2), "groups": (2, 4)}


@st.composite
def blocks(draw: st.DrawFn, kinds: tuple[str, ...] = KINDS) -> Block:
    """One block description; only the fields its kind reads are drawn (the others keep their defaults).

    All widths are multiples of 4, so group counts of 2 and 4 always divide them.
    """
    kind = draw(st.sampled_from(kinds))
    fields, bits = _USES[kind]
    values = {f: draw(st.sampled_from(_FIELD_VALUES[f])) for f in fields}
    return Block(kind, variant=draw(st.integers(0, bits)) if bits else 0, **values)


def canonical(arch: Arch) -> Arch:
    """``arch`` with every field its blocks ignore set to the default, so that equal models compare equal."""
    default = Block("conv")
    blocks = []
    for b in arch.blocks:
        fields, bits = _USES[b.kind]
        kept = {f: getattr(b, f) if f in fields else getattr(default, f) for f in ("out", "mid", "stride", "groups")}
        blocks.append(Block(b.kind, variant=b.variant & bits, **kept))
    return replace(arch, blocks=tuple(blocks))


def _parts(parts: tuple[int, ...], cin: int, b: Block) -> tuple[int, ...]:
    """Widths of the concatenated parts of a block's output (one part: not a concatenation)."""
    if b.kind in ("res", "se", "shared") or (b.kind == "dws" and b.variant & 2 and b.stride == 1 and b.out == cin):
        return parts
    if b.kind == "dense":
        return (*parts, b.out, b.mid)
    if b.kind in ("cat", "split"):
        return (b.out, b.mid)
    return (b.out,)


def aligned_split(parts: tuple[int, ...]) -> bool:
    """Whether splitting a tensor of these concatenated parts in two halves cuts exactly between parts."""
    total, acc = sum(parts), 0
    for w in parts[:-1]:
        acc += w
        if acc == total // 2:
            return True
    return False


@st.composite
def archs(
    draw: st.DrawFn,
    max_blocks: int = 5,
    kinds: tuple[str, ...] = DEFAULT_KINDS,
    aligned_splits: bool = True,
    grouped_concat: bool = True,
) -> Arch:
    """A random :class:`Arch` of 1 to ``max_blocks`` blocks drawn from ``kinds``, at most two stride-2 steps.

    Two constructs that once hid walker bugs can be left out (the block is then drawn as a ``conv`` block):

    * ``aligned_splits``: a ``split`` whose halves are exactly whole parts of a concatenation (the walker ties
      the parts equal, so the split point cannot move).
    * ``grouped_concat``: a shuffle block (its grouped 1x1 conv) reading a concatenation (the walker fixes the
      parts: group boundaries are absolute channel positions).
    """
    stem = draw(_widths)
    n = draw(st.integers(1, max_blocks))
    chosen: list[Block] = []
    downs, parts = 0, (stem,)
    for _ in range(n):
        b = draw(blocks(kinds))
        if b.stride == 2 and downs >= 2:
            b = replace(b, stride=1)
        if b.kind == "split" and not aligned_splits and aligned_split(parts):
            b = replace(b, kind="conv")
        if b.kind in ("shuffle", "shuffle_module") and not grouped_concat and len(parts) > 1:
            b = replace(b, kind="conv")
        downs += b.stride == 2
        parts = _parts(parts, sum(parts), b)
        chosen.append(b)
    return Arch(stem=stem, blocks=tuple(chosen), classes=draw(st.sampled_from((3, 10))))


@dataclass(frozen=True)
class Net1d:
    """A 1-D net on ``(C, L)`` input (audio, sequences): Conv1d-BN stages, optionally residual, with ``PReLU(C)``
    or ``PReLU()`` activations, optionally a normalisation across channels, global pooling and a Linear."""

    channels: int
    widths: tuple[int, ...]
    residual: bool = False
    prelu: int = 0  # 0: ReLU, 1: PReLU(C), 2: PReLU()
    norm: bool = False
    classes: int = 5
    length: int = 24

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.channels, self.length)

    def build(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return _Net1d(self).eval()


class _Net1d(nn.Module):
    def __init__(self, net: Net1d) -> None:
        super().__init__()
        layers = []
        c = net.channels
        for w in net.widths:
            act: nn.Module = nn.PReLU(w, init=0.2) if net.prelu == 1 else nn.PReLU() if net.prelu == 2 else nn.ReLU()
            layers.append(nn.Sequential(nn.Conv1d(c, w, 3, padding=1), nn.BatchNorm1d(w), act))
            c = w
        self.stages = nn.ModuleList(layers)
        self.residual, self.norm = net.residual, net.norm
        self.head = nn.Linear(c, net.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            y = stage(x)
            x = y + x if self.residual and y.shape == x.shape else y
        if self.norm:
            x = x / x.pow(2).mean(1, keepdim=True).add(1e-5).sqrt()
        return self.head(x.mean(-1))


@st.composite
def nets_1d(draw: st.DrawFn) -> Net1d:
    """A random :class:`Net1d` of 1 to 4 stages."""
    return Net1d(
        channels=draw(st.sampled_from((1, 2, 8))),
        widths=tuple(draw(st.lists(_widths, min_size=1, max_size=4))),
        residual=draw(st.booleans()),
        prelu=draw(st.integers(0, 2)),
        norm=draw(st.booleans()),
        classes=draw(st.sampled_from((3, 5))),
    )
