"""One fast model per op family: trace, redistribute, rebuild, run (the full per-module sweep is ``benchmarks/``).

Each case is a timm ``test_*`` model, a small real timm model at a small input, or a timm class built at a tiny
configuration. For each: the family's groups are free, template ``d`` matched on FLOPs rebuilds a model that runs
with the base output shape, and its FLOPs, re-traced, are the plan's and equal ``FlopCounterMode``'s (attention
included); a plan that changes every free width (k = 0.75, no matching) runs too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import timm
import torch
from conftest import flop_counter_macs
from torch import nn

import redistribute
from redistribute.planning.cost import CostModel


@dataclass(frozen=True)
class Case:
    family: str
    build: Callable[[], nn.Module]
    size: tuple[int, int, int]
    scope: str = "conv"


def _timm(name: str, **kwargs: object) -> Callable[[], nn.Module]:
    return lambda: timm.create_model(name, **kwargs)


def _swin() -> nn.Module:
    from timm.models.swin_transformer import SwinTransformer

    return SwinTransformer(img_size=32, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1), num_heads=(1, 2))


def _frozen_timm() -> nn.Module:
    from timm.layers import freeze_batch_norm_2d

    return freeze_batch_norm_2d(timm.create_model("test_resnet"))


def _frozen_torchvision() -> nn.Module:
    from torchvision.models import resnet18
    from torchvision.ops.misc import FrozenBatchNorm2d

    return resnet18(norm_layer=FrozenBatchNorm2d)


def _mixer() -> nn.Module:
    from timm.models.mlp_mixer import MlpMixer

    return MlpMixer(num_classes=10, img_size=64, patch_size=8, num_blocks=2, embed_dim=128)


CASES = [
    Case("bottleneck residual (ResNet)", _timm("test_resnet"), (3, 64, 64)),
    Case("BYOB blocks, RepVGG-style branches", _timm("test_byobnet"), (3, 64, 64)),
    Case("depthwise + SE (EfficientNet)", _timm("test_efficientnet"), (3, 64, 64)),
    Case("GroupNorm", _timm("test_efficientnet_gn"), (3, 64, 64)),
    Case("LayerNorm over channels", _timm("test_efficientnet_ln"), (3, 64, 64)),
    Case("EvoNorm", _timm("test_efficientnet_evos"), (3, 64, 64)),
    Case("ConvNeXt: LayerNorm2d, layer scale, permute", _timm("test_convnext"), (3, 64, 64)),
    Case("NFNet: scaled weight-standardised conv, gain", _timm("test_nfnet"), (3, 64, 64)),
    Case("MambaOut: channels-last gated split", _timm("test_mambaout"), (3, 64, 64)),
    Case("MaxViT: MBConv + window/grid attention", _timm("test_maxvit"), (3, 160, 160)),
    Case("FrozenBatchNorm2d (timm)", _frozen_timm, (3, 64, 64)),
    Case("FrozenBatchNorm2d (torchvision ResNet18)", _frozen_torchvision, (3, 64, 64)),
    Case("group width kept (RegNet)", _timm("regnetx_002"), (3, 64, 64)),
    Case("hard-swish SE with rounding (MobileNetV3)", _timm("mobilenetv3_small_050"), (3, 64, 64)),
    Case("ghost modules: concat then slice", _timm("ghostnet_050"), (3, 64, 64)),
    Case("re-parameterisable MobileOne branches (FastViT)", _timm("fastvit_t8"), (3, 64, 64)),
    Case("unfold/fold patches (MobileViT)", _timm("mobilevit_xxs"), (3, 64, 64)),
    Case("cross-stage split (CSPNet)", _timm("cs3darknet_focus_s"), (3, 64, 64)),
    Case("tree aggregation (DLA)", _timm("dla46_c"), (3, 64, 64)),
    Case("dual path: split + dense concat (DPN)", _timm("dpn48b"), (3, 64, 64)),
    Case("selective kernel (SKNet)", _timm("skresnet18"), (3, 64, 64)),
    Case("split attention, radix (ResNeSt)", _timm("resnest14d"), (3, 64, 64)),
    Case("one-shot aggregation (VoVNet)", _timm("ese_vovnet19b_slim_dw"), (3, 64, 64)),
    Case("ViT: class token concat, MLP widths", _timm("test_vit"), (3, 160, 160), "all"),
    Case("ViT with relative position", _timm("test_vit_relpos"), (3, 160, 160), "all"),
    Case("Swin: windows, relative position bias", _swin, (3, 32, 32), "all"),
    Case("MLP-Mixer: token mixing", _mixer, (3, 64, 64), "all"),
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    return None


@pytest.mark.parametrize("case", CASES, ids=[c.family for c in CASES])
def test_family_redistributes(case: Case) -> None:
    torch.manual_seed(0)
    model = case.build().eval()
    x = torch.randn(1, *case.size)
    with torch.no_grad():
        base_shape = model(x).shape
    graph = redistribute.trace(model, case.size)
    free = graph.free_groups(case.scope)
    assert free, f"no free group: {[g.fixed for g in graph.groups]}"

    p = redistribute.plan(graph, "d", scope=case.scope)
    assert abs(p.cost.flops / p.base_cost.flops - 1) <= 0.005
    assert any(p.widths[g.id] != g.width for g in free)
    new = redistribute.apply(model, p).eval()
    with torch.no_grad():
        assert new(x).shape == base_shape
    rebuilt = redistribute.trace(new, case.size)
    assert CostModel(rebuilt).flops(rebuilt.base_widths()) == p.cost.flops
    assert flop_counter_macs(new, x) == p.cost.flops

    every = redistribute.plan(graph, "base", match="none", k=0.75, scope=case.scope, divisor=1)
    fine = [g for g in free if 4 * max(g.multiple, g.block, 1) <= g.width]  # 0.75x is a reachable width
    assert fine and all(every.widths[g.id] != g.width for g in fine)
    with torch.no_grad():
        assert redistribute.apply(model, every).eval()(x).shape == base_shape
