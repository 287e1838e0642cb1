"""What real footage has and synthetic sources lack: surround sound, rotation, damage, short audio."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tracemalloc

import av
import numpy as np
import pytest
import soundfile as sf
from support.avsources import scene_picture, tone, write_source
from support.synthroot import add_record

from avbench.curate.audiotrack import downmix_weights, frame_to_mono
from avbench.curate.resample import ResampleStage, resample_file, resample_sources
from avbench.curate.scenes import SceneCutConfig, scene_cut_sources
from avbench.curate.spec import ClipPolicy, DatasetSpec, Filters, OutputFormat, SyntheticSource
from avbench.curate.stage import run_stage

OUT = OutputFormat(sizes=(32,))
H = math.sqrt(0.5)


def _spec(**clip) -> DatasetSpec:
    return DatasetSpec(name="footage", description="", target_hours=0.01, sources=(SyntheticSource(count=1),),
                       clip=ClipPolicy(skip_start_s=0.0, **clip), output=OUT)


# ---- 5.1 downmix -------------------------------------------------------------------------------------


def _surround(t: np.ndarray) -> np.ndarray:
    """FL FR FC LFE BL BR: a 440 Hz tone in the centre only, a loud 50 Hz rumble in the LFE."""
    z = np.zeros_like(t)
    return np.stack([z, z, 0.25 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 50 * t), z, z])


def test_downmix_weights_are_the_bs775_fold_down():
    w = downmix_weights(["FL", "FR", "FC", "LFE", "BL", "BR"])
    assert np.allclose(w, [0.5, 0.5, H, 0.0, H / 2, H / 2])
    assert np.allclose(downmix_weights(["FL", "FR", "FC", "LFE", "SL", "SR"]), w)
    assert downmix_weights(["FL", "FR"]) is None and downmix_weights(["FC"]) is None  # the plain mean


def test_downmix_is_libswresample_s_matrix_up_to_a_fixed_gain():
    """FFmpeg's own 5.1 → mono (float output, unnormalised) is ours × √2, channel for channel."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 1024)) * 0.1).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(x, format="fltp", layout="5.1")
    frame.sample_rate = 48000
    ffmpeg = av.AudioResampler(format="flt", layout="mono", rate=48000).resample(frame)[0].to_ndarray()[0]
    assert np.allclose(frame_to_mono(frame) * math.sqrt(2), ffmpeg, atol=1e-6)


def test_a_5_1_source_keeps_its_level_and_drops_the_lfe(tmp_path):
    src = write_source(tmp_path / "s51.mp4", 6.0, picture=scene_picture(160, 90), sound=_surround, layout="5.1")
    result = resample_file(src, "s", [(1.0, 5.0, 0)], tmp_path / "out", OUT, Filters())
    audio, rate = sf.read(str(tmp_path / "out" / result["clips"][0]["audio"]), dtype="float64")
    mid = audio[rate : 3 * rate]
    spectrum = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    freqs = np.fft.rfftfreq(len(mid), 1 / rate)
    at = lambda f: spectrum[np.argmin(np.abs(freqs - f))]
    rms = np.sqrt(np.mean(mid**2))
    want = H * 0.25 / math.sqrt(2)  # the centre at √½; the mean of six channels gave a sixth of it
    assert abs(20 * math.log10(rms / want)) < 0.5, (rms, want)
    assert at(50) < 0.01 * at(440)  # the LFE is not in the mix


# ---- rotation ----------------------------------------------------------------------------------------


def _left_white(k: int, t: float) -> np.ndarray:
    img = np.full((32, 64, 3), 20, np.uint8)
    img[:, :32] = 235  # the left half of the stored picture
    img[:, (k % 8) * 4 + 32 : (k % 8) * 4 + 34] = 120
    return img


def test_a_rotated_source_comes_out_upright(tmp_path):
    # stored 64×32 with a 90° counter-clockwise display rotation: shown as 32×64, the white half at the bottom
    src = write_source(tmp_path / "rot.mp4", 4.0, picture=_left_white, sound=tone(), width=64, height=32, rotation=90)
    with av.open(str(src)) as c:
        assert next(c.decode(video=0)).rotation == 90
    result = resample_file(src, "r", [(0.0, 3.0, 0)], tmp_path / "out", OUT, Filters())
    assert result["rotation_deg"] == 90
    with av.open(str(tmp_path / "out" / result["clips"][0]["video"]["32"])) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(float)
    top, bottom = img[:12].mean(), img[20:].mean()  # centre crop of the upright 32×64 picture
    assert bottom > 200 and top < 60, (top, bottom)
    # the ffmpeg command line (autorotate on by default) shows the same orientation
    import imageio_ffmpeg

    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(src), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    shown = np.frombuffer(raw, np.uint8).reshape(64, 32)
    assert shown[40:].mean() > 200 and shown[:24].mean() < 60


# ---- damage, short audio, leftovers --------------------------------------------------------------------


def _corrupt(path, t0: float, t1: float = 0.6) -> float:
    """Zero the video packets of [t0, t0 + t1); returns the first damaged packet's time."""
    data = bytearray(path.read_bytes())
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        packets = [(float(p.pts * p.time_base), p.pos, p.size) for p in c.demux(vs) if p.pts is not None and p.pos]
    hit = [p for p in packets if t0 <= p[0] < t0 + t1]
    for _, pos, size in hit:
        data[pos + 4 : pos + size] = bytes(size - 4)  # keep the NAL length, lose the slice data
    path.write_bytes(bytes(data))
    return min(p[0] for p in hit)


def test_a_corrupt_packet_keeps_the_clips_before_it(tmp_path):
    from avbench.curate.shard import ShardConfig, shard_dataset

    root = tmp_path / "root"
    src = write_source(tmp_path / "c.mp4", 12.0, picture=scene_picture(160, 90, scene_s=2.0), sound=tone())
    damaged_at = _corrupt(src, 6.0)
    add_record(root, "dmg", src, 12.0)
    spec = _spec(max_clip_s=2.0, min_clip_s=1.6)
    assert scene_cut_sources(spec, root, SceneCutConfig(workers=1, progress=False)).failed == 0
    summary = resample_sources(spec, root, progress=False)
    assert summary.failed == 0 and summary.results["dmg"]["status"] == "partial", summary.failures
    meta = json.loads((root / "clips" / "dmg" / "clips.json").read_text())
    assert meta["status"] == "partial" and meta["decode_errors"] >= 1
    assert 3.0 <= meta["damage_at_s"] <= damaged_at + 1e-6
    ends = [c["end"] for c in meta["clips"]]
    assert ends and max(ends) <= meta["damage_at_s"] + 1e-6 and len(ends) >= 2  # the clips before are kept
    shards = shard_dataset(spec, root, ShardConfig(samples_per_shard=100))
    stats = json.loads((root / "shards" / "stats.json").read_text())
    assert stats["sources"]["partial"] == {"dmg": meta["damage_at_s"]}
    assert sum(shards.samples.values()) == sum(c["keep"] for c in meta["clips"]) > 0


def test_damage_before_the_first_clip_fails_the_source_naming_the_users_file(tmp_path):
    from avbench.curate.build import BuildConfig, build_dataset

    media = tmp_path / "media"
    media.mkdir()
    src = write_source(media / "my concert.mp4", 6.0, picture=scene_picture(160, 90), sound=tone())
    _corrupt(src, 0.8, 0.6)  # after the first pictures (the download probe decodes those), before 1.6 s
    spec = tmp_path / "d.toml"
    spec.write_text('name = "d"\ndescription = "damaged"\ntarget_hours = 0.01\n[[sources]]\nkind = "file"\n'
                    'paths = ["media/my concert.mp4"]\n[clip]\nskip_start_s = 0.0\n[output]\nsizes = [32]\n')
    summary = build_dataset(BuildConfig(spec=str(spec), root=tmp_path / "root", workers=1, progress=False))
    (sid, reason), = summary.failures["resample"].items()
    assert "corrupt data" in reason and "no clip ends before it" in reason
    assert "my concert.mp4" in reason and sid in reason  # the user's file, not only sources/<sha256>.mp4


