"""`avbench sample text2av`: tiny CogVideoX (diffusers classes from configs, loaded from a saved folder) and
tiny MMAudio (seeded random weights; both writers are avbench.sample.tiny) → native and benchmark outputs; `avbench eval`
reads them; a seed gives the same bytes; the benchmark conversion, prompt lists and one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from support.evalkit import eval_av_align
from typer.testing import CliRunner

from avbench.cli import app
from avbench.paths import REPO_ROOT
from avbench.sample import text2av

PROMPT_LISTS = ("concerts", "callofduty")


def _prompt_lines(name: str) -> tuple[list[str], list[str]]:
    lines = (REPO_ROOT / "manifests" / "prompts" / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return [s for s in lines if s.startswith("#")], [s for s in lines if s.strip() and not s.startswith("#")]


@pytest.mark.parametrize("name", PROMPT_LISTS)
def test_prompt_lists_count_format_and_header(name):
    header, prompts = _prompt_lines(name)
    assert len(prompts) >= 64
    assert len(set(prompts)) == len(prompts), "duplicate prompts"
    assert all(len(p.split()) <= 40 and p == p.strip() for p in prompts)
    assert any("by hand" in h for h in header) and any("no dataset captions" in h for h in header)
    assert text2av.read_prompts(REPO_ROOT / "manifests" / "prompts" / f"{name}.txt") == prompts


def test_read_prompts_skips_comments_and_refuses_empty(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# header\n\n  a crowd at the concert  \n   # indented comment\nthe tank fires\n", encoding="utf-8")
    assert text2av.read_prompts(f) == ["a crowd at the concert", "the tank fires"]
    f.write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(text2av.SampleError, match="no prompts"):
        text2av.read_prompts(f)
    with pytest.raises(text2av.MissingInputError, match="no such file"):
        text2av.read_prompts(tmp_path / "missing.txt")


def test_benchmark_video_holds_frames_at_10fps_and_crops_the_centre():
    # frame j of a 49-frame 8 fps clip is grey level 5j, with red/blue bars outside the centre square
    frames = np.zeros((49, 16, 32, 3), np.uint8)
    for j in range(49):
        frames[j, :, 8:24] = 5 * j
    frames[:, :, :8] = (255, 0, 0)
    frames[:, :, 24:] = (0, 0, 255)
    out = text2av.to_benchmark_video(frames, 8, 64)
    # 49 frames at 8 fps last 6.125 s: 61 whole 0.1 s frames; frame k shows the latest source frame at k/10 s
    assert out.shape == (61, 64, 64, 3) and out.dtype == np.uint8
    for k in range(61):
        j = math.floor(k * 8 / 10 + 1e-9)
        assert np.abs(out[k].astype(int) - 5 * j).max() <= 1, k  # all grey: the bars were cropped away


def test_benchmark_audio_resampled_to_16k_and_fitted_to_the_frames():
    rate = 44100
    t = np.arange(int(6.125 * rate)) / rate
    wave = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out, pad = text2av.to_benchmark_audio(wave, rate, 61)
    assert out.shape == (61 * 1600,) and out.dtype == np.float32 and pad == 0
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16000 / len(out) - 1000) < 2
    short, pad = text2av.to_benchmark_audio(wave[: rate * 5], rate, 61)
    assert short.shape == (97600,) and pad == 97600 - 80000 and not short[80000:].any()


def test_config_refuses_bad_frames_size_and_dtype(tmp_path):
    cfg = text2av.Text2AVConfig(prompts=tmp_path / "p.txt", out=tmp_path / "o", frames=10)
    with pytest.raises(text2av.SampleError, match=r"\(frames - 1\) must be divisible by 4"):
        cfg.validate()
    with pytest.raises(text2av.SampleError, match="--size 128"):
        text2av.Text2AVConfig(prompts=tmp_path / "p.txt", out=tmp_path / "o", size=128).validate()
    with pytest.raises(text2av.SampleError, match="--dtype fp8: choose one of fp32 | bf16 | fp16"):
        text2av.Text2AVConfig(prompts=tmp_path / "p.txt", out=tmp_path / "o", dtype="fp8").validate()
    with pytest.raises(text2av.SampleError, match="--audio-dtype float32: choose one of fp32 | bf16 | fp16"):
        text2av.Text2AVConfig(prompts=tmp_path / "p.txt", out=tmp_path / "o", audio_dtype="float32").validate()
    assert text2av.Text2AVConfig(prompts=tmp_path, out=tmp_path, device="cpu").resolved_dtype() == "fp32"
    assert text2av.Text2AVConfig(prompts=tmp_path, out=tmp_path, device="cuda").resolved_dtype() == "fp16"
    assert text2av.Text2AVConfig(prompts=tmp_path, out=tmp_path).audio_duration() == pytest.approx(6.125)


@pytest.fixture(scope="module")
def tiny_cogvideox(tmp_path_factory):
    pytest.importorskip("diffusers")
    from support.cogvideoxkit import write_tiny_cogvideox

    return write_tiny_cogvideox(tmp_path_factory.mktemp("cogvideox") / "tiny", seed=0)


def test_cogvideox_from_a_local_folder_is_seeded(tiny_cogvideox, one_thread):
    from support.cogvideoxkit import TINY_FRAMES, TINY_SIZE

    from avbench.sample import cogvideox

    vm = cogvideox.load_cogvideox(str(tiny_cogvideox), dtype="fp32", device="cpu")
    assert vm.info["source"] == "local" and vm.info["temporal_compression"] == 4
    assert vm.info["sha256_tree"] == cogvideox.tree_digest(tiny_cogvideox) and len(vm.info["sha256_tree"]) == 64
    assert cogvideox.default_size(vm) == TINY_SIZE
    kw = {"num_frames": TINY_FRAMES, "steps": 2}
    a = cogvideox.generate_video(vm, "a crowd at the concert", seed=3, **kw)
    assert a.shape == (TINY_FRAMES, *TINY_SIZE, 3) and a.dtype == np.uint8 and a.std() > 0
    assert np.array_equal(a, cogvideox.generate_video(vm, "a crowd at the concert", seed=3, **kw))
    assert not np.array_equal(a, cogvideox.generate_video(vm, "a crowd at the concert", seed=4, **kw))
    with pytest.raises(cogvideox.SampleError, match=r"--frames 11: \(frames - 1\) must be divisible by 4"):
        cogvideox.generate_video(vm, "a crowd", seed=0, num_frames=11, steps=1)
    # 13 = 1 + 3·4 passes the pipeline's own rule, but its VAE would decode 16 frames
    with pytest.raises(cogvideox.SampleError, match=r"--frames 13: .* return 16 frames; use 8N\+1"):
        cogvideox.generate_video(vm, "a crowd", seed=0, num_frames=13, steps=1)
    with pytest.raises(cogvideox.SampleError, match="multiples of 16"):
        cogvideox.generate_video(vm, "a crowd", seed=0, num_frames=TINY_FRAMES, height=24, steps=1)
    with pytest.raises(cogvideox.SampleError, match="--offload .* use it with --device cuda"):
        cogvideox.load_cogvideox(str(tiny_cogvideox), dtype="fp32", device="cpu", offload=True)


def test_cogvideox_offline_is_one_line_naming_the_model_and_the_local_flag(tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    import huggingface_hub.constants

    from avbench.sample import cogvideox

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no request leaves the machine
    with pytest.raises(cogvideox.VideoModelError) as e:
        cogvideox.load_cogvideox("THUDM/CogVideoX-2b", dtype="fp32", device="cpu", cache_dir=tmp_path / "hf")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("THUDM/CogVideoX-2b: ")
    assert "Hugging Face hub" in msg and "Apache-2.0" in msg and "--video-model DIR" in msg
    with pytest.raises(cogvideox.VideoModelError, match="CogVideoX licence"):
        cogvideox.load_cogvideox("THUDM/CogVideoX-5b", dtype="fp32", device="cpu", cache_dir=tmp_path / "hf")
    with pytest.raises(cogvideox.MissingInputError, match="no such folder"):
        cogvideox.load_cogvideox(str(tmp_path / "nope"), dtype="fp32", device="cpu")
    with pytest.raises(cogvideox.VideoModelError, match="no model_index.json"):
        cogvideox.load_cogvideox(str(tmp_path), dtype="fp32", device="cpu")


def _cli(*args):
    """`avbench sample text2av ARGS` (through the sample group once it lists text2av)."""
    from avbench.commands import sample as sample_cmds
    from avbench.commands.options import to_click
    from avbench.commands.sample_text2av import text2av

    if "text2av" in sample_cmds.GROUP.commands:
        return CliRunner().invoke(app, ["sample", "text2av", *map(str, args)])
    import click.testing

    return click.testing.CliRunner().invoke(to_click("text2av", text2av), list(map(str, args)))


@pytest.fixture(scope="module")
def tiny_models(tiny_cogvideox, tmp_path_factory):
    from support.mmaudiokit import write_tiny_mmaudio

    base = tmp_path_factory.mktemp("text2av")
    write_tiny_mmaudio(base / "mmaudio", seed=0)
    prompts = base / "prompts.txt"
    prompts.write_text("# two prompts for the test\na crowd at the concert\n\nthe tank fires in the desert\n",
                       encoding="utf-8")
    return tiny_cogvideox, base / "mmaudio", prompts


def _args(tiny_models, out, seed=0):
    cog, mm, prompts = tiny_models
    return ["--prompts", prompts, "--out", out, "--video-model", cog, "--frames", 17, "--video-steps", 2,
            "--audio-model", "tiny-16k", "--weights-dir", mm, "--audio-steps", 2, "--size", 64, "--seed", seed,
            "--device", "cpu", "--no-progress"]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "samples.json"}


def test_text2av_writes_native_and_benchmark_outputs_that_eval_reads(tiny_models, tmp_path, one_thread):
    import av
    import soundfile as sf

    from avbench.metrics.sources import Source, iter_clips

    out = tmp_path / "run"
    res = _cli(*_args(tiny_models, out, seed=5))
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "samples.json").read_text(encoding="utf-8"))
    assert doc["format"] == "avbench-samples" and doc["complete"] is True
    assert [(r["index"], r["prompt"], r["seed"]) for r in doc["samples"]] == [
        (0, "a crowd at the concert", 5), (1, "the tank fires in the desert", 6)]
    assert doc["video_model"]["sha256_tree"] and doc["audio_model"]["name"] == "tiny-16k"
    assert doc["video"]["fps_in"] == 8 and doc["video"]["fps"] == 10
    for r in doc["samples"]:
        with av.open(str(out / r["native_video"])) as c:  # native: its own size, 8 fps, the model's audio rate
            v, a = c.streams.video[0], c.streams.audio[0]
            assert (v.average_rate, v.width, v.height, a.rate) == (8, 32, 16, 16000)
            assert sum(1 for _ in c.decode(video=0)) == 17
        with av.open(str(out / r["video"])) as c:  # benchmark: 10 fps, 64 px, 16 kHz
            v = c.streams.video[0]
            assert (v.average_rate, v.width, v.height, c.streams.audio[0].rate) == (10, 64, 64, 16000)
            assert sum(1 for _ in c.decode(video=0)) == 21  # 17 frames at 8 fps = 2.125 s: 21 whole 10 fps frames
        wave, rate = sf.read(str(out / r["audio"]), dtype="float32")
        assert rate == 16000 and wave.shape == (21 * 1600,) and np.abs(wave).max() > 0
        native, nrate = sf.read(str(out / r["native_audio"]), dtype="float32")
        assert nrate == 16000 and native.shape == (34000,)  # 2.125 s at the tiny model's 16 kHz
    # eval reads the benchmark folder (a 16-frame window per clip) and the prompts CLAP would score
    clips = list(iter_clips(Source("samples", out), 16))
    assert [(c.key, c.prompt, c.frames.shape) for c in clips] == [
        ("0", "a crowd at the concert", (16, 64, 64, 3)), ("1", "the tank fires in the desert", (16, 64, 64, 3))]
    rec = eval_av_align(out, tmp_path / "r", "text2av")
    assert rec["protocols"]["av_align"]["n_clips"] == 2

    # the same seed again: the same bytes; a rerun into the same folder resumes without regenerating
    again = tmp_path / "again"
    assert _cli(*_args(tiny_models, again, seed=5)).exit_code == 0
    assert _files(again) == _files(out) and len(_files(out)) == 8
    assert json.loads((again / "samples.json").read_text(encoding="utf-8"))["samples"] == doc["samples"]
    before = {p: (out / p).stat().st_mtime_ns for p in _files(out)}
    assert _cli(*_args(tiny_models, out, seed=5)).exit_code == 0
    assert {p: (out / p).stat().st_mtime_ns for p in _files(out)} == before
    other = _cli(*_args(tiny_models, out, seed=6))
    assert other.exit_code == 2 and "already holds samples made with other settings" in other.output


def test_text2av_without_cuda_says_so_in_one_line(tiny_models, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    args = _args(tiny_models, tmp_path / "o")
    args[args.index("--device") + 1] = "cuda"
    res = _cli(*args)
    assert res.exit_code == 2 and res.output.startswith("error: --device cuda: no CUDA device here; pass --device cpu")


def test_text2av_offline_video_model_is_one_cli_line(tiny_models, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    args = _args(tiny_models, tmp_path / "o")
    args[args.index("--video-model") + 1] = "THUDM/CogVideoX-2b"
    res = _cli(*args, "--hf-cache", tmp_path / "hf")
    assert res.exit_code == 2
    lines = [s for s in res.output.splitlines() if s.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: THUDM/CogVideoX-2b: ")
    assert "Hugging Face hub" in lines[0] and "--video-model DIR" in lines[0]


def test_bench_script_tiny_prints_a_row_per_stage(capsys, one_thread):
    pytest.importorskip("diffusers")
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_text2av", REPO_ROOT / "scripts" / "bench_text2av.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--tiny", "--clips", "1"]) == 0
    rows = [s for s in capsys.readouterr().out.splitlines() if s.startswith("| ") and not s.startswith("| stage")]
    names = [r.split("|")[1].strip() for r in rows]
    assert names == [*bench.STAGES, "total", "load (once)"]
    seconds = {n: float(r.split("|")[2]) for n, r in zip(names, rows)}
    assert all(seconds[s] > 0 for s in bench.STAGES)  # every stage ran and was timed
    assert seconds["total"] == pytest.approx(sum(seconds[s] for s in bench.STAGES), abs=0.01)
    assert float(rows[names.index("total")].split("|")[4]) > 0  # peak RSS recorded
