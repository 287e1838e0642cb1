"""The SR U-Net computes the original function and has the original state-dict layout.

Fixtures were produced by running MM-Diffusion's own `ImageSuperResModel` (see the fixtures README).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from avbench.models.state_dict import seeded_state_dict
from avbench.models.superres import AttentionBlock, SuperResConfig, SuperResUNet


# Produced by the original code (see fixtures/mmdiffusion/README.md); committed with the tests.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mmdiffusion"


pytestmark = pytest.mark.usefixtures("one_thread")


def listing(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def test_full_config_matches_original_listing_and_parameter_count():
    with torch.device("meta"):  # 311M parameters: shapes only, no memory
        model = SuperResUNet(SuperResConfig.seed())
    ref = json.loads((FIXTURES / "sr_64_256_state_dict_shapes.json").read_text())
    got = listing(model)
    assert len(got) == len(ref) == 566
    for (gk, gs), (rk, rs) in zip(got, ref):
        assert (gk, gs) == (rk, rs)
    assert sum(p.numel() for p in model.parameters()) == 311_027_910


def test_small_config_parity_fp32_cpu():
    torch.manual_seed(0)
    model = SuperResUNet(SuperResConfig.fixture_small()).eval()
    assert listing(model) == json.loads((FIXTURES / "sr_small_state_dict_shapes.json").read_text())
    weights, g = seeded_state_dict(model.state_dict(), 4321)
    model.load_state_dict(weights, strict=True)
    assert sum(p.numel() for p in model.parameters()) == 8_676_390

    data = np.load(FIXTURES / "sr_small_parity.npz")
    # The generator continues into the inputs: proves the recipe (key order, draws) was applied exactly.
    x = torch.randn(2, 3, 256, 256, generator=g, dtype=torch.float64).float()
    low_res = torch.randn(2, 3, 64, 64, generator=g, dtype=torch.float64).float()
    assert torch.equal(x, torch.from_numpy(data["x"]))
    assert torch.equal(low_res, torch.from_numpy(data["low_res"]))

    with torch.no_grad():
        out = model(x, torch.from_numpy(data["t"]), low_res)
    ref = torch.from_numpy(data["out"])
    assert out.dtype == torch.float32 and out.shape == (2, 6, 256, 256)
    rel = ((out - ref).norm() / ref.norm()).item()
    assert rel < 1e-5, f"relative error {rel:.3e}"


def _naive_attention(block: AttentionBlock, x: torch.Tensor, legacy: bool) -> torch.Tensor:
    """Straight transcription of the two head layouts with explicit softmax, in float64."""
    b, c, hh, ww = x.shape
    tokens = x.double().reshape(b, c, -1)
    normed = torch.nn.functional.group_norm(
        tokens, block.norm.num_groups, block.norm.weight.double(), block.norm.bias.double(), block.norm.eps
    )
    qkv = torch.nn.functional.conv1d(normed, block.qkv.weight.double(), block.qkv.bias.double())
    heads = block.num_heads
    ch = c // heads
    if legacy:
        q, k, v = qkv.reshape(b * heads, 3 * ch, -1).split(ch, dim=1)
    else:
        q, k, v = (t.reshape(b * heads, ch, -1) for t in qkv.chunk(3, dim=1))
    w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(ch), dim=-1)
    a = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, -1)
    h = torch.nn.functional.conv1d(a, block.proj_out.weight.double(), block.proj_out.bias.double())
    return (tokens + h).reshape(b, c, hh, ww)


@pytest.mark.parametrize("order", ["legacy", "qkv_first"])
def test_sdpa_attention_matches_explicit_softmax_for_both_head_layouts(order):
    cfg = SuperResConfig(model_channels=64, attention_order=order)
    block = AttentionBlock(128, num_heads=4, cfg=cfg)
    block.load_state_dict(seeded_state_dict(block.state_dict(), 7)[0])
    x = torch.randn(2, 128, 8, 8, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        out = block(x)
    ref = _naive_attention(block, x, legacy=order == "legacy")
    assert torch.allclose(out.double(), ref, rtol=1e-5, atol=1e-5)
    # The two layouts must really differ, or the test above could not tell them apart.
    other = _naive_attention(block, x, legacy=order != "legacy")
    assert not torch.allclose(out.double(), other, rtol=1e-3, atol=1e-3)


def test_num_head_channels_overrides_num_heads():
    cfg = SuperResConfig(model_channels=64, num_head_channels=32)
    assert AttentionBlock(128, num_heads=4, cfg=cfg).num_heads == 4
    assert AttentionBlock(256, num_heads=4, cfg=cfg).num_heads == 8


def test_config_roundtrip_and_validation():
    for cfg in (SuperResConfig.seed(), SuperResConfig.fixture_small(), SuperResConfig.tiny()):
        d = cfg.to_dict()
        json.dumps(d)  # plain types only: it goes into checkpoints
        assert SuperResConfig.from_dict(d) == cfg
    assert SuperResConfig.seed().out_channels == 6
    assert SuperResConfig(learn_sigma=False).out_channels == 3
    with pytest.raises(ValueError, match="unknown SuperResConfig fields"):
        SuperResConfig.from_dict({"num_chanels": 8})
    with pytest.raises(ValueError, match="attention_order"):
        SuperResConfig(attention_order="new")
    with pytest.raises(ValueError, match="groups"):
        SuperResConfig(model_channels=48)


def test_conv_resampling_and_additive_embedding_variant():
    # guided-diffusion's other switches: conv Downsample/Upsample (keys `op`, `conv`) instead of
    # resampling ResBlocks, and the timestep embedding added instead of scale/shift.
    cfg = SuperResConfig.from_dict(
        {**SuperResConfig.tiny().to_dict(), "resblock_updown": False, "use_scale_shift_norm": False}
    )
    model = SuperResUNet(cfg).eval()
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes["input_blocks.2.0.op.weight"] == [32, 32, 3, 3]
    assert shapes["output_blocks.1.2.conv.weight"] == [64, 64, 3, 3]  # after the attention
    assert shapes["input_blocks.1.0.emb_layers.1.weight"] == [32, 128]  # out_channels, not 2x
    model.load_state_dict(seeded_state_dict(model.state_dict(), 2)[0])
    g = torch.Generator().manual_seed(3)
    x, low_res = torch.randn(1, 3, 16, 16, generator=g), torch.randn(1, 3, 8, 8, generator=g)
    with torch.no_grad():
        out = model(x, torch.tensor([10]), low_res)
    assert out.shape == (1, 6, 16, 16) and torch.isfinite(out).all() and out.abs().mean() > 1e-3
