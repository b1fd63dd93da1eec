"""A small user CNN for the study tests: ``tests/study/tiny_cnn.py:make`` (three conv stages, BN, ReLU, a head)."""

from __future__ import annotations

from torch import nn


def make(num_classes: int = 10, in_chans: int = 3, width: int = 16) -> nn.Module:
    """Conv-BN-ReLU x4 over three resolutions (width, 2x, 4x filters), global pooling, a linear head."""

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(in_chans, width, 1),
        *block(width, 2 * width, 2),
        *block(2 * width, 2 * width, 1),
        *block(2 * width, 4 * width, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )
