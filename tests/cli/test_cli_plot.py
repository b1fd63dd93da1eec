"""Plots: params ratio in every title, integer layer ticks, a tick at the smallest width, per-model panel titles."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from redistribute.study.plot import plans_from_specs, plot_plans


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from typer.testing import CliRunner

    from redistribute.cli import app

    root = tmp_path_factory.mktemp("specs")
    runs = [("timm:test_resnet", "d", ()), ("timm:test_resnet", "a", ()), ("timm:test_vit", "d", ("--scope", "all"))]
    for i, (model, template, extra) in enumerate(runs):
        args = [model, "-t", template, "--divisor", "1", "--input-size", "3,32,32", *extra, "--out", str(root / str(i))]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.stderr
    return [root / str(i) for i in range(len(runs))]


def test_one_model_titles_carry_the_params_ratio_and_ticks_are_integers(specs: list[Path]):
    plans = plans_from_specs(specs[:2])
    fig = plot_plans(plans)
    assert fig._suptitle.get_text() == "timm:test_resnet"
    for ax, p in zip(fig.axes, plans, strict=True):
        ratio = p.cost.params / p.base_cost.params
        assert ax.get_title().endswith(f" · params {ratio:.3f}x") and "MFLOPs" in ax.get_title()
        assert all(float(t).is_integer() for t in ax.get_xticks())


def test_smallest_width_has_its_own_tick(specs: list[Path]):
    from redistribute.study.plot import layer_widths

    plans = plans_from_specs(specs[:2])
    smallest = min(w for p in plans for _, b, n in layer_widths(p) for w in (b, n))
    ax = plot_plans(plans).axes[0]
    assert smallest in [int(t) for t in ax.get_yticks()]
    assert str(smallest) in [label.get_text() for label in ax.get_yticklabels()]


def test_specs_of_several_models_title_each_panel_with_its_model(cli, specs: list[Path], tmp_path: Path):
    fig = plot_plans(plans_from_specs(specs))
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == [
        "timm:test_resnet",
        "timm:test_resnet",
        "timm:test_vit",
    ]
    assert fig._suptitle is None
    res = cli("plot", *map(str, specs), "-o", str(tmp_path / "w.png"))
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"