def test_finished_clips_are_written_when_the_audio_ended_early(tmp_path):
    """Audio 4 s of 60 s: each later clip is written as its pictures are complete, not held to the end."""
    src = write_source(tmp_path / "short-audio.mp4", 60.0, picture=scene_picture(96, 54), sound=tone(),
                       width=96, height=54, audio_seconds=4.0)
    spans = [(float(a), float(a) + 2.0, i) for i, a in enumerate(range(0, 58, 2))]
    out = OutputFormat(sizes=(64,))
    tracemalloc.start()
    try:
        result = resample_file(src, "a", spans, tmp_path / "out", out, Filters())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = 20 * 64 * 64 * 3  # one clip's pictures
    assert len(result["clips"]) == len(spans)
    assert peak < 8 * held, f"peak {peak / 1e6:.1f} MB: {peak // held} clips' pictures held"  # 29 clips before
    late = [c for c in result["clips"] if c["start"] >= 6.0]
    assert late and all(c["audio_zero_filled_samples"] == c["samples"] for c in late)


def test_a_resumed_resample_removes_the_temp_files_a_kill_left(tmp_path):
    root = tmp_path / "root"
    src = write_source(tmp_path / "k.mp4", 4.0, picture=scene_picture(160, 90), sound=tone())
    add_record(root, "k", src, 4.0)
    spec = _spec()
    scene_cut_sources(spec, root, SceneCutConfig(workers=1, progress=False))
    clip_dir = root / "clips" / "k"
    clip_dir.mkdir(parents=True)
    # what atomic_path leaves when the process dies between creating its temp file and renaming it
    leftovers = [clip_dir / ".tmp-k_00000000.32.mp4.ab12cd34.mp4", clip_dir / ".tmp-k_00000000.flac.ef56gh78.flac"]
    for p in leftovers:
        p.write_bytes(b"\x00" * 100)
    summary = run_stage(ResampleStage(spec.output, spec.filters), root, workers=1, progress=False)
    assert summary.done == 1
    assert not any(p.exists() for p in leftovers)
    assert not list(clip_dir.glob(".tmp-*"))


_ONE_PROCESS = """
import sys
from pathlib import Path
from avbench.curate.scenes import detect_cuts
from avbench.curate.resample import resample_file
from avbench.curate.spec import Filters, OutputFormat, SceneDetection
src = Path(sys.argv[1])
cuts, end = detect_cuts(src, SceneDetection())
resample_file(src, "x", [(0.0, 1.6, 0), (1.6, 3.2, 1)], Path(sys.argv[2]), OutputFormat(sizes=(32,)), Filters())
print("done", len(cuts))
"""


def test_scene_cut_then_resample_in_one_process_prints_no_encoder_log(tmp_path):
    src = write_source(tmp_path / "q.mp4", 4.0, picture=scene_picture(160, 90), sound=tone())
    run = subprocess.run([sys.executable, "-c", _ONE_PROCESS, str(src), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120, check=False)  # fd-level: libav writes to fd 2
    assert run.returncode == 0, run.stderr
    assert "done" in run.stdout
    assert "libx264" not in run.stderr and "x264" not in run.stderr, run.stderr[:2000]


def test_a_source_starting_at_10_h_reports_its_real_duration(tmp_path):
    """Matroska stores absolute times: the container's duration is the END time (36012 s here)."""
    from avbench.curate.build import BuildConfig, build_dataset

    media = tmp_path / "media"
    media.mkdir()
    write_source(media / "late.mkv", 12.0, picture=scene_picture(160, 90), sound=tone(), start_s=36000.0)
    with av.open(str(media / "late.mkv")) as c:
        assert c.duration / 1e6 > 36000  # what the header says
    spec = tmp_path / "late.toml"
    spec.write_text('name = "late"\ndescription = "late start"\ntarget_hours = 0.01\n'
                    '[[sources]]\nkind = "file"\npaths = ["media/late.mkv"]\n'
                    '[clip]\nskip_start_s = 0.0\nmax_clip_s = 4.0\n[output]\nsizes = [32]\n'
                    '[split]\ntrain = 1.0\nval = 0.0\ntest = 0.0\n')
    summary = build_dataset(BuildConfig(spec=str(spec), root=tmp_path / "root", workers=1, progress=False))
    assert summary.failed == 0 and summary.shard.shards >= 1, summary.failures
    stats = json.loads((tmp_path / "root" / "shards" / "stats.json").read_text())
    assert stats["total"]["hours_in"] == pytest.approx(12.0 / 3600, abs=1e-4)
    assert stats["total"]["hours_out"] == pytest.approx(12.0 / 3600, abs=2e-4)
    meta = json.loads(next((tmp_path / "root" / "clips").glob("*/clips.json")).read_text())
    assert meta["video_start_s"] == pytest.approx(36000.0) and meta["clips"][0]["start"] == 0.0
