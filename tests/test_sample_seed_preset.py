"""`avbench sample --preset seed` reproduces MM-Diffusion's own samplers (base and SR) on the same weights
and noise: fixtures/mmdiffusion_samplers/ holds the original code's outputs (see its README).

The path under test is the CLI's: a SampleConfig with only `preset="seed"` set, original-format state-dict
files with the original's flags, the loader, the resolved sampler plans and the pipeline's sampling
functions; only the media writing (lossy H.264, 16-bit PCM) is left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support.samplekit import make_mmunet_checkpoint, make_sr_checkpoint

from avbench.models import MMUNet, MMUNetConfig
from avbench.models.state_dict import seeded_state_dict
from avbench.models.superres import SuperResConfig, SuperResUNet
from avbench.sample.pipeline import PRESETS, SampleConfig, plan_sampling, run_sampling, sample_base, super_resolve

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mmdiffusion_samplers"
# The original's flags of the two seeded models (fixture README): fixture_small at 8 frames of 32 px, and
# a tiny 32→64 upsampler.
BASE_FLAGS = {"video_size": "8,3,32,32", "audio_size": "1,12800", "channel_mult": "1,2,3,4", "num_channels": 32,
              "num_head_channels": 32, "cross_attention_shift": False, "resblock_updown": True, "dropout": 0.1,
              "diffusion_steps": 1000, "noise_schedule": "linear"}
SR_FLAGS = {"large_size": 64, "small_size": 32, "sr_num_channels": 32, "sr_num_res_blocks": 1,
            "sr_attention_resolutions": "8", "sr_num_heads": 2, "sr_learn_sigma": True, "sr_resblock_updown": True,
            "sr_use_scale_shift_norm": True, "sr_diffusion_steps": 1000, "noise_schedule": "linear"}

pytestmark = pytest.mark.usefixtures("one_thread")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def seed_plan(tmp_path_factory):
    """Original-format files of the seeded models, loaded through `--preset seed`'s plan."""
    ref = np.load(FIXTURES / "mmdiffusion_samplers.npz")
    work = tmp_path_factory.mktemp("seed_preset")
    base = MMUNet(MMUNetConfig.fixture_small(video_size=(8, 3, 32, 32), audio_size=(1, 12800)))
    weights, g = seeded_state_dict(base.state_dict(), 1234)
    # The recipe's generator continues into the starting noise: proves the same weights were rebuilt.
    # (The original run drew a batch of 2; the fixture keeps the first sample.)
    assert torch.equal(torch.randn((2, 8, 3, 32, 32), generator=g, dtype=torch.float64).float()[:1],
                       torch.from_numpy(ref["video_T"]))
    assert torch.equal(torch.randn((2, 1, 12800), generator=g, dtype=torch.float64).float()[:1],
                       torch.from_numpy(ref["audio_T"]))
    torch.save(weights, work / "base.pt")
    sr = SuperResUNet(SuperResConfig(large_size=64, small_size=32, model_channels=32, num_res_blocks=1,
                                     channel_mult=(1, 2, 3, 4), attention_ds=(8,), num_heads=2))
    sr_weights, g = seeded_state_dict(sr.state_dict(), 4321)
    assert torch.equal(torch.randn((2, 3, 64, 64), generator=g, dtype=torch.float64).float()[:1],
                       torch.from_numpy(ref["sr_noise"]))
    torch.save(sr_weights, work / "sr.pt")
    (work / "base.json").write_text(json.dumps(BASE_FLAGS))
    (work / "sr.json").write_text(json.dumps(SR_FLAGS))
    cfg = SampleConfig(checkpoint=work / "base.pt", out=work / "out", preset="seed",
                       original_config=str(work / "base.json"), sr_checkpoint=work / "sr.pt",
                       sr_original_config=str(work / "sr.json"))
    return cfg, plan_sampling(cfg), ref


