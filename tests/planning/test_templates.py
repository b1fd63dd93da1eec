"""Templates: the a..e formulas, aliases, control points and their errors."""

from __future__ import annotations

import itertools
import math

import pytest

import redistribute
from redistribute import TemplateError, get_template, list_templates, register_template
from redistribute.planning import templates as _templates

R = 8.0
BUILTIN = ["a", "b", "c", "d", "e"]
NAMES = ["base", "a", "b", "c", "d", "e", "increasing", "uniform", "decreasing", "peak", "valley"]

# T(p, r=8) at p = 0, 0.5, 1
EXPECTED = {
    "a": (1 / 8, 1 / 8 + (7 / 8) * 0.5, 1.0),  # increasing
    "b": (1.0, 1.0, 1.0),  # uniform
    "c": (1.0, 1 - (7 / 8) * 0.5, 1 / 8),  # decreasing
    "d": (1 / 8, 1.0, 1 / 8),  # peak
    "e": (1.0, 1 / 8, 1.0),  # valley
}


@pytest.mark.parametrize("name", BUILTIN)
def test_formulas_at_ends_and_middle(name: str) -> None:
    t = get_template(name)
    got = tuple(t(p, R) for p in (0.0, 0.5, 1.0))
    assert got == pytest.approx(EXPECTED[name], abs=1e-12)


def test_exact_values() -> None:
    assert get_template("a")(0.5, R) == pytest.approx(0.5625)
    assert get_template("c")(0.5, R) == pytest.approx(0.5625)
    assert get_template("d")(0.25, R) == pytest.approx(1 / 8 + 7 / 8 * 0.5)
    assert get_template("e")(0.75, R) == pytest.approx(1 - 7 / 8 * 0.5)
    # the range r matters: r = 2 halves the ends
    assert get_template("d")(0.0, 2.0) == pytest.approx(0.5)
    assert get_template("a")(0.0, 4.0) == pytest.approx(0.25)


@pytest.mark.parametrize("name", BUILTIN)
def test_range_is_one_over_r_to_one(name: str) -> None:
    values = [get_template(name)(i / 100, R) for i in range(101)]
    assert min(values) >= 1 / R - 1e-12 and max(values) <= 1 + 1e-12


def test_shapes_monotone_and_symmetric() -> None:
    ps = [i / 20 for i in range(21)]
    a, c = get_template("a"), get_template("c")
    assert all(a(p, R) < a(q, R) for p, q in itertools.pairwise(ps))
    assert all(c(p, R) > c(q, R) for p, q in itertools.pairwise(ps))
    for name in ("d", "e"):
        t = get_template(name)
        assert all(t(p, R) == pytest.approx(t(1 - p, R)) for p in ps)
    for p in ps:
        assert a(p, R) == pytest.approx(c(1 - p, R))
        assert get_template("d")(p, R) + get_template("e")(p, R) == pytest.approx(1 + 1 / R)


@pytest.mark.parametrize(
    "alias,name", [("increasing", "a"), ("uniform", "b"), ("decreasing", "c"), ("peak", "d"), ("valley", "e")]
)
def test_aliases(alias: str, name: str) -> None:
    t = get_template(alias)
    assert t is get_template(name)
    assert t.name == name and t.alias == alias
    assert get_template(alias.upper()) is t
    assert get_template(f"  {alias} ") is t
    assert get_template(name.upper()) is t


def test_base_template() -> None:
    t = get_template("base")
    assert t.is_base and t.name == "base"
    assert not get_template("d").is_base
    with pytest.raises(TemplateError):
        t(0.5, R)


def test_list_templates_builtins_first() -> None:
    names = [t.name for t in list_templates()]
    assert names[:6] == ["base", "a", "b", "c", "d", "e"]
    assert all(t.description for t in list_templates()[:6])


def test_template_instance_and_callable_pass_through() -> None:
    t = get_template("d")
    assert get_template(t) is t

    def rising(p: float) -> float:
        return 1.0 + p

    c = get_template(rising)
    assert c.name == "rising" and not c.is_base
    assert c(0.25, R) == 1.25 and c(0.25, 2.0) == 1.25  # a p -> float callable ignores r


