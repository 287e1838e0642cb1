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
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from avbench.curate.download import DownloadConfig, download_sources
from avbench.curate.resample import ResampleConfig, resample_sources
from avbench.curate.scenes import SceneCutConfig, scene_cut_sources
from avbench.curate.shard import shard_dataset
from avbench.curate.spec import load_spec
from avbench.data import WindowConfig, WindowDataset, make_loader


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=int, default=3)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per source")
    ap.add_argument("--windows", type=int, default=400, help="windows to time in the loader")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

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
