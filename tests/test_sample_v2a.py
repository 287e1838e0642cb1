"""MMAudio video→audio: conditioning frames, one clip's generation, and `avbench sample v2a` end to end.

Everything runs the real parts with the test-only `tiny-16k` variant (seeded random weights in the
released files' formats, avbench.sample.tiny through tests/support/mmaudiokit.py); nothing is downloaded.
The options shared with `avbench sample text2av` (MMAudioOptions) are checked here for both commands."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from support.evalkit import eval_av_align
from support.mmaudiokit import write_tiny_mmaudio
from typer.testing import CliRunner

from avbench import weights
from avbench.cli import app
from avbench.curate.hold import hold_indices, uniform_times
from avbench.errors import AvbenchError, SampleError, WeightsError
from avbench.media import write_mp4
from avbench.sample.mmaudio import clip_transform, generate_audio, load_bundle, sync_transform
from avbench.sample.v2a import V2AConfig, run_v2a

FLOW_FIX = Path(__file__).parent / "fixtures" / "mmaudio" / "flow"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_mmaudio(tmp_path_factory.mktemp("tiny-mmaudio"), seed=0)


@pytest.fixture(scope="module")
def bundle(tiny):
    return load_bundle("tiny-16k", paths=tiny)


def _frames(n=16, size=(48, 64), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", ["land", "port"])
def test_frame_transforms_match_mmaudio_load_video(name):
    arr = np.load(FLOW_FIX / "frames.npz")
    meta = json.loads((FLOW_FIX / "frames.json").read_text())
    x = torch.from_numpy(arr[f"{name}_frames"]).permute(0, 3, 1, 2).contiguous()
    clip = clip_transform(x, meta["clip_size"])
    sync = sync_transform(x, meta["sync_size"]) * 2 - 1  # the original normalises with mean = std = 0.5
    assert (clip - torch.from_numpy(arr[f"{name}_clip"])).abs().max() <= 1e-6
    assert (sync - torch.from_numpy(arr[f"{name}_sync"])).abs().max() <= 1e-6


def test_generate_audio_is_seeded_and_records_the_hold_rule(bundle, one_thread):
    frames = _frames()
    wave, rate, info = generate_audio(bundle, frames, 10, "the crowd and drums", 1.6, seed=3, steps=3)
    again, _, _ = generate_audio(bundle, frames, 10, "the crowd and drums", 1.6, seed=3, steps=3)
    other_seed, _, _ = generate_audio(bundle, frames, 10, "the crowd and drums", 1.6, seed=4, steps=3)
    other_prompt, _, _ = generate_audio(bundle, frames, 10, "guns", 1.6, seed=3, steps=3)
    assert rate == 16000 and wave.dtype == np.float32 and wave.shape == (25600,)
    assert np.array_equal(wave, again)
    assert not np.allclose(wave, other_seed) and not np.allclose(wave, other_prompt)
    assert info["sequence_lengths"] == {"latent": 50, "clip": 12, "sync": 32}
    assert info["clip_frames"]["fps"] == 8 and info["sync_frames"]["fps"] == 25
    times = uniform_times(16, 10)
    assert info["clip_frames"]["indices"] == hold_indices(times, 8, 12)
    assert info["sync_frames"]["indices"] == hold_indices(times, 25, 40)
    # 25 fps targets 1.44 and 1.48 s show frame 14 (1.4 s); 1.52 and 1.56 s hold the last frame (1.5 s)
    assert info["sync_frames"]["indices"][-4:] == [14, 14, 15, 15]
    assert (info["steps"], info["cfg_strength"]) == (3, 4.5)


def test_generate_audio_uses_the_video(bundle, one_thread):
    a, _, _ = generate_audio(bundle, _frames(seed=0), 10, "", 1.6, seed=1, steps=2)
    b, _, _ = generate_audio(bundle, _frames(seed=1), 10, "", 1.6, seed=1, steps=2)
    assert not np.allclose(a, b)


def test_generate_audio_refuses_a_duration_longer_than_the_clip(bundle):
    with pytest.raises(SampleError, match="16 frames at 10 fps"):
        generate_audio(bundle, _frames(), 10, "", 2.0, seed=0, steps=1)
    with pytest.raises(AvbenchError, match="at least 0.64 s"):
        generate_audio(bundle, _frames(), 10, "", 0.5, seed=0, steps=1)


def test_released_variant_without_weights_is_one_line_naming_url_licence_and_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    for spec in weights.REGISTRY.values():
        monkeypatch.delenv(spec.env, raising=False)
    with pytest.raises(WeightsError) as exc:
        load_bundle("mmaudio-small-16k")
    msg = str(exc.value)
    assert "\n" not in msg
    for part in ("mmaudio_small_16k.pth", "https://huggingface.co/hkchengrex/MMAudio/resolve/main/weights/",
                 "CC-BY-NC-4.0", "--network-weights", "avbench weights fetch mmaudio-small-16k"):
        assert part in msg, part


def _v2a_cli(args):
    """`avbench sample v2a` once the lead wires it into the sample group; until then the same generated
    command in a one-command app."""
    import typer

    from avbench.commands import sample as sample_cmds
    from avbench.commands.options import build_command
    from avbench.commands.sample_v2a import v2a

    if "v2a" in getattr(sample_cmds.GROUP, "commands", {}):
        return CliRunner().invoke(app, ["sample", "v2a", *map(str, args)])
    one = typer.Typer(rich_markup_mode=None)
    one.command()(build_command(v2a))
    return CliRunner().invoke(one, list(map(str, args)), env={"COLUMNS": "200"})


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
            and p.name != "samples.json"}


def test_v2a_on_demo_test_clips_writes_a_folder_eval_accepts(demo_dataset, tiny, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    weights_args = ["--weights-dir", tiny["network"].parent]
    common = ["--videos", f"{demo_dataset}:test", "--audio-model", "tiny-16k", *weights_args, "--audio-steps", 3,
              "--num-samples", 2, "--seed", 5, "--duration", 1.6, "--device", "cpu", "--no-progress"]
    res = _v2a_cli([*common, "--out", tmp_path / "a"])
    assert res.exit_code == 0, res.output
    res = _v2a_cli([*common, "--out", tmp_path / "b"])
    assert res.exit_code == 0, res.output
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(a) == ["audio/0.wav", "audio/1.wav", "video/0.mp4", "video/1.mp4"]
    assert a == b  # same seed: byte-identical media
    docs = [json.loads((tmp_path / d / "samples.json").read_text()) for d in "ab"]
    for d in docs:
        d["settings"].pop("out")
    assert docs[0] == docs[1]  # and the same record, but for where it was written

    doc = json.loads((tmp_path / "a" / "samples.json").read_text())
    assert doc["format"] == "avbench-samples" and doc["complete"] is True
    assert doc["model"]["name"] == "tiny-16k" and set(doc["model"]["weights"]) >= {"network", "vae", "vocoder"}
    assert all(len(w["sha256"]) == 64 for w in doc["model"]["weights"].values())
    assert (doc["sampler"]["steps"], doc["sampler"]["cfg_strength"]) == (3, 4.5)
    assert doc["conditioning"]["source"]["kind"] == "dataset" and doc["conditioning"]["source"]["size"] == 64
    row = doc["samples"][0]
    assert (row["seed"], row["duration_s"], row["fps"], row["frames"]) == (5, 1.6, 10, 16)
    assert row["clip_frames"] == {"fps": 8, "count": 12, "size": 28}
    assert row["sync_frames"] == {"fps": 25, "count": 40, "size": 32}
    wav, sr = sf.read(tmp_path / "a" / "audio" / "0.wav")
    assert sr == 16000 and wav.shape == (25600,)

    rec = eval_av_align(tmp_path / "a", tmp_path / "results", "v2a", "--num-clips", "2", "--allow-small",
                        "--device", "cpu")
    assert rec["counts"]["generated_clips"] == 2 and np.isfinite(rec["scores"]["av_align"])


def test_v2a_resumes_and_refuses_other_settings(demo_dataset, tiny, tmp_path, one_thread):
    cfg = V2AConfig(videos=f"{demo_dataset}:test", out=tmp_path / "run", audio_model="tiny-16k", audio_steps=2,
                    num_samples=1, duration=1.0, device="cpu", progress=False, weights_dir=tiny["network"].parent)
    run_v2a(cfg)
    first = _files(cfg.out)
    cfg.num_samples = 2  # extends the finished run, sample 0 untouched
    doc = run_v2a(cfg)
    assert [r["index"] for r in doc["samples"]] == [0, 1]
    assert _files(cfg.out)["video/0.mp4"] == first["video/0.mp4"]
    cfg.seed = 1
    with pytest.raises(SampleError, match="other settings"):
        run_v2a(cfg)
    cfg.seed, cfg.audio_dtype = 0, "bf16"  # the precision is part of what made the files
    with pytest.raises(SampleError, match="other settings"):
        run_v2a(cfg)


def test_v2a_from_a_folder_of_mp4_uses_each_clips_length_capped_at_8s(tiny, tmp_path, one_thread):
    clips = tmp_path / "clips"
    clips.mkdir()
    rng = np.random.default_rng(2)
    write_mp4(clips / "a.mp4", rng.integers(0, 256, (12, 40, 56, 3), dtype=np.uint8), None, 10)  # 1.2 s
    write_mp4(clips / "b.mp4", rng.integers(0, 256, (25, 40, 56, 3), dtype=np.uint8), None, 25)  # 1.0 s
    write_mp4(clips / "c.mp4", rng.integers(0, 256, (85, 24, 24, 3), dtype=np.uint8), None, 10)  # 8.5 s
    doc = run_v2a(V2AConfig(videos=str(clips), out=tmp_path / "out", audio_model="tiny-16k", audio_steps=1,
                            device="cpu", progress=False, **{f"{k}_weights" if k not in ("vocab",) else "clip_vocab": v
                                                             for k, v in tiny.items()}))
    rows = doc["samples"]
    assert [(r["condition"], r["duration_s"], r["fps"], r["frames"]) for r in rows] == [
        ("a.mp4", 1.2, 10, 12), ("b.mp4", 1.0, 25, 25), ("c.mp4", 8.0, 10, 80)]
    assert rows[2]["sequence_lengths"] == {"latent": 250, "clip": 64, "sync": 192}  # MMAudio's trained 8 s
    assert doc["conditioning"]["source"]["kind"] == "mp4"
    assert sf.info(str(tmp_path / "out" / "audio" / "0.wav")).frames == 19200


def test_v2a_help_lists_the_options():
    res = _v2a_cli(["--help"])
    assert res.exit_code == 0, res.output
    for opt in ("--videos", "--audio-model", "--duration", "--seed", "--audio-steps", "--cfg-strength", "--num-samples",
                "--device", "--audio-dtype", "--out", "--network-weights", "--weights-dir", "--negative-prompt"):
        assert opt in res.output, opt
    assert res.output.index("--videos") < res.output.index("--audio-model")  # the command's own options first


def test_output_video_holds_a_fractional_rate_at_10fps_and_audio_is_resampled_to_16k():
    from avbench.sample.mmaudio import resample_audio
    from avbench.sample.v2a import _output_video

    frames = np.arange(25, dtype=np.uint8).reshape(25, 1, 1, 1).repeat(3, axis=3)  # frame k has value k
    video, fps, note = _output_video(frames, 12.5, 2.0)  # 2 s of a 12.5 fps clip
    assert fps == 10 and len(video) == 20 and "12.5 fps" in note
    assert video[:, 0, 0, 0].tolist() == hold_indices(uniform_times(25, 12.5), 10, 20)
    t = np.arange(44100) / 44100
    wave, pad = resample_audio(np.sin(2 * np.pi * 440 * t).astype(np.float32), 44100, 16000)  # a 44.1 kHz output
    assert wave.shape == (16000,) and wave.dtype == np.float32 and pad == 0
    peak = np.argmax(np.abs(np.fft.rfft(wave)))  # 1 Hz bins over 1 s
    assert peak == 440


def test_44k_vocoder_offline_without_hf_cache_names_the_hub_id_and_flag(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    from avbench.sample.mmaudio import MMAUDIO_VARIANTS, _locate

    # huggingface_hub reads these at import, so set its constants too: offline, and an empty cache
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(SampleError) as exc:
        _locate(MMAUDIO_VARIANTS["mmaudio-large-44k-v2"], "vocoder", {}, None)
    msg = str(exc.value)
    assert "\n" not in msg and "nvidia/bigvgan_v2_44khz_128band_512x" in msg and "--vocoder-weights" in msg


# ---- the MMAudio options both commands share ----------------------------------------------------------------

def _params(name: str) -> dict[str, object]:
    """--option → its click parameter, as the command line builds it."""
    from avbench.commands.options import to_click
    from avbench.commands.sample_text2av import text2av
    from avbench.commands.sample_v2a import v2a

    cmd = to_click(name, {"v2a": v2a, "text2av": text2av}[name])
    return {p.opts[0]: p for p in cmd.params}


def test_both_commands_take_the_same_mmaudio_options_with_their_own_audio_model_default():
    import dataclasses

    from avbench.sample.mmaudio import MMAudioOptions
    from avbench.sample.text2av import Text2AVConfig

    shared = [f.name for f in dataclasses.fields(MMAudioOptions)]
    v2a, t2av = _params("v2a"), _params("text2av")
    for name in shared:
        opt = "--" + name.replace("_", "-")
        assert opt in v2a and opt in t2av, opt
        if name != "audio_model":  # word for word the same option in both commands
            assert (v2a[opt].help, v2a[opt].default) == (t2av[opt].help, t2av[opt].default), opt
    assert (v2a["--audio-model"].default, t2av["--audio-model"].default) == ("mmaudio-small-16k", "mmaudio-large-44k-v2")
    assert (v2a["--device"].default, v2a["--audio-steps"].default, v2a["--cfg-strength"].default) == ("auto", 25, 4.5)
    assert "--steps" not in v2a and "--dtype" not in v2a and t2av["--dtype"].help.startswith("CogVideoX precision")
    for cls in (V2AConfig, Text2AVConfig):
        assert issubclass(cls, MMAudioOptions)
    v = V2AConfig(videos="x", out=Path("o"), clip_vocab=Path("bpe.txt"), network_weights=Path("n.pth"), device="cuda")
    assert v.weight_paths() == {"network": Path("n.pth"), "vocab": Path("bpe.txt")}
    assert (v.audio_steps, v.cfg_strength, v.resolved_audio_dtype()) == (25, 4.5, "bf16")
    assert dataclasses.replace(v, device="cpu").resolved_audio_dtype() == "fp32"


@pytest.mark.parametrize("bad, match", [({"audio_dtype": "float16"}, "--audio-dtype float16: choose one of fp32 | bf16 | fp16"),
                                        ({"audio_steps": 0}, "--audio-steps 0: at least 1"),
                                        ({"audio_model": "mmaudio-huge"}, "--audio-model 'mmaudio-huge'")])
def test_both_configs_refuse_bad_mmaudio_options_in_one_line(bad, match, tmp_path):
    from avbench.sample.text2av import Text2AVConfig

    for cfg in (V2AConfig(videos="x", out=tmp_path, device="cpu", **bad),
                Text2AVConfig(prompts=tmp_path, out=tmp_path, device="cpu", **bad)):
        with pytest.raises(SampleError, match=match) as exc:
            cfg.validate()
        assert "\n" not in str(exc.value)


def test_v2a_device_defaults_to_auto_and_an_absent_cuda_device_is_one_line(demo_dataset, tiny, tmp_path):
    from avbench.sample.v2a import V2AConfig

    cfg = V2AConfig(videos=f"{demo_dataset}:test", out=tmp_path / "a")
    assert cfg.device == ("cuda" if torch.cuda.is_available() else "cpu")  # auto, resolved once
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    res = _v2a_cli(["--videos", f"{demo_dataset}:test", "--out", tmp_path / "o", "--audio-model", "tiny-16k",
                    "--weights-dir", tiny["network"].parent, "--no-progress", "--device", "cuda"])
    assert res.exit_code == 2
    assert res.output.startswith("error: --device cuda: no CUDA device here; pass --device cpu"), res.output
    assert not (tmp_path / "o").exists()