# -- control points -------------------------------------------------------------------------------------------
def test_control_points_piecewise_linear_normalised_to_max() -> None:
    t = get_template("0:1,0.5:4,1:1")
    assert t.name == "0:1,0.5:4,1:1" and not t.is_base
    assert t(0.0, R) == pytest.approx(0.25)
    assert t(0.5, R) == pytest.approx(1.0)
    assert t(1.0, R) == pytest.approx(0.25)
    assert t(0.25, R) == pytest.approx((1 + 0.5 * 3) / 4)
    assert t(0.75, R) == pytest.approx((4 - 0.5 * 3) / 4)
    assert t(0.3, 2.0) == t(0.3, 100.0)  # r is not used by control points


def test_control_points_unsorted_and_spaced() -> None:
    t = get_template(" 1:2, 0:1 ")
    assert t(0.0, R) == pytest.approx(0.5)
    assert t(0.5, R) == pytest.approx(0.75)
    assert t(1.0, R) == pytest.approx(1.0)


def test_control_points_reproduce_a_builtin() -> None:
    t = get_template("0:1,1:8")
    a = get_template("a")
    for i in range(11):
        assert t(i / 10, R) == pytest.approx(a(i / 10, R))


@pytest.mark.parametrize(
    "spec",
    ["0:1,0.5,1:1", "0:1,x:2,1:1", "0-1,1:1", "0:1:2,1:1", "0:1,,1:1", "0:1,1:"],
)
def test_control_points_malformed(spec: str) -> None:
    with pytest.raises(TemplateError, match="position:value") as exc:
        get_template(spec)
    assert "0:1,0.5:4,1:1" in str(exc.value)  # the message shows a valid example


@pytest.mark.parametrize(
    "spec", ["0:1,1.5:2", "-0.1:1,1:1", "0:0,1:1", "0:1,1:-2", "0:nan,1:1", "0:inf,1:1", "nan:1,1:1"]
)
def test_control_points_out_of_range(spec: str) -> None:
    with pytest.raises(TemplateError, match="out of range"):
        get_template(spec)


@pytest.mark.parametrize("spec", ["0:1", "0.1:1,1:2", "0:1,0.9:2", "0.5:1"])
def test_control_points_missing_endpoints(spec: str) -> None:
    with pytest.raises(TemplateError, match="positions 0 and 1"):
        get_template(spec)


@pytest.mark.parametrize("spec", ["0:1,x:2,1:1", "0:1,1.5:2", "0:1"])
def test_control_point_errors_list_valid_names(spec: str) -> None:
    with pytest.raises(TemplateError) as exc:
        get_template(spec)
    assert all(n in str(exc.value) for n in ("peak", "valley", "base"))


# -- unknown names --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["f", "peek", "base2", "zigzag"])
def test_unknown_template_lists_valid_names(name: str) -> None:
    with pytest.raises(TemplateError) as exc:
        get_template(name)
    msg = str(exc.value)
    assert repr(name) in msg
    for valid in NAMES:
        assert valid in msg
    assert "0:1,0.5:4,1:1" in msg


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_non_name_template(bad: object) -> None:
    with pytest.raises(TemplateError):
        get_template(bad)  # type: ignore[arg-type]


def test_template_error_is_usage_error() -> None:
    with pytest.raises(redistribute.UsageError):
        get_template("nope")
    assert TemplateError("x").exit_code == 2
    assert issubclass(TemplateError, ValueError)
    assert issubclass(TemplateError, redistribute.RedistributeError)


def test_plan_rejects_unknown_template() -> None:
    import torch
    from torch import nn

    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    with pytest.raises(TemplateError, match="peak"):
        redistribute.plan(m, "nope", input_size=(3, 8, 8))
    assert torch.is_tensor(m[0].weight)


# -- registration ---------------------------------------------------------------------------------------------
@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_templates, "TEMPLATES", dict(_templates.TEMPLATES))
    monkeypatch.setattr(_templates, "_ALIASES", dict(_templates._ALIASES))


@pytest.mark.usefixtures("isolated_registry")
def test_register_template_with_alias() -> None:
    @register_template("zz_steps", alias="zz_stairs", description="two steps")
    def steps(p: float, r: float) -> float:
        return 1.0 if p > 0.5 else 1.0 / r

    assert get_template("zz_steps")(0.9, R) == 1.0
    assert get_template("zz_steps")(0.1, R) == 1 / R
    assert get_template("ZZ_STAIRS") is get_template("zz_steps")
    assert "zz_steps" in [t.name for t in list_templates()]
    with pytest.raises(TemplateError, match="zz_steps"):
        get_template("unknown-one")


def test_registry_isolation_restored() -> None:
    assert "zz_steps" not in _templates.TEMPLATES
    assert math.isclose(get_template("d")(0.5, R), 1.0)
