"""take() and the L1 scores: the fast paths (plain copy, slice fills, blocked sums) agree with the definitions."""

from __future__ import annotations

import pytest
import torch

from redistribute.surgery.handlers import _prepare, forget_prepared, take
from redistribute.surgery.rebuild import _l1_rows

MAPS = {
    "grow (old in order, new last)": [0, 1, 2, 3, 4, 5, -1, -1, -1],
    "shrink (a prefix)": [0, 1, 2],
    "shrink (a subset)": [0, 2, 5],
    "new in the middle": [0, 1, -1, -1, 2, 3],
    "new scattered": [-1, 0, -1, 3, 5, -1],
    "reordered, new last": [1, 0, 2, -1],
}


@pytest.mark.parametrize("dim", [0, 1, 2])
@pytest.mark.parametrize("fill", [0.0, 1.0, "mean"])
@pytest.mark.parametrize("case", sorted(MAPS))
def test_take_matches_gather_and_fill(case: str, fill: str | float, dim: int) -> None:
    forget_prepared()
    t = torch.randn(6, 6, 6, 3)
    idx = torch.tensor(MAPS[case])
    out = take(t, dim, idx, fill)
    expected_shape = list(t.shape)
    expected_shape[dim] = idx.numel()
    assert list(out.shape) == expected_shape and out.is_contiguous()
    assert out.untyped_storage().data_ptr() != t.untyped_storage().data_ptr()
    for pos, old in enumerate(MAPS[case]):
        got = out.select(dim, pos)
        if old >= 0:
            torch.testing.assert_close(got, t.select(dim, old))
        elif fill == "mean":
            torch.testing.assert_close(got, t.mean(dim))
        else:
            assert bool((got == fill).all())


@pytest.mark.parametrize("case", sorted(MAPS))
def test_kaiming_fills_only_new_positions(case: str) -> None:
    forget_prepared()
    t = torch.randn(6, 5, 3, 3)
    idx = torch.tensor(MAPS[case])
    out = take(t, 0, idx, "kaiming")
    bound = 1.0 / (5 * 9) ** 0.5  # kaiming_uniform_(a=sqrt(5)) on fan_in 45
    for pos, old in enumerate(MAPS[case]):
        if old >= 0:
            torch.testing.assert_close(out[pos], t[old])
        else:
            assert 0 < float(out[pos].abs().max()) <= bound + 1e-6


def test_prepare_classifies_maps() -> None:
    forget_prepared()
    grow = _prepare(torch.tensor(MAPS["grow (old in order, new last)"]))
    assert grow.prefix == 6 and grow.span == (6, 3)
    middle = _prepare(torch.tensor(MAPS["new in the middle"]))
    assert middle.prefix == 0 and middle.span == (2, 2)
    scattered = _prepare(torch.tensor(MAPS["new scattered"]))
    assert scattered.prefix == 0 and scattered.span is None
    assert _prepare(torch.tensor(MAPS["reordered, new last"])).prefix == 0


@pytest.mark.parametrize("block", [1 << 20, 64, 1])
def test_l1_rows_equals_vector_norm(block: int) -> None:
    flat = torch.randn(50, 37)
    torch.testing.assert_close(_l1_rows(flat, block), torch.linalg.vector_norm(flat, ord=1, dim=1))
