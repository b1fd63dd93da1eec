"""Carrying pretrained weights across surgery: checkpoints in, important channels kept, growth preserving."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import INPUT, group_of, make_net, state_hash
from torch import nn
from typer.testing import CliRunner

import redistribute
from redistribute.cli import app
from redistribute.planning.planner import plan_from_widths
from redistribute.surgery.rebuild import channel_normalized_groups, select_channels

SMALL = (3, 64, 64)


def _trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial norm parameters and statistics (timm zero-inits some), so outputs depend on every layer."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
                n = m.weight.numel()
                m.weight.copy_((torch.rand(n, generator=g) + 0.5).view_as(m.weight))
                m.bias.copy_((torch.randn(n, generator=g) * 0.2).view_as(m.bias))
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if hasattr(m, "gamma") and isinstance(m.gamma, nn.Parameter):  # ConvNeXt layer scale (1e-6 at init)
                m.gamma.copy_(torch.rand(m.gamma.shape, generator=g) + 0.5)
    return model.eval()


def _checkpoint(tmp_path: Path, name: str, **kwargs: object) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    trained = _trained_like(timm.create_model(name, **kwargs))
    path = tmp_path / f"{name}.pth"
    torch.save({"epoch": 9, "state_dict": trained.state_dict()}, path)  # a timm training checkpoint
    return trained, path


# -- growing keeps the function, with weights from a checkpoint --------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["resnet50", "mobilenetv3_large_100", "convnext_tiny", "densenet121", "efficientnet_b0"]
)
def test_grow_only_from_checkpoint_preserves_outputs(tmp_path: Path, name: str) -> None:
    trained, path = _checkpoint(tmp_path, name)
    fresh = timm.create_model(name)  # other random weights: the checkpoint must be what is carried over
    graph = redistribute.trace(fresh, SMALL)
    # Groups a LayerNorm normalises across (ConvNeXt's residual streams) cannot grow without changing its
    # statistics; every other free group grows by a quarter, rounded to its constraints.
    skip = channel_normalized_groups(fresh, graph)
    widths = {}
    for g in graph.free_groups():
        step = max(g.multiple, g.block, 1)
        widths[g.id] = g.width if g.id in skip else g.width + step * max(1, g.width // (4 * step))
    p = plan_from_widths(graph, widths)
    assert sum(1 for old, new in p.changed().values() if new > old) >= 10
    assert all(new >= old for old, new in p.changed().values())
    new = redistribute.apply(fresh, p, weights=path).eval()
    x = torch.randn(2, *SMALL)
    with torch.no_grad():
        ref, out = trained(x), new(x)
    assert ref.abs().max() > 0.1  # outputs carry signal, so the tolerance below means something
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_growing_a_layernormed_group_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    m = _trained_like(timm.create_model("test_convnext"))
    graph = redistribute.trace(m, SMALL)
    normalized = channel_normalized_groups(m, graph)
    assert normalized  # ConvNeXt's streams go through LayerNorm2d
    gid = next(iter(normalized))
    g = graph.groups[gid]
    p = plan_from_widths(graph, {gid: g.width + 8 * max(g.multiple, 1)})
    with caplog.at_level(logging.INFO, logger="redistribute"):
        new = redistribute.apply(m, p).eval()
    assert any(f"g{gid}" in r.getMessage() and "normalises across" in r.getMessage() for r in caplog.records)
    x = torch.randn(2, *SMALL)
    with torch.no_grad():
        assert not torch.allclose(new(x), m.eval()(x), atol=1e-4)  # the warning is true: the function changed
    rows = redistribute.transfer_report(m, p)
    assert [r.preserving for r in rows if r.group == gid] == [False]


# -- shrinking keeps the channels that matter, consistently over a group -----------------------------------------
def test_planted_channels_are_kept_across_residual_coupled_layers() -> None:
    m = make_net("residual")
    graph = redistribute.trace(m, INPUT)
    stream = group_of(graph, "conv3")  # conv3 + proj (+ conv5 via the identity shortcut) share one group
    assert {"conv3", "proj", "conv5"} <= set(stream.producers)
    planted = torch.tensor([3, 11, 17, 29])
    with torch.no_grad():
        for layer in (m.conv3, m.proj, m.conv5):
            layer.weight.mul_(0.01)
            layer.weight[planted] *= 1000.0
    p = plan_from_widths(graph, {stream.id: 4})
    new = redistribute.apply(m, p)
    kept = select_channels(m, p)[stream.id]
    assert kept.tolist() == planted.tolist()  # exactly the planted ones, in their order
    for old_layer, new_layer in ((m.conv3, new.conv3), (m.proj, new.proj), (m.conv5, new.conv5)):
        assert torch.equal(new_layer.weight, old_layer.weight[kept])
    for old_bn, new_bn in ((m.bn3, new.bn3), (m.bnp, new.bnp), (m.bn5, new.bn5)):
        assert torch.equal(new_bn.running_mean, old_bn.running_mean[kept])
    assert torch.equal(new.conv4.weight, m.conv4.weight[:, kept])  # the consumer reads the same channels
    assert torch.equal(new.fc.weight, m.fc.weight[:, kept])
    (row,) = [r for r in redistribute.transfer_report(m, p) if r.group == stream.id]
    assert row.base == 32 and row.new == row.kept == 4 and row.kept_mass > 0.9


def test_carried_weights_beat_fresh_weights_at_template_d() -> None:
    torch.manual_seed(0)
    m = _trained_like(timm.create_model("resnet18", num_classes=10))
    p = redistribute.plan(m, "d", input_size=SMALL)
    assert p.changed()
    carried = redistribute.apply(m, p).eval()
    torch.manual_seed(1)
    fresh = redistribute.load(
        redistribute.spec_from_plan(p), model=timm.create_model("resnet18", num_classes=10)
    ).eval()
    x = torch.randn(32, *SMALL)
    with torch.no_grad():
        ref, a, b = m(x), carried(x), fresh(x)
    cos_carried = F.cosine_similarity(ref, a).mean().item()
    cos_fresh = F.cosine_similarity(ref, b).mean().item()
    assert cos_carried > cos_fresh + 0.2, (cos_carried, cos_fresh)


# -- weight sources ------------------------------------------------------------------------------------------------
def test_apply_with_weights_uses_them_and_shares_nothing(tmp_path: Path) -> None:
    trained, path = _checkpoint(tmp_path, "test_resnet")
    fresh = timm.create_model("test_resnet")
    before = state_hash(fresh)
    p = redistribute.plan(fresh, "base", match="none", k=1.0, input_size=SMALL)
    for weights in (path, trained.state_dict()):
        new = redistribute.apply(fresh, p, weights=weights).eval()
        assert state_hash(new) == state_hash(trained)
        with torch.no_grad():
            next(new.parameters()).add_(1.0)  # writing into the result touches neither source
    assert state_hash(fresh) == before
    assert state_hash(timm.create_model("test_resnet")) != before  # (the hash does see weights)
    torch.testing.assert_close(trained.state_dict(), torch.load(path, weights_only=True)["state_dict"])


def test_checkpoint_formats(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model = timm.create_model("test_resnet")
    ema = _trained_like(timm.create_model("test_resnet"), seed=3)
    sd = model.state_dict()
    torch.save({"state_dict": sd, "state_dict_ema": ema.state_dict()}, tmp_path / "train.pth.tar")
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "ddp.pt")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    target = timm.create_model("test_resnet")
    redistribute.load_checkpoint(target, tmp_path / "train.pth.tar")
    assert state_hash(target) == state_hash(ema)  # timm's default: EMA weights when present
    for name in ("ddp.pt", "w.safetensors"):
        target = timm.create_model("test_resnet")
        redistribute.load_checkpoint(target, tmp_path / name)
        assert state_hash(target) == state_hash(model)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: p.write_bytes(b"not a checkpoint"), "cannot read checkpoint"),
        (lambda p: torch.save({"fc.weight": torch.zeros(3)}, p), "lacks 'conv1.0.weight'"),
        (
            lambda p: torch.save({**timm.create_model("test_resnet").state_dict(), "extra.weight": torch.zeros(1)}, p),
            "'extra.weight'",
        ),
        (
            lambda p: torch.save({**timm.create_model("test_resnet").state_dict(), "fc.bias": torch.zeros(5)}, p),
            "'fc.bias' has shape (5,)",
        ),
    ],
)
def test_cli_bad_checkpoint_names_key_and_writes_nothing(tmp_path: Path, write, message: str) -> None:
    ck = tmp_path / "ck.pth"
    write(ck)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["timm:test_resnet", "--input-size", "3,64,64", "--checkpoint", str(ck), "--out", str(out)]
    )
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()[-1]) > 20
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_cli_checkpoint_roundtrip_is_bit_identical(tmp_path: Path) -> None:
    trained, ck = _checkpoint(tmp_path, "test_resnet")
    out = tmp_path / "out"
    args = [
        "timm:test_resnet",
        "-t",
        "d",
        "--input-size",
        "3,64,64",
        "--checkpoint",
        str(ck),
        "--out",
        str(out),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["transfer"] and all(0.0 < r["kept_mass"] <= 1.0 for r in summary["transfer"])
    loaded = redistribute.load(out / "spec.json", weights=out / "weights.safetensors").eval()
    p = redistribute.plan(trained, "d", input_size=SMALL)
    expected = redistribute.apply(trained, p).eval()
    x = torch.randn(2, *SMALL)
    with torch.no_grad():
        assert torch.equal(loaded(x), expected(x))


def test_pretrained_offline_names_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-cache")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", "/nonexistent-cache")
    with pytest.raises(redistribute.CheckpointError, match=r"timm:resnet18 .*not in the cache .*--checkpoint"):
        redistribute.load_model("timm:resnet18", pretrained=True)
    result = CliRunner().invoke(app, ["timm:resnet18", "--pretrained"])
    assert result.exit_code == 1 and "not in the cache" in result.stderr and "Traceback" not in result.stderr


def test_pretrained_needs_a_zoo_source(tmp_path: Path) -> None:
    f = tmp_path / "net.py"
    f.write_text("import torch\ndef build():\n    return torch.nn.Conv2d(3, 4, 3)\n")
    with pytest.raises(redistribute.SourceError, match="--checkpoint"):
        redistribute.load_model(f"{f}:build", pretrained=True)


# -- BatchNorm re-estimation ---------------------------------------------------------------------------------------
def test_recalibrate_bn_matches_data_statistics() -> None:
    m = make_net("plain")
    batches = [torch.randn(16, *INPUT) * 2.0 + 1.0 for _ in range(4)]
    modes = {n: mod.training for n, mod in m.named_modules()}
    assert redistribute.recalibrate_bn_(m, batches) == 4
    with torch.no_grad():
        feats = torch.cat([m.conv1(x) for x in batches])
    torch.testing.assert_close(m.bn1.running_mean, feats.mean((0, 2, 3)), atol=1e-4, rtol=1e-4)
    assert m.bn1.momentum == 0.1  # restored
    assert {n: mod.training for n, mod in m.named_modules()} == modes


def test_cli_calibrate_from_folder(tmp_path: Path) -> None:
    from PIL import Image

    data = tmp_path / "images" / "cls"
    data.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(6):
        pixels = (torch.rand(40, 40, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(data / f"{i}.png")
    out = tmp_path / "out"
    args = [
        "timm:test_resnet",
        "--input-size",
        "3,64,64",
        "--out",
        str(out),
        "--calibrate",
        str(tmp_path / "images"),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["calibrated_batches"] == 1
    missing = CliRunner().invoke(
        app, ["timm:test_resnet", "--out", str(tmp_path / "o2"), "--calibrate", str(tmp_path / "nope")]
    )
    assert missing.exit_code == 2 and "calibration folder" in missing.stderr
