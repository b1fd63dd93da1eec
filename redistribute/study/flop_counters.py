"""Other FLOP counters on a built model, for cross-checking the analytic count: ``FlopCounterMode``, thop, ptflops.

They follow other conventions than ours (see the README's "FLOPs conventions"), so they differ by design: thop
adds BatchNorm and pooling, ptflops adds biases, and ``FlopCounterMode`` counts every matmul.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["FlopCounts", "count_flops", "mha_decomposed", "sdpa_on_cpu"]

_logger = logging.getLogger(__name__)


def sdpa_on_cpu() -> dict[Any, Any]:
    """A ``FlopCounterMode`` ``custom_mapping`` for SDPA's CPU kernel, which it has no formula for (flash's fits)."""
    from torch.utils.flop_counter import sdpa_flop_count  # lazy: keeps torch's flop counter out of import time

    return {
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *_, **__: sdpa_flop_count(q, k, v)
    }


@contextlib.contextmanager
def mha_decomposed() -> Any:
    """``nn.MultiheadAttention`` without its fused inference fast path, restored on exit.

    In eval mode on CPU it runs ``aten._native_multi_head_attention``, which ``FlopCounterMode`` has no formula for,
    so a counter misses the projections and products (torchvision's ViT-B/32: 2.95 G counted of 4.41 G). Without
    the fast path the same maths runs as linear layers and attention products, which it counts.

    Example:
        >>> with mha_decomposed():
        ...     torch.backends.mha.get_fastpath_enabled()
        False
    """
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


@dataclass(frozen=True)
class FlopCounts:
    """Multiply-accumulates of one built model at batch 1, as three counters report them.

    Attributes:
        flop_counter: ``FlopCounterMode().get_total_flops() / 2``.
        thop: ``thop.profile(model, (x,))[0]``.
        ptflops: ``ptflops.get_model_complexity_info(model, size, backend="aten")[0]`` (NaN when it fails).
    """

    flop_counter: float
    thop: float
    ptflops: float


def count_flops(model: nn.Module, input_size: tuple[int, ...]) -> FlopCounts:
    """MACs of ``model`` at batch 1 by ``FlopCounterMode`` (halved), thop and ptflops' aten backend.

    The counters run on copies, so thop's and ptflops' hooks and buffers never touch ``model``.
    """
    import thop
    from ptflops import get_model_complexity_info
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, *input_size)
    m = copy.deepcopy(model).cpu().eval()
    with torch.no_grad(), mha_decomposed(), FlopCounterMode(display=False, custom_mapping=sdpa_on_cpu()) as fc:
        m(x)
    sink = io.StringIO()
    with torch.no_grad(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        thop_macs, _ = thop.profile(copy.deepcopy(m), inputs=(x,), verbose=False)
        pt_macs, _ = get_model_complexity_info(
            copy.deepcopy(m),
            tuple(input_size),
            backend="aten",
            as_strings=False,
            print_per_layer_stat=False,
            verbose=False,
        )
    if pt_macs is None:
        _logger.warning("ptflops could not count %s: %s", type(model).__name__, sink.getvalue().strip()[-200:])
    return FlopCounts(
        flop_counter=fc.get_total_flops() / 2,
        thop=float(thop_macs),
        ptflops=float(pt_macs) if pt_macs is not None else float("nan"),
    )
