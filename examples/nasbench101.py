"""NAS-Bench-101 networks (CIFAR-10) built with ``nasbench-pytorch``, as model factories for redistribute.

``pip install nasbench-pytorch`` (1.3.1 here). Each factory returns
``nasbench_pytorch.model.Network(ModelSpec(matrix, ops))`` with the package's defaults (stem 128 channels, 3 stacks
of 3 cells, 10 classes) unless keyword arguments say otherwise; the CLI and :func:`redistribute.compare` take them
as ``path.py:factory`` sources::

    python -m redistribute examples/nasbench101.py:resnet_like --template b --divisor 1 --input-size 3,32,32
    python -m redistribute inspect examples/nasbench101.py:best --input-size 3,32,32

Cells (``matrix[i][j] = 1``: an edge from vertex i to vertex j; vertex 0 is the input, the last the output):

* ``RESNET_LIKE``: ``input -> conv3x3-bn-relu -> conv3x3-bn-relu -> output`` with the ``input -> output`` edge
  (the cell the poster calls "ResNet-like").
* ``BEST``: the best cell of NAS-Bench-101 by mean test accuracy, as the benchmark's authors gave it in
  https://github.com/google-research/nasbench/issues/4 (Chris Ying, 2019-03-04). The adjacency matrix is copied
  from that comment. The copy of the thread we could read here cuts off in the ops list, so ``BEST_OPS`` is an
  assumption (four 3x3 convolutions and one 3x3 max-pool at vertex 3), not a quotation: check it against the
  issue before citing numbers for this cell.
"""

from __future__ import annotations

from typing import Any

from torch import nn

C3, C1, MP = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"

RESNET_LIKE = (
    [[0, 1, 0, 1],
     [0, 0, 1, 0],
     [0, 0, 0, 1],
     [0, 0, 0, 0]],
    ["input", C3, C3, "output"],
)  # fmt: skip

BEST_MATRIX = [
    [0, 1, 0, 0, 1, 1, 1],
    [0, 0, 1, 0, 0, 0, 0],
    [0, 0, 0, 1, 0, 0, 0],
    [0, 0, 0, 0, 0, 1, 0],
    [0, 0, 0, 0, 0, 1, 0],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 0],
]  # fmt: skip
BEST_OPS = ["input", C3, C3, MP, C3, C3, "output"]  # assumed, see the module docstring
BEST = (BEST_MATRIX, BEST_OPS)

CELLS = {"resnet_like": RESNET_LIKE, "best": BEST}


def network(cell: tuple[list[list[int]], list[str]], **kwargs: Any) -> nn.Module:
    """``nasbench_pytorch.model.Network`` for ``cell``; ``kwargs`` go to its constructor (``stem_out_channels``,
    ``num_stacks``, ``num_modules_per_stack``, ``num_labels``)."""
    from nasbench_pytorch.model import ModelSpec, Network

    return Network(ModelSpec(*cell), **kwargs)


def resnet_like(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """The ResNet-like cell at the package's default stem and stacks (``num_classes``/``in_chans`` as the study
    passes them: ``redistribute study examples/nasbench101.py:resnet_like --data cifar10:DIR``)."""
    return network(RESNET_LIKE, num_labels=num_classes, in_channels=in_chans, **kwargs)


def best(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """NAS-Bench-101's best cell (see :data:`BEST_OPS` for what is assumed) at the default stem and stacks."""
    return network(BEST, num_labels=num_classes, in_channels=in_chans, **kwargs)
