"""The redistribute Python API, end to end, on a timm model and on your own ``nn.Module``.

Run from the repository root (takes well under 30 s on a laptop CPU)::

    .venv/bin/python examples/python_api.py

Steps: trace the model into channel groups, plan new widths with template "d" (peak in the middle of the network)
at the base model's FLOPs, rebuild the model, compare its cost, run it, and save the plan as a spec that rebuilds
the same model later (optionally with its weights).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import redistribute


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measured_macs(model: nn.Module, input_size: tuple[int, ...]) -> float:
    """Multiply-accumulates counted by torch itself (FlopCounterMode counts 2 FLOPs per MAC)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.randn(1, *input_size))
    return counter.get_total_flops() / 2


def show_groups(graph: redistribute.ChannelGraph, limit: int = 6) -> None:
    free = graph.free_groups()
    print(f"  {len(graph.groups)} channel groups, {len(free)} free to resize; the first {limit}:")
    for g in graph.groups[:limit]:
        state = f"fixed ({g.fixed})" if g.fixed else "free"
        producers = ", ".join(g.producers) or "-"
        if len(producers) > 48:
            producers = producers[:45] + "..."
        print(f"    g{g.id:<3} width {g.width:<5} stage {g.stage!s:<10} {state:<24} produced by {producers}")


def compare(model: nn.Module, new: nn.Module, plan: redistribute.Plan, input_size: tuple[int, ...]) -> None:
    base_p, new_p = n_params(model), n_params(new)
    base_f, new_f = measured_macs(model, input_size), measured_macs(new, input_size)
    print(
        f"  template {plan.template!r}, matched {plan.match} with k = {plan.k:.3f} ({len(plan.changed())} groups changed)"
    )
    print(f"  params: {base_p / 1e6:8.3f} M -> {new_p / 1e6:8.3f} M   (plan says {plan.cost.params / 1e6:.3f} M)")
    print(
        f"  MACs:   {base_f / 1e9:8.3f} G -> {new_f / 1e9:8.3f} G   "
        f"(plan says {plan.cost.flops / 1e9:.3f} G, {plan.cost.flops / plan.base_cost.flops - 1:+.3%} vs base)"
    )
    assert new_p == plan.cost.params, "rebuilt parameter count differs from the plan"
    assert abs(new_f / base_f - 1) <= plan.tolerance, "FLOPs not matched"


def per_stage(plan: redistribute.Plan) -> str:
    """Base -> new width of the free groups, averaged per spatial stage (deepest last)."""
    stages: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for g in plan.graph.free_groups():
        stages.setdefault(g.stage, []).append((g.width, plan.widths[g.id]))
    parts = []
    for stage, pairs in sorted(stages.items(), key=lambda kv: -kv[0][0] if kv[0] else 0):
        base = sum(b for b, _ in pairs) / len(pairs)
        new = sum(n for _, n in pairs) / len(pairs)
        parts.append(f"{'x'.join(map(str, stage)) or 'vec'}: {base:.0f}->{new:.0f}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------------------------
# 1. A timm model
# --------------------------------------------------------------------------------------------------------------
def timm_example(workdir: Path) -> None:
    print("== timm resnet18 ==")
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False).eval()
    input_size = (3, 224, 224)  # timm's default for resnet18: model.pretrained_cfg["input_size"]

    graph = redistribute.trace(model)  # input size taken from the timm pretrained_cfg
    show_groups(graph)

    plan = redistribute.plan(graph, "d", match="flops")  # "d" == "peak"
    print(f"  mean width per stage: {per_stage(plan)}")

    new = redistribute.apply(model, plan).eval()  # `model` itself is left untouched
    compare(model, new, plan, input_size)

    x = torch.randn(2, *input_size)
    with torch.no_grad():
        y = new(x)
    print(f"  forward: {tuple(x.shape)} -> {tuple(y.shape)}")
    assert y.shape == (2, 1000)

    # Save the plan as a spec (plus the weights), then rebuild from it.
    spec = redistribute.spec_from_plan(plan, source="timm:resnet18")
    spec_path = workdir / "resnet18_d" / "spec.json"
    spec_path.parent.mkdir(parents=True)
    redistribute.save_spec(spec, spec_path)
    weights_path = spec_path.with_name("model.safetensors")
    redistribute.save_weights(new, weights_path)
    print(f"  saved {spec_path} ({len(spec['groups'])} group widths) and {weights_path.name}")

    rebuilt = redistribute.load(spec_path, weights=weights_path).eval()  # model built from spec["source"]
    with torch.no_grad():
        same = torch.allclose(rebuilt(x), y, atol=1e-5)
    print(f"  reloaded: {n_params(rebuilt) / 1e6:.3f} M params, same outputs as before saving: {same}")
    assert same and n_params(rebuilt) == n_params(new)


# --------------------------------------------------------------------------------------------------------------
# 2. Any nn.Module: a small CNN of your own
# --------------------------------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.short(x))


class SmallCNN(nn.Module):
    """A CIFAR-sized ResNet-like network: widths 16 -> 32 -> 64 -> 128, a residual add in every block."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks += [ResBlock(cin, w, 1 if i == 0 else 2), ResBlock(w, w, 1)]
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def custom_module_example(workdir: Path) -> None:
    print("\n== your own nn.Module (SmallCNN, 32x32 input) ==")
    torch.manual_seed(0)
    model = SmallCNN().eval()
    input_size = (3, 32, 32)

    graph = redistribute.trace(model, input_size=input_size)  # not a timm model: give the input size
    show_groups(graph)

    plan = redistribute.plan(graph, "d", match="flops")
    print(f"  mean width per stage: {per_stage(plan)}")
    new = redistribute.apply(model, plan).eval()
    compare(model, new, plan, input_size)

    x = torch.randn(4, *input_size)
    with torch.no_grad():
        y = new(x)
    print(f"  forward: {tuple(x.shape)} -> {tuple(y.shape)}")
    assert y.shape == (4, 10)

    # A spec of a model that has no source string: pass the base model to load().
    spec_path = workdir / "smallcnn_d.json"
    redistribute.save_spec(redistribute.spec_from_plan(plan), spec_path)
    rebuilt = redistribute.load(spec_path, model=SmallCNN())
    widths = [g.width for g in redistribute.trace(rebuilt, input_size).groups]
    print(f"  reloaded from {spec_path.name}: widths match the plan: {widths == list(plan.widths.values())}")
    assert widths == list(plan.widths.values())


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="redistribute_example_") as tmp:
        timm_example(Path(tmp))
        custom_module_example(Path(tmp))
    print("\ndone")
