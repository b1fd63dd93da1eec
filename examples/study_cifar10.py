"""The paper's image row for this project: a CIFAR-style ResNet-20 at matched FLOPs on CIFAR-10, every template.

The model is an ordinary user model with a factory, so the command line takes it as ``file.py:factory``::

    redistribute study examples/study_cifar10.py:resnet20 --data cifar10:../shared/data/cifar10 \\
        --templates base,a,b,c,d,e --epochs 15 --seeds 2 --limit-train 5000 --limit-val 1000 --out study-cifar10

or run this file (the same study from Python; ``--help`` lists the options). ``--data`` also takes an image folder
(``DIR/train/<class>/*``, ``DIR/val/<class>/*``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (a strided 1x1 conv-BN where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):  # type: ignore[no-untyped-def]
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet (6n+2 layers): a 3x3 stem, three stages of n blocks at 16/32/64 filters, a linear head."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), not {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers: list[nn.Module] = []
        cin = width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                layers.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


def resnet20(num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    """ResNet-20 for 32x32 inputs (0.27 M params, 41 M MACs)."""
    return CifarResNet(20, num_classes, in_chans)


def resnet56(num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    """ResNet-56 for 32x32 inputs (0.85 M params, 126 M MACs)."""
    return CifarResNet(56, num_classes, in_chans)


def main() -> None:
    from redistribute.study import run_study
    from redistribute.training.config import TrainConfig

    default_data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=f"cifar10:{default_data}", help="cifar10:DIR or an image folder")
    parser.add_argument("--model", default="resnet20", choices=["resnet20", "resnet56"])
    parser.add_argument("--templates", default="base,a,b,c,d,e")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--limit-train", type=int, default=5000)
    parser.add_argument("--limit-val", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executor", default="local", choices=["local", "torchrun", "ray"])
    parser.add_argument("--out", default="study-cifar10")
    args = parser.parse_args()
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=5e-4,
                         workers=args.workers, device=args.device)  # fmt: skip
    result = run_study(f"{Path(__file__).resolve()}:{args.model}", args.data, templates=args.templates.split(","),
                       seeds=args.seeds, config=config, out=args.out, executor=args.executor,
                       limit_train=args.limit_train, limit_val=args.limit_val,
                       progress=lambda p: p.kind != "train" and print(f"[{p.done}/{p.total}] {p.run} {p.kind}"))  # fmt: skip
    print(result.to_markdown())


if __name__ == "__main__":
    main()
