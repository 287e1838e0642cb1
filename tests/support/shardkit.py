"""Test helper: a dataset root in the contract layout, with clips really encoded by PyAV.

Each clip frame k is a flat grey level `level(k)` with a white bar on its left edge (to see flips), and
audio samples [1600·k, 1600·(k+1)) hold the constant `level(k) / 256`. A window is aligned exactly when
every frame's grey level matches its audio segment's value.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from avbench.curate.records import SourceRecord
from avbench.io import atomic_write_json, sha256_bytes

FPS, RATE, SPF = 10, 16000, 1600


def level(k: int) -> int:
    return 40 + 8 * (k % 24)  # 40 … 224: distinct after H.264 rounding


def encode_clip_mp4(frames: int, size: int, first: int = 0) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.codec_context.thread_count = 1
        s.options = {"crf": "18", "preset": "veryfast", "g": "10", "keyint_min": "10", "sc_threshold": "0"}
        for k in range(frames):
            img = np.full((size, size, 3), level(first + k), np.uint8)
            img[:, : max(2, size // 8)] = 255
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = k
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def encode_clip_flac(frames: int, first: int = 0) -> bytes:
    audio = np.repeat(np.array([level(first + k) / 256 for k in range(frames)], np.float32), SPF)
    buf = io.BytesIO()
    sf.write(buf, audio, RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def make_root(root: Path, sources: dict[str, list[int]], sizes=(32,), filtered: dict[str, str] | None = None,
              failed: tuple[str, ...] = ()) -> Path:
    """`sources` maps a source id to the frame counts of its clips; `filtered` maps clip keys to a reason.
    `failed` source ids get a failed download record and no clips."""
    filtered = filtered or {}
    for sid in failed:
        SourceRecord(source_id=sid, kind="url", url=f"http://127.0.0.1/{sid}.mp4", status="failed",
                     error_class="permanent", error="HTTP Error 404", attempts=1).write(root)
    for sid, clip_frames in sources.items():
        src_bytes = sid.encode()  # stands in for the source file: shard reads only its record
        (root / "sources").mkdir(parents=True, exist_ok=True)
        (root / "sources" / f"{sha256_bytes(src_bytes)}.mp4").write_bytes(src_bytes)
        SourceRecord(source_id=sid, kind="synthetic", url=f"synthetic://{sid}", status="ok", attempts=1,
                     sha256=sha256_bytes(src_bytes), path=f"sources/{sha256_bytes(src_bytes)}.mp4",
                     duration_s=sum(clip_frames) / FPS + 2.0, license="test", title=sid).write(root)
        clip_dir = root / "clips" / sid
        clip_dir.mkdir(parents=True, exist_ok=True)
        clips, t = [], 2.0
        for n in clip_frames:
            key = f"{sid}_{round(t * 1000):08d}"
            for size in sizes:
                (clip_dir / f"{key}.{size}.mp4").write_bytes(encode_clip_mp4(n, size))
            (clip_dir / f"{key}.flac").write_bytes(encode_clip_flac(n))
            clips.append({"key": key, "start_s": t, "end_s": t + n / FPS, "frames": n, "samples": n * SPF,
                          "keep": key not in filtered, "reasons": [filtered[key]] if key in filtered else []})
            t += n / FPS
        atomic_write_json(clip_dir / "clips.json", {"source_id": sid, "clips": clips})
    return root


def make_sharded_root(root: Path, sources: dict[str, list[int]], *, seed: int, samples_per_shard: int) -> Path:
    """`make_root` + `avbench shard` with every clip in the train split (32 px, fixed salt)."""
    from avbench.curate.shard import shard_dataset
    from avbench.curate.spec import parse_spec

    make_root(root, sources)
    spec = parse_spec({"name": "t", "description": "sharded test root", "target_hours": 0.01,
                       "sources": [{"kind": "synthetic", "count": len(sources), "seed": seed}],
                       "output": {"sizes": [32], "samples_per_shard": samples_per_shard},
                       "split": {"train": 1.0, "val": 0.0, "test": 0.0, "salt": "x"}})
    shard_dataset(spec, root)
    return root
