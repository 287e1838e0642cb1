"""`avbench build SPEC`: resolve (when needed) → download → scene-cut → resample → shard, one progress display.

Each stage is another module's library call and resumes from its own per-source completion markers,
written atomically (temp file + rename): `records/<id>.json` (download), `scenes/<id>.parquet`
(scene-cut), `clips/<id>/clips.json` (resample, written after the clip files), `shards/index.json`
(shard, removed first and written last). A `kill -9` at any moment therefore leaves either a complete
marker or none, and rerunning the same command finishes the work with the same bytes.

`--partition i/N` runs download, scene-cut and resample for one deterministic slice of the sources (a
SLURM array task) and skips the shard stage; the merge job then runs the whole build once more, which
only checks markers, fills any gap, and shards (`scripts/slurm/build.sbatch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avbench.curate.partition import Partition


@dataclass(frozen=True)
class BuildConfig:
    spec: str  # a spec path or a name in manifests/
    root: Path | None = None  # None = data/<spec name>
    lock: Path | None = None  # a shared lock file instead of resolving the spec's searches
    partition: str = "0/1"
    workers: int = 0  # processes for scene-cut and resample (0 = one per core)
    jobs: int = 1  # concurrent downloads
    progress: bool = True


@dataclass
class BuildSummary:
    root: Path
    partition: str
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage → counts
    failures: dict[str, dict[str, str]] = field(default_factory=dict)  # stage → source id → reason
    shard: Any = None  # ShardSummary when the shard stage ran

    @property
    def failed(self) -> int:
        """Sources that failed in some stage (each counted once, in the stage where it stopped)."""
        return sum(len(v) for v in self.failures.values())

    def lines(self) -> list[str]:
        out = []
        for stage, counts in self.stages.items():
            out.append(f"{stage}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if self.shard is not None:
            samples = ", ".join(f"{k} {v}" for k, v in sorted(self.shard.samples.items()))
            out.append(f"shard: {self.shard.shards} shards ({samples}) → {self.shard.index_path}")
        out.append(f"{self.failed} source(s) failed" + (": see failures/ and records/ under the root" if self.failed else ""))
        return out


def default_root(spec_name: str) -> Path:
    return Path("data") / spec_name


def build_dataset(cfg: BuildConfig) -> BuildSummary:
    """Run every stage for `cfg.spec` into `cfg.root`; resumable; returns per-stage counts and failures."""
    from avbench.curate.download import DownloadConfig, download_sources, load_entries
    from avbench.curate.resample import ResampleConfig, resample_sources
    from avbench.curate.scenes import SceneCutConfig, scene_cut_sources
    from avbench.curate.shard import ShardConfig, shard_dataset
    from avbench.curate.spec import load_spec

    spec = load_spec(cfg.spec)
    root = Path(cfg.root) if cfg.root is not None else default_root(spec.name)
    part = Partition.parse(cfg.partition)
    summary = BuildSummary(root=root, partition=str(part))
    root.mkdir(parents=True, exist_ok=True)

    dl_cfg = DownloadConfig(root=root, spec=str(spec.path), lock=cfg.lock, jobs=cfg.jobs, partition=str(part),
                            progress=False)
    entries, _ = load_entries(dl_cfg)  # resolves searches when needed and pins ROOT/lock.csv

    with _display(cfg.progress) as progress:
        task = progress.add_task("download", total=len(part.select(entries, key=lambda e: e.source_id))) \
            if progress is not None else None

        def downloaded(rec: dict) -> None:
            if task is not None:
                progress.advance(task)

        dl = download_sources(dl_cfg, entries=entries, on_record=downloaded)
        if task is not None:  # sources finished in an earlier run are not reported through the callback
            progress.update(task, completed=len(dl.records))
        summary.stages["download"] = dl.as_dict()
        summary.failures["download"] = {r["source_id"]: f"{r.get('error_class')}: {r.get('error')}"
                                        for r in dl.records if r["status"] != "ok"}

        sc = scene_cut_sources(spec, root, SceneCutConfig(workers=cfg.workers, partition=part, progress=False),
                               progress=progress)
        rs = resample_sources(spec, root, ResampleConfig(workers=cfg.workers, partition=part, progress=False),
                              progress=progress)
        for st in (sc, rs):
            summary.stages[st.stage] = {k: v for k, v in st.to_dict().items() if k not in ("stage", "failures")}
            summary.failures[st.stage] = dict(sorted(st.failures.items()))

        if part.count == 1:
            summary.shard = shard_dataset(spec, root, ShardConfig(), progress=progress)
    return summary


class _display:
    """A rich Progress shared by all stages (None when disabled)."""

    def __init__(self, show: bool):
        self.show, self.progress = show, None

    def __enter__(self):
        if self.show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn())
            self.progress.__enter__()
        return self.progress

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False
