"""Fast path vs reference path, window-shift reproducibility, checkpointing, layouts, bf16."""

import pytest
import torch

from avbench.models import MMUNet, MMUNetConfig
from avbench.models.attention import window_index, windowed_cross_attention
from avbench.models.mm_blocks import _reference_cross
from avbench.models.state_dict import seeded_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")



def micro(**kw) -> MMUNetConfig:
    """4 frames of 16x16, 1024 audio samples; cross-attention windows 1, 2 (shiftable) and 4 (full)."""
    base = dict(video_size=(4, 3, 16, 16), audio_size=(1, 1024), model_channels=8, norm_groups=4,
                channel_mult=(1, 2, 2), num_res_blocks=1, cross_attention_resolutions=(1, 2, 4),
                cross_attention_windows=(1, 2, 3), video_attention_resolutions=(2, 4), num_heads=2,
                num_head_channels=8, dropout=0.0, cross_attention_shift=True)
    base.update(kw)
    return MMUNetConfig(**base)


def build(cfg, seed=7):
    model = MMUNet(cfg)
    # Seeded non-zero weights: the zero-initialised projections would hide the attention paths.
    model.load_state_dict(seeded_state_dict(model.state_dict(), seed)[0])
    return model


def inputs(cfg, b=2, seed=3):
    g = torch.Generator().manual_seed(seed)
    f, c, h, w = cfg.video_size
    return (torch.randn(b, f, c, h, w, generator=g), torch.randn(b, *cfg.audio_size, generator=g),
            torch.tensor([5, 900])[:b])


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("window,shift", [(1, 0), (1, 3), (2, 1), (3, 2), (5, 0)])
def test_batched_window_attention_equals_frame_loop(window, shift):
    g = torch.Generator().manual_seed(window * 10 + shift)
    b, f, p, a, h, d = 2, 5, 6, 4, 2, 8
    vq, vk, vv = (torch.randn(b, f, p, h, d, generator=g) for _ in range(3))
    aq, ak, av = (torch.randn(b, f, a, h, d, generator=g) for _ in range(3))
    vo, ao = windowed_cross_attention(vq, vk, vv, aq, ak, av, window=window, shift=shift)
    rv, ra = _reference_cross(vq, vk, vv, aq, ak, av, window_index(f, min(window, f), shift))
    assert vo.shape == vq.shape and ao.shape == aq.shape
    torch.testing.assert_close(vo, rv, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ao, ra, rtol=1e-5, atol=1e-5)


def test_window_index_is_the_cyclic_shifted_window():
    assert window_index(4, 2, 3).tolist() == [[3, 0], [0, 1], [1, 2], [2, 3]]


def test_sdpa_and_reference_backends_agree_in_train_mode_with_shift():
    cfg = micro()
    fast, ref = build(cfg), build(micro(attention_backend="reference"))
    fast.train(), ref.train()
    v, a, t = inputs(cfg)
    out_f = fast(v, a, t, generator=torch.Generator().manual_seed(11))
    out_r = ref(v, a, t, generator=torch.Generator().manual_seed(11))
    for x, y in zip(out_f, out_r):
        assert rel(x, y) < 1e-5


def test_window_shift_reproducible_from_generator_and_off_in_eval():
    cfg = micro()
    model = build(cfg).train()
    v, a, t = inputs(cfg)
    with torch.no_grad():
        o1 = model(v, a, t, generator=torch.Generator().manual_seed(1))
        o2 = model(v, a, t, generator=torch.Generator().manual_seed(1))
        shifts = {model.input_blocks[1][1].draw_shift(4, torch.Generator().manual_seed(s)) for s in range(20)}
        outs = [model(v, a, t, generator=torch.Generator().manual_seed(s))[1] for s in range(4)]
        model.eval()
        e1 = model(v, a, t, generator=torch.Generator().manual_seed(1))
        e2 = model(v, a, t, generator=torch.Generator().manual_seed(2))
        no_shift = build(micro(cross_attention_shift=False)).eval()(v, a, t)
    assert all(torch.equal(x, y) for x, y in zip(o1, o2))
    assert shifts == {0, 1, 2, 3}  # window 1 of 4 frames: every shift is drawn
    assert any(rel(outs[0], o) > 1e-4 for o in outs[1:])  # the shift really changes the function
    assert all(torch.equal(x, y) for x, y in zip(e1, e2))
    assert all(torch.allclose(x, y) for x, y in zip(e1, no_shift))
    # Opting in restores the original's behaviour of shifting at inference.
    opt_in = build(micro(shift_in_eval=True)).eval()
    with torch.no_grad():
        got = [opt_in(v, a, t, generator=torch.Generator().manual_seed(s))[1] for s in range(4)]
    assert any(rel(got[0], o) > 1e-4 for o in got[1:])


def test_gradient_checkpointing_and_channels_last_do_not_change_the_function():
    cfg = micro(cross_attention_shift=False)
    v, a, t = inputs(cfg)
    grads = []
    outs = []
    for kw in [dict(), dict(use_checkpoint=True), dict(use_checkpoint="attention"),
               dict(use_checkpoint="selective", channels_last=True)]:
        model = build(micro(cross_attention_shift=False, **kw)).train()
        vo, ao = model(v, a, t)
        (vo.square().mean() + ao.square().mean()).backward()
        outs.append((vo.detach(), ao.detach()))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    for (vo, ao), g in zip(outs[1:], grads[1:]):
        assert rel(vo, outs[0][0]) < 1e-5 and rel(ao, outs[0][1]) < 1e-5
        assert rel(g, grads[0]) < 1e-4


def test_bf16_autocast_stays_close_to_fp32():
    cfg = micro(cross_attention_shift=False)
    model = build(cfg).eval()
    v, a, t = inputs(cfg)
    with torch.no_grad():
        ref = model(v, a, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(v, a, t)
    for x, y in zip(low, ref):
        assert y.dtype == torch.float32 and x.shape == y.shape
        assert rel(x.float(), y) < 5e-2


def test_tiny_preset_takes_loader_shapes_and_trains():
    cfg = MMUNetConfig.tiny()
    model = MMUNet(cfg)
    assert cfg.video_size == (16, 3, 64, 64) and cfg.audio_size == (1, 25600)
    assert model.num_parameters() < 200_000
    v, a = torch.randn(1, 16, 3, 64, 64), torch.randn(1, 1, 25600)
    vo, ao = model(v, a, torch.tensor([3]))
    assert vo.shape == v.shape and ao.shape == a.shape
    ((vo - v).square().mean() + (ao - a).square().mean()).backward()
    # The zero-initialised output convs receive gradient, so training can move off zero.
    assert model.video_out[2].video_conv.weight.grad.abs().sum() > 0


def test_config_round_trip_and_validation():
    cfg = MMUNetConfig.seed()
    assert MMUNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="divisible"):
        MMUNet(MMUNetConfig.seed(audio_size=(1, 25000)))
    with pytest.raises(ValueError, match="attention_backend"):
        MMUNet(MMUNetConfig.tiny(attention_backend="flash"))
