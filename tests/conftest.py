"""Shared fixtures: small hand-built nets covering each kind of channel coupling, and a FLOP-counter helper."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from redistribute.study.flop_counters import sdpa_on_cpu

INPUT = (3, 32, 32)

#: The shared real data sets (CIFAR-10, FSDD tars): ``$REDISTRIBUTE_DATA``, else ``../shared/data`` beside the repo.
SHARED_DATA = Path(
    os.environ.get("REDISTRIBUTE_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)


#: The small models users bring, with what is right for each (``../shared/cases/README.md``).
SHARED_CASES = Path(__file__).resolve().parents[1].parent / "shared" / "cases"


def load_case(name: str) -> ModuleType:
    """Import ``SHARED_CASES/<name>.py``; the test is skipped when the shared cases are not beside the repository."""
    path = SHARED_CASES / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"shared case {path} is absent (the cases live beside the repository, in ../shared/cases)")
    spec = importlib.util.spec_from_file_location(f"case_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run only when asked for (``-m slow``); the default run skips them."""
    expr = config.getoption("markexpr") or ""
    if "slow" in expr and "not slow" not in expr:
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def flop_counter_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs of convolutions and matmuls (bias excluded) at ``x``'s batch, as counted by ``FlopCounterMode``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=sdpa_on_cpu()) as fc:
            model(x)
    finally:
        model.train(was_training)
    counts = fc.get_flop_counts()["Global"]
    kinds = ("convolution", "mm", "addmm", "bmm", "_scaled_dot_product_flash_attention_for_cpu")
    total = sum(v for k, v in counts.items() if str(k).split(".")[-1] in kinds)
    assert total % 2 == 0
    return total // 2


def leaf_output_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Activation memory as the cost model defines it: float32 bytes of every leaf module's output (forward hooks)."""
    total = 0

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * 4

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: tiny models on a shared machine run several times faster than with contended threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def state_hash(model: nn.Module) -> str:
    """A digest of every tensor in the state dict (names, shapes, dtypes and values)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def group_of(graph, layer: str, role: str = "producers"):
    """The one group in which ``layer`` appears as a producer/consumer/member."""
    found = [g for g in graph.groups if layer in getattr(g, role)]
    assert len(found) == 1, f"{layer} is a {role[:-1]} of {len(found)} groups"
    return found[0]


def groups_with(graph, layer: str, role: str = "consumers"):
    return [g for g in graph.groups if layer in getattr(g, role)]


class PlainNet(nn.Module):
    """conv-bn-relu x3, global pool, linear: every conv its own group."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16)
        self.conv3, self.bn3 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x)).relu()
        x = self.bn2(self.conv2(x)).relu()
        x = self.bn3(self.conv3(x)).relu()
        return self.fc(x.mean((2, 3)))


class ResidualNet(nn.Module):
    """A bottleneck with a projection shortcut: ``proj`` and ``conv3`` are added, so they share one group."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.conv1, self.bn1 = nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv3, self.bn3 = nn.Conv2d(8, 32, 1, bias=False), nn.BatchNorm2d(32)
        self.proj, self.bnp = nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32)
        self.conv4, self.bn4 = nn.Conv2d(32, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.conv5, self.bn5 = nn.Conv2d(8, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn0(self.stem(x)).relu()
        y = self.bn1(self.conv1(x)).relu()
        y = self.bn2(self.conv2(y)).relu()
        y = self.bn3(self.conv3(y))
        x = (y + self.bnp(self.proj(x))).relu()
        y = self.bn4(self.conv4(x)).relu()
        x = (x + self.bn5(self.conv5(y))).relu()  # identity shortcut: conv5 joins the same group
        return self.fc(x.mean((2, 3)))


class DWSENet(nn.Module):
    """Inverted residual: pointwise expand, depthwise conv, squeeze-excite gate (a multiply), pointwise project."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.expand, self.bn1 = nn.Conv2d(16, 48, 1, bias=False), nn.BatchNorm2d(48)
        self.dw, self.bn2 = nn.Conv2d(48, 48, 3, stride=2, padding=1, groups=48, bias=False), nn.BatchNorm2d(48)
        self.se_reduce = nn.Conv2d(48, 8, 1)
        self.se_expand = nn.Conv2d(8, 48, 1)
        self.project, self.bn3 = nn.Conv2d(48, 24, 1, bias=False), nn.BatchNorm2d(24)
        self.fc = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn0(self.stem(x)).relu()
        y = self.bn1(self.expand(x)).relu()
        y = self.bn2(self.dw(y)).relu()
        s = y.mean((2, 3), keepdim=True)
        s = self.se_expand(self.se_reduce(s).relu()).sigmoid()
        y = y * s
        y = self.bn3(self.project(y))
        return self.fc(y.mean((2, 3)))


class DenseNet(nn.Module):
    """DenseNet-like: every layer reads the concatenation of all earlier feature maps."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.layer1 = nn.Conv2d(16, 8, 3, padding=1, bias=False)
        self.layer2 = nn.Conv2d(24, 8, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(32)
        self.transition = nn.Conv2d(32, 16, 1, bias=False)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).relu()
        a = self.layer1(x).relu()
        x = torch.cat([x, a], 1)
        b = self.layer2(x).relu()
        x = torch.cat([x, b], 1)
        x = self.transition(self.norm(x).relu())
        return self.fc(x.mean((2, 3)))


class GroupedNet(nn.Module):
    """A ResNeXt-like block: 1x1, grouped 3x3 (groups=4), 1x1."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.conv1, self.bn1 = nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = nn.Conv2d(32, 64, 3, stride=2, padding=1, groups=4, bias=False), nn.BatchNorm2d(64)
        self.conv3, self.bn3 = nn.Conv2d(64, 32, 1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn0(self.stem(x)).relu()
        x = self.bn1(self.conv1(x)).relu()
        x = self.bn2(self.conv2(x)).relu()
        x = self.bn3(self.conv3(x)).relu()
        return self.fc(x.mean((2, 3)))


HAND_BUILT = {
    "plain": PlainNet,
    "residual": ResidualNet,
    "dwse": DWSENet,
    "dense": DenseNet,
    "grouped": GroupedNet,
}


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Give BatchNorms non-trivial statistics and affine parameters, so eval-mode outputs depend on them."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def make_net(name: str) -> nn.Module:
    torch.manual_seed(0)
    return _randomize_bn(HAND_BUILT[name]()).eval()


@pytest.fixture
def plain_net() -> nn.Module:
    return make_net("plain")


@pytest.fixture
def residual_net() -> nn.Module:
    return make_net("residual")


@pytest.fixture
def dwse_net() -> nn.Module:
    return make_net("dwse")


@pytest.fixture
def dense_net() -> nn.Module:
    return make_net("dense")


@pytest.fixture
def grouped_net() -> nn.Module:
    return make_net("grouped")


@pytest.fixture(params=sorted(HAND_BUILT))
def hand_built(request: pytest.FixtureRequest) -> tuple[str, nn.Module]:
    return request.param, make_net(request.param)
