"""The one media writer (avbench.media): reproducible H.264/AAC mp4, FLAC and WAV for every stage."""

from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import soundfile as sf

from avbench.media import H264, X264_PARAMS, pcm16, write_flac, write_mp4, write_wav

_WRITE = """
import sys
import numpy as np
import torch
from avbench.media import to_pcm, to_uint8_frames, write_mp4
g = torch.Generator().manual_seed(3)
video = torch.rand(16, 3, 32, 32, generator=g) * 2 - 1   # a sample as the pipeline holds it
audio = (torch.rand(1, 25600, generator=g) * 2 - 1) * 0.5
junk = [np.random.default_rng(int(sys.argv[2])).bytes(1 << 16) for _ in range(64)]  # other heap contents
del junk
write_mp4(sys.argv[1], to_uint8_frames(video), to_pcm(audio), 10, 16000)
"""


def _x264_options(path) -> str:
    """libx264 writes its full option string into the first picture's SEI."""
    data = path.read_bytes()
    start = data.index(b"options: ")
    return data[start : data.index(b"\x00", start)].decode("ascii", "replace")


def test_sample_mp4_bytes_are_identical_across_processes(tmp_path):
    # two interpreters with different heap histories: uninitialised reads would show up as other bytes
    for i in (1, 2):
        subprocess.run([sys.executable, "-c", _WRITE, str(tmp_path / f"{i}.mp4"), str(i)], check=True)
    a, b = (tmp_path / "1.mp4").read_bytes(), (tmp_path / "2.mp4").read_bytes()
    assert a == b
    with av.open(str(tmp_path / "1.mp4")) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for _ in c.decode(video=0)) == 16


def test_the_sample_path_uses_the_reproducible_encoder_settings(tmp_path):
    """The old sample writer ran libx264 with mbtree on and threaded lookahead: the settings that made
    resample's bytes vary from run to run."""
    frames = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    write_mp4(tmp_path / "s.mp4", frames, np.zeros(12800, np.float32), 10, 16000)
    opts = _x264_options(tmp_path / "s.mp4")
    for want in ("mbtree=0", "threads=1", "lookahead_threads=1", "sliced_threads=0", "crf=18.0"):
        assert want in opts, (want, opts)
    write_mp4(tmp_path / "r.mp4", frames, None, 10, settings=H264(crf=23, preset="veryfast", gop=5))
    opts = _x264_options(tmp_path / "r.mp4")
    assert "mbtree=0" in opts and "keyint=5" in opts and "crf=23.0" in opts
    assert X264_PARAMS.startswith("threads=1")


def test_flac_and_wav_hold_the_same_16_bit_samples(tmp_path):
    audio = np.sin(np.linspace(0, 200, 16000, dtype=np.float32)) * 1.2  # includes clipping
    write_flac(tmp_path / "a.flac", audio, 16000)
    write_wav(tmp_path / "a.wav", audio, 16000)
    want = pcm16(audio)
    for name in ("a.flac", "a.wav"):
        got, rate = sf.read(str(tmp_path / name), dtype="int16")
        assert rate == 16000 and np.array_equal(got, want)
    assert want.max() == 32767 and want.min() == -32768  # clipped to the int16 range


def test_16_bit_audio_read_as_float_is_written_back_bit_for_bit(tmp_path):
    ints = np.array([-32768, -32767, -1, 0, 1, 12345, 32766, 32767], np.int16)
    sf.write(str(tmp_path / "in.wav"), ints, 16000, subtype="PCM_16")
    as_float, _ = sf.read(str(tmp_path / "in.wav"), dtype="float32")
    write_wav(tmp_path / "out.wav", as_float, 16000)
    assert np.array_equal(sf.read(str(tmp_path / "out.wav"), dtype="int16")[0], ints)
