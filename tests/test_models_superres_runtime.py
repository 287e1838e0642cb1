"""The SR U-Net's speed options keep the function: bf16 autocast, checkpointing, torch.compile; and
original checkpoints (DDP `module.` prefix, EMA files) load."""

from __future__ import annotations

import pytest
import torch

from avbench.models.superres import SuperResConfig, SuperResUNet
from avbench.models.state_dict import seeded_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0, **overrides) -> SuperResUNet:
    cfg = SuperResConfig.from_dict({**SuperResConfig.tiny().to_dict(), **overrides})
    model = SuperResUNet(cfg)
    # Seeded non-zero weights: the default init zeroes every output projection, which would make
    # the whole network output 0 and every comparison below vacuous.
    model.load_state_dict(seeded_state_dict(model.state_dict(), seed)[0])
    return model


def tiny_inputs(batch: int = 2, seed: int = 1, size: int = 16):
    # The network is fully convolutional: 8→16 inputs keep these tests cheap on shared CPUs.
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g)
    low_res = torch.randn(batch, 3, size // 2, size // 2, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    return x, t, low_res


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_output_shape_and_low_res_conditioning():
    model = tiny_model().eval()
    x, t, low_res = tiny_inputs()
    with torch.no_grad():
        out = model(x, t, low_res)
        moved = model(x, t, low_res + 0.5)
    assert out.shape == (2, 6, 16, 16) and out.dtype == torch.float32
    assert out.abs().mean() > 1e-3
    assert rel(moved, out) > 1e-3  # the low-resolution frame is actually used
    with pytest.raises(ValueError, match="low_res"):
        model(x, t, low_res[:1])


def test_bf16_autocast_keeps_fp32_weights_and_tracks_fp32_output():
    model = tiny_model().eval()
    x, t, low_res = tiny_inputs()
    with torch.no_grad():
        ref = model(x, t, low_res)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, t, low_res)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert out.dtype == torch.float32  # returned in the input's dtype for the diffusion math
    assert torch.isfinite(out).all()
    assert rel(out, ref) < 0.05  # bf16 has 8 mantissa bits; this only guards against a broken path


def test_gradient_checkpointing_gives_identical_gradients():
    x, t, low_res = tiny_inputs()
    model = tiny_model().train()
    grads = []
    for enabled in (False, True):
        model.set_gradient_checkpointing(enabled)
        model.zero_grad(set_to_none=True)
        model(x, t, low_res).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6, msg=name)
    assert SuperResUNet(SuperResConfig.from_dict({**SuperResConfig.tiny().to_dict(), "use_checkpoint": True})
                        ).gradient_checkpointing


def test_compiles_as_one_graph():
    # aot_eager traces exactly what inductor would compile (fullgraph: no graph breaks) without the
    # minute of C++ codegen; the inductor speed-up is measured by scripts/bench_model.py --model superres --compile model.
    torch._dynamo.reset()
    model = tiny_model().eval()
    x, t, low_res = tiny_inputs(batch=1)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        out, ref = compiled(x, t, low_res), model(x, t, low_res)
    # Decomposed GroupNorm/SDPA sum in another order: equal to float32 rounding, not bitwise.
    assert rel(out, ref) < 1e-5
    torch._dynamo.reset()


def test_class_conditional_variant_has_label_embedding():
    model = tiny_model(num_classes=10).eval()
    assert model.label_emb.weight.shape == (10, 4 * 32)
    x, t, low_res = tiny_inputs()
    with torch.no_grad():
        a = model(x, t, low_res, y=torch.tensor([0, 1]))
        b = model(x, t, low_res, y=torch.tensor([2, 3]))
    assert rel(a, b) > 1e-4
    with pytest.raises(ValueError, match="class labels"):
        model(x, t, low_res)


def test_ddp_prefixed_and_ema_state_dicts_load(tmp_path):
    state_dict = pytest.importorskip("avbench.models.state_dict")
    source = tiny_model(seed=3).eval()
    x, t, low_res = tiny_inputs()
    with torch.no_grad():
        ref = source(x, t, low_res)
    # What the original trainer writes: torch.save of a (DDP-wrapped) model's state dict; its EMA
    # files (ema_0.9999_*.pt) hold the same keys; other trainers wrap the EMA copy in a dict.
    ddp = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save(ddp, tmp_path / "model.pt")
    torch.save(source.state_dict(), tmp_path / "ema_0.9999_000100.pt")
    torch.save({"ema": ddp, "step": 100}, tmp_path / "wrapped.pt")
    for name in ("model.pt", "ema_0.9999_000100.pt", "wrapped.pt"):
        loaded = state_dict.safe_load(tmp_path / name)
        model = SuperResUNet(SuperResConfig.tiny()).eval()
        model.load_state_dict(state_dict.clean_state_dict(loaded), strict=True)
        with torch.no_grad():
            assert torch.equal(model(x, t, low_res), ref)


def test_sampling_loader_reads_original_and_avbench_sr_checkpoints(tmp_path):
    checkpoint = pytest.importorskip("avbench.models.checkpoint")
    source = tiny_model(seed=5).eval()
    x, t, low_res = tiny_inputs()
    with torch.no_grad():
        ref = source(x, t, low_res)

    original = tmp_path / "AIST++_SR.pt"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, original)
    model, info = checkpoint.load_for_sampling(original, original_config="tiny", diffusion_steps=1000)
    assert info["kind"] == "superres" and info["diffusion"]["learned_sigma"]
    assert isinstance(model, SuperResUNet) and model.cfg == SuperResConfig.tiny()
    with torch.no_grad():
        assert torch.equal(model(x, t, low_res), ref)

    saved = checkpoint.save_checkpoint(
        tmp_path / "sr.pt", source, kind="superres", config=source.cfg,
        diffusion={"steps": 1000, "schedule": "linear", "variance": "learned_range"},
    )
    model, info = checkpoint.load_for_sampling(saved)
    assert model.cfg == source.cfg and info["source"] == "avbench"
    with torch.no_grad():
        assert torch.equal(model(x, t, low_res), ref)
