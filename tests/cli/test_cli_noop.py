"""No silent no-ops: when nothing changes the CLI says why and what to do; fixed groups are named in the summary."""

from __future__ import annotations

import json
from pathlib import Path

NET = """
import torch.nn as nn

class MaxNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.c = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.b(self.a(x).relu()).relu()
        x = x * x.max(dim=1, keepdim=True).values.max()  # an unsupported reduction over channels fixes b's width
        return self.fc(self.c(x).relu().mean((2, 3)))

def make():
    return MaxNet()
"""


def test_vit_under_conv_scope_says_nothing_changed_and_suggests_scope_all(cli):
    res = cli("timm:test_vit", "-t", "d", "--json")
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["changed_groups"] == 0 and data["free_groups"] == 1
    assert "nothing changed" in data["note"] and "--scope all" in data["note"]
    notes = [line for line in res.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "--scope all" in notes[0] and "Traceback" not in res.stderr
    fixed = cli("timm:test_vit", "-t", "d", "--scope", "all", "--json")
    assert fixed.exit_code == 0, fixed.stderr
    assert json.loads(fixed.stdout)["changed_groups"] > 0 and "note:" not in fixed.stderr


def test_summary_names_a_group_fixed_by_an_unsupported_op(cli, tmp_path: Path):
    (tmp_path / "nets.py").write_text(NET)
    args = (f"{tmp_path / 'nets.py'}:make", "-t", "a", "--divisor", "1", "--input-size", "3,32,32")
    res = cli(*args, "--json")
    assert res.exit_code == 0, res.stderr
    held = json.loads(res.stdout)["held_groups"]
    assert [(h["producers"], h["reason"]) for h in held] == [(["b"], "unsupported op 'max' at node 'max_1'")]
    table = cli(*args)
    assert table.exit_code == 0 and "fixed groups a template would have changed" in table.stdout
    assert "unsupported op 'max'" in table.stdout