def test_base_matches_the_original_dpm_solver(seed_plan):
    cfg, plan, ref = seed_plan
    assert plan.sampler.timesteps[::-1] == ref["base_timesteps"].tolist()
    video, audio = sample_base(plan, cfg, (torch.from_numpy(ref["video_T"]), torch.from_numpy(ref["audio_T"])))
    for got, want in ((video, torch.from_numpy(ref["video_out"])), (audio, torch.from_numpy(ref["audio_out"]))):
        # A random network is no denoiser: unclipped, the solver scales its output up to 1/α_T ≈ 160, so the
        # samples have std ≈ 180 and the errors are relative (measured 1e-6; one timestep off: 1e-2).
        assert rel(got, want) <= 1e-4
        assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())
    # Not vacuous: the samples are far from the noise and, unclipped, leave [-1, 1] as the original's do.
    assert rel(video, torch.from_numpy(ref["video_T"])) > 0.5 and float(video.abs().max()) > 1


def test_sr_matches_the_original_ddim25(seed_plan):
    cfg, plan, ref = seed_plan
    assert plan.sr[2].timesteps == list(range(0, 1000, 40)) == sorted(ref["sr_timesteps"].tolist())
    want = torch.from_numpy(ref["sr_out"])  # the first two frames of the first clip (frames are independent)
    low = torch.from_numpy(ref["video_out"][0, :2])  # the original's base output, unclamped, as the original fed it
    out = super_resolve(plan, cfg, low, torch.from_numpy(ref["sr_noise"]))
    assert float((out - want).abs().max()) <= 1e-4
    # clip_denoised: the last step returns the clipped x̂0; frames differ (their low-res inputs do).
    assert float(want.abs().max()) <= 1.0 + 1e-6 and float((out[0] - out[1]).abs().max()) > 0.1


def test_explicit_options_override_the_preset():
    base = SampleConfig(checkpoint=Path("m.pt"), out=Path("o"), preset="seed")
    r = base.resolved()
    assert {k: getattr(r, k) for k in PRESETS["seed"]} == PRESETS["seed"]
    r = SampleConfig(checkpoint=Path("m.pt"), out=Path("o"), preset="seed", steps=30, clip=True,
                     sr_spacing="linspace").resolved()
    assert (r.sampler, r.steps, r.clip, r.sr_spacing, r.sr_clip) == ("dpm-solver-3s", 30, True, "linspace", True)
    # Another sampler does not inherit the preset's grid: its own defaults apply.
    r = SampleConfig(checkpoint=Path("m.pt"), out=Path("o"), preset="seed", sampler="ddim").resolved()
    assert (r.sampler, r.steps, r.spacing, r.clip, r.sr_spacing) == ("ddim", None, None, False, "leading")
    plain = SampleConfig(checkpoint=Path("m.pt"), out=Path("o")).resolved()
    assert (plain.sampler, plain.clip, plain.sr_sampler, plain.sr_steps, plain.sr_clamp_low_res) == (
        "dpmpp-3s", True, "ddim", 25, True)


def test_samples_json_records_the_whole_recipe(tmp_path):
    make_mmunet_checkpoint(tmp_path / "model.pt", steps=1000)
    make_sr_checkpoint(tmp_path / "sr.pt", steps=1000)
    doc = run_sampling(SampleConfig(checkpoint=tmp_path / "model.pt", sr_checkpoint=tmp_path / "sr.pt",
                                    out=tmp_path / "out", preset="seed", num_samples=1, batch_size=1,
                                    steps=4, sr_steps=2, progress=False))
    saved = json.loads((tmp_path / "out" / "samples.json").read_text())
    assert saved["preset"] == "seed" and saved["settings"]["preset"] == "seed"
    s, sr = saved["sampler"], saved["sr_sampler"]
    assert (s["name"], s["steps"], s["spacing"], s["clip"]) == ("dpm-solver-3s", 4, "dpm-logsnr", False)
    assert (sr["name"], sr["spacing"], sr["timesteps"], sr["clip"], sr["clamp_low_res"]) == (
        "ddim", "leading", [0, 500], True, False)
    assert doc["samples"][0]["index"] == 0


def test_unknown_preset_is_one_line():
    from avbench.errors import SampleError

    with pytest.raises(SampleError, match=r"^--preset 'paper' is not a sampling preset; choose one of seed$"):
        SampleConfig(checkpoint=Path("m.pt"), out=Path("o"), preset="paper").validate()
