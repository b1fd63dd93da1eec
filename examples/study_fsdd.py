"""The paper's audio row for this project: a small CNN on log-mel spectrograms of spoken digits (FSDD), every template.

Each 1 s, 8 kHz clip becomes a 1x64x63 log-mel image (``soundfile`` + ``librosa.filters.mel`` + ``torch.stft``;
``pip install 'redistribute[study]'``). The command line takes the model as ``file.py:factory``::

    redistribute study examples/study_fsdd.py:audio_cnn --data fsdd:../shared/data/fsdd \\
        --templates base,a,b,c,d,e --epochs 20 --seeds 2 --out study-fsdd

or run this file (the same study from Python; ``--help`` lists the options). The official split is used: recordings
0-4 of each speaker are the validation set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch import nn


def audio_cnn(num_classes: int = 10, in_chans: int = 1, width: int = 24) -> nn.Module:
    """Four conv-BN-ReLU blocks, each followed by 2x2 max pooling (24/48/96/192 filters), then pooling and a head.

    At width 24 every template a-e matches the base's FLOPs within 0.5% at divisor 8 (at 16, a and d cannot).
    """
    layers: list[nn.Module] = []
    cin = in_chans
    for i in range(4):
        cout = width * 2**i
        layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2)]  # fmt: skip
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(cin, num_classes))


def main() -> None:
    from redistribute.study import run_study
    from redistribute.training.config import TrainConfig

    default_data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=f"fsdd:{default_data}")
    parser.add_argument("--templates", default="base,a,b,c,d,e")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--limit-val", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executor", default="local", choices=["local", "torchrun", "ray"])
    parser.add_argument("--out", default="study-fsdd")
    args = parser.parse_args()
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=5e-4,
                         workers=args.workers, device=args.device)  # fmt: skip
    result = run_study(f"{Path(__file__).resolve()}:audio_cnn", args.data, templates=args.templates.split(","),
                       seeds=args.seeds, config=config, out=args.out, executor=args.executor,
                       limit_train=args.limit_train, limit_val=args.limit_val,
                       progress=lambda p: p.kind != "train" and print(f"[{p.done}/{p.total}] {p.run} {p.kind}"))  # fmt: skip
    print(result.to_markdown())


if __name__ == "__main__":
    main()
