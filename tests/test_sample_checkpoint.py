"""The checkpoint format (`avbench.checkpoint`) and loading for sampling: avbench files of every layout
(including ones written before the kind registry), original MM-Diffusion state dicts with a preset or a
file of the original code's flags, and refusal of damaged files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support.samplekit import make_mmunet_checkpoint, randomize, tiny_mmunet_config

from avbench import checkpoint as fmt
from avbench.diffusion.schedules import DiffusionConfig
from avbench.errors import CheckpointError, ModelConfigError
from avbench.io import sha256_file
from avbench.models.checkpoint import FORMAT, load_for_sampling, save_checkpoint
from avbench.models.mmunet import MMUNet, MMUNetConfig
from avbench.models.state_dict import compare_to_listing, seeded_state_dict
from avbench.models.superres import SuperResConfig, SuperResUNet


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_mmunet_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", steps=100)


def test_checkpoint_is_weights_only_readable_and_complete(ckpt):
    obj = torch.load(ckpt, weights_only=True)
    assert obj["format"] == FORMAT and obj["format_version"] == 1 and obj["kind"] == "mmunet"
    assert obj["diffusion"] == DiffusionConfig(steps=100).to_dict()
    assert MMUNetConfig.from_dict(obj["config"]) == tiny_mmunet_config()
    assert obj["extra"] == {"step": 7, "note": "test"}
    assert set(obj["state_dict"]) == set(obj["ema_state"]) == set(MMUNet(tiny_mmunet_config()).state_dict())


def test_load_prefers_ema_and_reports_what_it_loaded(ckpt):
    obj = torch.load(ckpt, weights_only=True)
    name = "time_embed.0.weight"
    model, info = load_for_sampling(ckpt)
    assert not model.training
    torch.testing.assert_close(model.state_dict()[name], obj["ema_state"][name])
    assert info["weights"] == "ema" and info["source"] == "avbench" and info["sha256"] == sha256_file(ckpt)
    assert info["diffusion"]["steps"] == 100 and info["notes"] == []
    raw, info = load_for_sampling(ckpt, prefer_ema=False)
    torch.testing.assert_close(raw.state_dict()[name], obj["state_dict"][name])
    assert info["weights"] == "raw"


def test_diffusion_step_mismatch_is_refused(ckpt):
    load_for_sampling(ckpt, diffusion_steps=100)  # the stored value is fine
    with pytest.raises(CheckpointError, match="trained with 100 diffusion steps but 1000"):
        load_for_sampling(ckpt, diffusion_steps=1000)
    with pytest.raises(ModelConfigError, match="only applies to original"):
        load_for_sampling(ckpt, original_config="tiny")
    with pytest.raises(CheckpointError, match="expected superres"):
        load_for_sampling(ckpt, expect_kind="superres")


def test_wrapped_model_is_saved_without_prefixes(tmp_path):
    class Wrapper(torch.nn.Module):  # what DDP looks like from the outside
        def __init__(self, m):
            super().__init__()
            self.module = m

    cfg = SuperResConfig.tiny()
    inner = randomize(SuperResUNet(cfg), 3)
    path = save_checkpoint(tmp_path / "sr.pt", Wrapper(inner), kind="superres", config=cfg,
                           diffusion={"steps": 50, "variance": "learned_range"},
                           ema_state={"module." + k: v for k, v in inner.state_dict().items()})
    model, info = load_for_sampling(path, expect_kind="superres")
    assert info["diffusion"]["variance"] == "learned_range"
    x, low, t = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 32, 32), torch.tensor([10])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, low), inner(x, t, low))


def test_bad_extra_and_kind_fail_clearly(tmp_path):
    model = MMUNet(tiny_mmunet_config())
    with pytest.raises(TypeError, match=r"extra\.when"):
        save_checkpoint(tmp_path / "x.pt", model, kind="mmunet", config=model.cfg, diffusion={}, extra={"when": object()})
    with pytest.raises(ValueError, match="unknown model kind"):
        save_checkpoint(tmp_path / "x.pt", model, kind="unet", config=model.cfg, diffusion={})
    assert not (tmp_path / "x.pt").exists()


def test_original_state_dict_loads_with_named_preset_and_loud_defaults(tmp_path):
    ref = randomize(MMUNet(MMUNetConfig.tiny()), 4)
    path = tmp_path / "model350000.pt"
    torch.save({"module." + k: v for k, v in ref.state_dict().items()}, path)  # a DDP-saved release
    model, info = load_for_sampling(path, original_config="tiny")
    assert info["source"] == "mm-diffusion" and info["kind"] == "mmunet"
    assert DiffusionConfig.from_dict(info["diffusion"]) == DiffusionConfig(steps=1000)
    assert any("ASSUMED 1000" in n for n in info["notes"])
    got, want = model.state_dict(), ref.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    _, info = load_for_sampling(path, original_config="tiny", diffusion_steps=2000)
    assert info["diffusion"]["steps"] == 2000 and not any("ASSUMED" in n for n in info["notes"])
    # Without a preset the seed config is assumed, and these weights do not fit it: say so, don't guess.
    with pytest.raises(CheckpointError, match="do not fit the mmunet config"):
        load_for_sampling(path)


def test_original_sr_file_is_recognised(tmp_path):
    path = tmp_path / "sr.pt"
    torch.save(SuperResUNet(SuperResConfig.tiny()).state_dict(), path)
    _, info = load_for_sampling(path, original_config="tiny")
    assert info["kind"] == "superres" and info["diffusion"]["variance"] == "learned_range"


def test_unsafe_or_foreign_files_are_refused(tmp_path):
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"weights": Path("/etc/passwd")}, unsafe)  # needs arbitrary unpickling
    with pytest.raises(CheckpointError, match="refused"):
        load_for_sampling(unsafe)
    foreign = tmp_path / "foreign.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(CheckpointError, match="not an MM-Diffusion"):
        load_for_sampling(foreign)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_for_sampling(tmp_path / "missing.pt")


# ---- the kind registry and old files -------------------------------------------------------------------

def test_one_name_per_kind_old_spelling_read_new_written(tmp_path):
    assert fmt.canonical_kind("baseline") == fmt.canonical_kind("mmunet") == "mmunet"
    model = randomize(MMUNet(tiny_mmunet_config()), 0)
    path = save_checkpoint(tmp_path / "m.pt", model, kind="baseline", config=model.cfg, diffusion={"steps": 10})
    assert torch.load(path, weights_only=True)["kind"] == "mmunet"


def test_training_checkpoint_of_the_previous_layout_loads_for_sampling(tmp_path):
    """What the code before the `states` dict wrote to RUN/checkpoints (kind "baseline", flat keys)."""
    cfg = tiny_mmunet_config()
    raw, ema = randomize(MMUNet(cfg), 0), randomize(MMUNet(cfg), 1)
    old = {"format": "avbench-train-v1", "kind": "baseline", "step": 30, "model": raw.state_dict(),
           "ema": ema.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "scheduler": {}, "scaler": {},
           "rng": [], "data": {"epoch": 0, "index": 3}, "data_ranks": [{"epoch": 0, "index": 3}],
           "nonfinite_total": 0, "config": {"kind": "baseline"}, "model_config": cfg.to_dict(),
           "diffusion": {"steps": 100, "schedule": "linear"}, "world_size": 1}
    path = tmp_path / "ckpt-00000030.pt"
    torch.save(old, path)
    model, info = load_for_sampling(path)
    assert info["kind"] == "mmunet" and info["weights"] == "ema" and info["extra"] == {"step": 30}
    assert DiffusionConfig.from_dict(info["diffusion"]) == DiffusionConfig(steps=100)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ema.state_dict().items())


# ---- integrity -----------------------------------------------------------------------------------------

def _flip_inside_a_tensor(path: Path, tensor: torch.Tensor) -> None:
    raw = bytearray(path.read_bytes())
    at = raw.find(tensor.numpy().tobytes())
    assert at > 0
    raw[at + 3] ^= 0x40  # one bit of one float: torch.load alone would return the changed value
    path.write_bytes(bytes(raw))


def test_flipped_bytes_inside_a_tensor_are_refused_before_loading(tmp_path):
    path = make_mmunet_checkpoint(tmp_path / "model.pt")
    ema_w = torch.load(path, weights_only=True)["ema_state"]["time_embed.0.weight"]
    _flip_inside_a_tensor(path, ema_w)
    changed = torch.load(path, weights_only=True)["ema_state"]["time_embed.0.weight"]
    assert not torch.equal(changed, ema_w)  # the damage is real and torch.load does not notice
    with pytest.raises(CheckpointError, match=r"model\.pt: damaged checkpoint: record .* CRC-32") as e:
        load_for_sampling(path)
    assert "\n" not in str(e.value)


def test_truncated_file_is_one_line(tmp_path):
    path = make_mmunet_checkpoint(tmp_path / "model.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"model\.pt: not a readable torch checkpoint") as e:
        load_for_sampling(path)
    assert "\n" not in str(e.value)


# ---- --original-config: a file of the original code's flags ------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mmdiffusion"
# The fixture_small model in the original's own flags (the parity fixture's README), as a user writes them:
# comma-separated strings like the shell scripts, and defaults left out (num_heads 4, dropout, ...).
FIXTURE_SMALL_FLAGS = {
    "cross_attention_resolutions": "2,4,8", "cross_attention_windows": "1,4,8", "cross_attention_shift": False,
    "video_attention_resolutions": "2,4,8", "audio_attention_resolutions": "-1", "video_size": "16,3,64,64",
    "audio_size": "1,25600", "learn_sigma": False, "num_channels": 32, "num_head_channels": 32,
    "num_res_blocks": 2, "resblock_updown": True, "use_fp16": True, "use_scale_shift_norm": True,
    "dropout": 0.1, "diffusion_steps": 1000, "noise_schedule": "linear",
}


def test_flags_file_reproduces_the_parity_fixture(tmp_path, one_thread):
    import numpy as np

    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps(FIXTURE_SMALL_FLAGS))
    with torch.device("meta"):
        template = MMUNet(MMUNetConfig.fixture_small()).state_dict()
    weights, _ = seeded_state_dict(template, 1234)  # the fixture's recipe (fixtures/mmdiffusion/README.md)
    original = tmp_path / "model200000.pt"
    torch.save({f"module.{k}": v for k, v in weights.items()}, original)  # as the original's DDP trainer saves
    model, info = load_for_sampling(original, original_config=str(flags))
    assert model.cfg == MMUNetConfig.fixture_small() and model.cfg.middle_cross_attention
    listing = json.loads((FIXTURES / "mmdiffusion_small_state_dict_shapes.json").read_text())
    assert compare_to_listing(model.state_dict(), listing) == []
    assert DiffusionConfig.from_dict(info["diffusion"]) == DiffusionConfig(steps=1000, variance="fixed_large")
    assert not any("ASSUMED" in n for n in info["notes"])
    ref = np.load(FIXTURES / "mmdiffusion_small_parity.npz")
    video = torch.from_numpy(ref["video"][1:])
    audio = torch.from_numpy(ref["audio"][1:])
    with torch.no_grad():
        v_out, _ = model(video, audio, torch.from_numpy(ref["t"][1:]).long())
    ref_v = torch.from_numpy(ref["video_out"][1:])
    assert ((v_out - ref_v).norm() / ref_v.norm()).item() < 1e-5


def test_flags_file_middle_cross_attention_only_for_windows_1_4_8(tmp_path):
    from avbench.models.original_flags import mmunet_from_flags

    small = {"video_size": "4,3,32,32", "audio_size": "1,6400", "num_channels": 32, "channel_mult": "1,2",
             "cross_attention_resolutions": "1,2", "video_attention_resolutions": "2", "resblock_updown": True}
    cfg, diffusion, notes = mmunet_from_flags({**small, "cross_attention_windows": "1,4"})
    assert not cfg.middle_cross_attention and cfg.cross_attention_windows == (1, 4)
    assert diffusion["steps"] == 1000 and any("ASSUMED the original's default 1000" in n for n in notes)
    with torch.device("meta"):
        keys = set(MMUNet(cfg).state_dict())
    assert not any(k.startswith("middle_blocks.2.") for k in keys)  # resblock, resblock: no cross-attention
    # the rule is the original's list equality: the same windows in another order do not count
    assert not mmunet_from_flags({**small, "cross_attention_resolutions": "1,2,4", "channel_mult": "1,2,2",
                                  "cross_attention_windows": "8,4,1"})[0].middle_cross_attention
    assert mmunet_from_flags({**small, "cross_attention_resolutions": "1,2,4", "channel_mult": "1,2,2",
                              "cross_attention_windows": [1, 4, 8]})[0].middle_cross_attention
    # learn_sigma doubles the heads; an empty channel_mult follows the frame size as in the original
    cfg = mmunet_from_flags({"learn_sigma": "True", "resblock_updown": "True", "num_head_channels": 64})[0]
    assert (cfg.video_out_channels, cfg.audio_out_channels, cfg.channel_mult) == (6, 2, (1, 2, 3, 4))
    with pytest.raises(ModelConfigError, match="resblock_updown = false"):
        mmunet_from_flags({})  # the original's argparse default builds no upsampling blocks
    with pytest.raises(ModelConfigError, match="unknown flag 'num_channel'"):
        mmunet_from_flags({"num_channel": 8})


def test_toml_flags_run_the_sampling_pipeline_on_an_original_file(tmp_path, one_thread):
    from avbench.sample.pipeline import SampleConfig, run_sampling

    cfg = MMUNetConfig(video_size=(4, 3, 32, 32), audio_size=(1, 6400), model_channels=32, channel_mult=(1, 2),
                       cross_attention_resolutions=(2,), cross_attention_windows=(4,), middle_cross_attention=False,
                       video_attention_resolutions=(2,), num_head_channels=32, dropout=0.0)
    ref = randomize(MMUNet(cfg), 9)
    original = tmp_path / "AIST++.pt"
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, original)
    flags = tmp_path / "flags.toml"
    flags.write_text('"--video_size" = "4,3,32,32"\n"--audio_size" = "1,6400"\nnum_channels = 32\n'
                     'channel_mult = "1,2"\ncross_attention_resolutions = "2"\ncross_attention_windows = "4"\n'
                     'video_attention_resolutions = "2"\nnum_head_channels = 32\nresblock_updown = true\n'
                     'diffusion_steps = 500\nsample_fn = "dpm_solver"\n')
    doc = run_sampling(SampleConfig(checkpoint=original, out=tmp_path / "out", num_samples=1, batch_size=1,
                                    sampler="ddim", steps=2, original_config=str(flags), progress=False))
    assert doc["checkpoint"]["source"] == "mm-diffusion" and doc["checkpoint"]["diffusion"]["steps"] == 500
    assert MMUNetConfig.from_dict(doc["checkpoint"]["config"]) == cfg
    assert (tmp_path / "out" / "video" / "0.mp4").stat().st_size > 0
    with pytest.raises(ModelConfigError, match="contradicts the flags file"):
        load_for_sampling(original, original_config=str(flags), diffusion_steps=1000)
    with pytest.raises(ModelConfigError, match="no such file"):
        load_for_sampling(original, original_config=str(tmp_path / "missing.json"))


def test_the_release_scripts_flags_give_the_seed_configs(tmp_path):
    """ssh_scripts/multimodal_sample_sr.sh of the original, MODEL_FLAGS and SRMODEL_FLAGS, in one file."""
    from avbench.models.original_flags import config_from_flags_file

    flags = {"--cross_attention_resolutions": "2,4,8", "--cross_attention_windows": "1,4,8",
             "--cross_attention_shift": "True", "--video_attention_resolutions": "2,4,8",
             "--audio_attention_resolutions": "-1", "--video_size": "16,3,64,64", "--audio_size": "1,25600",
             "--learn_sigma": "False", "--num_channels": 128, "--num_head_channels": 64, "--num_res_blocks": 2,
             "--resblock_updown": "True", "--use_fp16": "True", "--use_scale_shift_norm": "True",
             "--sr_attention_resolutions": "8,16,32", "--large_size": 256, "--small_size": 64,
             "--sr_learn_sigma": "True", "--sr_num_channels": 192, "--sr_num_heads": 4, "--sr_num_res_blocks": 2,
             "--sr_resblock_updown": "True", "--sr_use_scale_shift_norm": "True", "--diffusion_steps": 1000,
             "--noise_schedule": "linear", "--sr_diffusion_steps": 1000, "--sample_fn": "dpm_solver",
             "--sr_timestep_respacing": "ddim25", "--batch_size": 4}
    path = tmp_path / "release.json"
    path.write_text(json.dumps(flags))
    mm, mm_diffusion, notes = config_from_flags_file("mmunet", path)
    assert mm == MMUNetConfig.seed(dropout=0.0) and notes == []  # dropout: the script leaves the default 0
    assert DiffusionConfig.from_dict(mm_diffusion) == DiffusionConfig(steps=1000, schedule="linear")
    sr, sr_diffusion, _ = config_from_flags_file("superres", path)
    assert sr == SuperResConfig.seed() and sr_diffusion["variance"] == "learned_range"
