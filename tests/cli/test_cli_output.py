"""Output that reads well: plain tables off a terminal, figures instead of k, a per-group view, JSON for scripts."""

from __future__ import annotations

import json
import re

import pytest

from redistribute.cli.checks import template_list

BOX = set("┃━│─┏┓┗┛┡┩╇╈┳┻")
FAST = ("timm:test_resnet", "--input-size", "3,64,64")
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def _keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


@pytest.mark.parametrize(
    "args",
    [FAST, ("inspect", "timm:test_vit"), ("templates",), ("compare", *FAST, "--no-measure", "--templates", "a")],
)
def test_tables_off_a_terminal_are_plain_and_never_wrap_a_name(cli, args):
    res = cli(*args)
    assert res.exit_code == 0, res.stderr
    assert not BOX & set(res.stdout), res.stdout
    if args[0] == "inspect":  # 80 columns would fold this producer list mid-name
        assert "patch_embed.proj, blocks.0.attn.proj, blocks.0.mlp.fc2 (+10)" in res.stdout


def test_headline_gives_ratios_and_stage_widths_instead_of_k(cli):
    res = cli(*FAST, "-t", "d")
    assert res.exit_code == 0, res.stderr
    head = res.stdout.splitlines()[0]
    assert "k=" not in head and "FLOPs 1.000x (matched)" in head and "params 0.206x" in head
    assert "stage widths 16-120 -> 12-48" in head


def test_json_counts_are_integers_keys_identifiers_and_k_explained(cli):
    res = cli(*FAST, "-t", "a", "--groups", "--json")
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert all(isinstance(v, int) for t in data["totals"].values() for v in (t["base"], t["new"]))
    assert isinstance(data["target"], int) and "stage-trend width" in data["k_is"]
    assert all(IDENTIFIER.fullmatch(k) for k in _keys(data)), sorted(_keys(data))
    rows = {r["id"]: r for r in data["group_rows"]}
    assert len(rows) == 13 and rows[0]["fixed"] == "model input" and rows[0]["new"] == rows[0]["width"] == 3
    assert rows[1]["new"] == data["groups"][0]["width"]  # g1, the stem conv, is the first free group
    templates = json.loads(cli("templates", "--json").stdout)
    assert all(IDENTIFIER.fullmatch(k) for k in _keys(templates))


def test_groups_lists_every_group_with_base_and_new_width(cli):
    res = cli(*FAST, "-t", "d", "--groups")
    assert res.exit_code == 0, res.stderr
    assert "timm:test_resnet: every group" in res.stdout
    row = next(line for line in res.stdout.splitlines() if line.split()[:1] == ["g9"])
    assert row.split()[:6] == ["g9", "192", "48", "conv", "4x4", "0.75"]
    assert "fixed: model output" in res.stdout


def test_options_ignore_case_alike(cli):
    upper = cli(*FAST, "--template", "D", "--match", "FLOPs", "--scope", "CONV", "--json")
    lower = cli(*FAST, "--template", "d", "--match", "flops", "--scope", "conv", "--json")
    assert upper.exit_code == 0 and lower.exit_code == 0, upper.stderr
    assert json.loads(upper.stdout)["totals"] == json.loads(lower.stdout)["totals"]


def test_compare_json_memory_is_bytes_and_custom_templates_are_accepted(cli):
    res = cli("compare", *FAST, "--no-measure", "--templates", "a,0:1,0.5:4,1:1", "--templates", "d", "--json")
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)["rows"]
    assert [r["template"] for r in rows] == ["base", "a", "0:1,0.5:4,1:1", "d"]
    assert all(isinstance(r["memory"], int) and r["memory"] > 2**20 for r in rows)
    assert all(IDENTIFIER.fullmatch(k) for k in _keys(rows))


def test_template_list_splits_names_and_keeps_control_points_whole():
    assert template_list(["a,0:1,0.5:4,1:1", "d;0:2,1:1"]) == ["a", "0:1,0.5:4,1:1", "d", "0:2,1:1"]
    assert template_list(["0:1,1:2;0:2,1:1"]) == ["0:1,1:2", "0:2,1:1"]
