"""`avbench build SPEC`: resolve (when needed) → download → scene-cut → resample → shard, one progress display.

Every stage is a `Stage` run by `run_stage`, and resumes from its own per-source completion markers,
written atomically (temp file + rename): `records/<id>.json` (download), `scenes/<id>.parquet`
(scene-cut), `clips/<id>/clips.json` (resample, written after the clip files), `shards/index.json`
(shard, removed first and written last). A `kill -9` at any moment therefore leaves either a complete
marker or none (temp files a kill leaves are removed by the stage's `cleanup` on the next run), and
rerunning the same command finishes the work with the same bytes.

An unpartitioned run that sharded something ends by writing the dataset card, ROOT/README.md
(curate/card.py), from the records just written.

`--partition i/N` runs download, scene-cut and resample for one deterministic slice of the sources (a
SLURM array task) and skips the shard stage; the merge job then runs the whole build once more, which
only checks markers, fills any gap, and shards (`scripts/slurm/build.sbatch`).

Exit status (`BuildSummary.exit_code`): EXIT_FAILED (1) when nothing was built — every source of the
slice failed, or the shard stage wrote no shard — or, under `strict`, when any source failed;
EXIT_TRANSIENT (3) when transient failures remain (rerun to retry them); else EXIT_OK.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from avbench.curate.card import write_card
from avbench.curate.download import DownloadConfig, download_stage, load_entries
from avbench.curate.executors import check_executor, open_executor
from avbench.curate.partition import Partition
from avbench.curate.resample import resample_stage
from avbench.curate.scenes import scene_cut_stage
from avbench.curate.shard import ShardConfig, ShardStage, ShardSummary
from avbench.curate.spec import load_spec
from avbench.curate.stage import Stage, StageSummary, failure_path, run_stage
from avbench.errors import EXIT_FAILED, EXIT_OK, EXIT_TRANSIENT


@dataclass(frozen=True)
class BuildConfig:
    # metadata["help"] is the help of the generated `avbench build` option
    spec: str = field(metadata={"help": "Dataset spec: a path to a .toml or a name in manifests/ (e.g. demo)."})
    root: Path | None = field(default=None, metadata={"help": "Dataset root (default: data/<spec name>)."})
    lock: Path | None = field(default=None, metadata={
        "help": "A shared lock file (from `avbench resolve`) instead of searching."})
    partition: Partition = field(default=Partition(0, 1), metadata={  # "I/N" text is accepted and parsed
        "help": "Build only slice I of N (0-based) and skip sharding; a final unpartitioned run merges."})
    workers: int = field(default=0, metadata={
        "help": "Processes for scene-cut and resample (0 = one per core).", "min": 0})
    jobs: int = field(default=1, metadata={"help": "Concurrent downloads.", "min": 1})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})
    executor: str = field(default="local", metadata={
        "help": "local | ray: where jobs run (ray: one Ray task per source and stage, same markers; "
                "needs the `ray` extra; --workers then caps tasks in flight, 0 = as the cluster's CPUs allow)."})
    ray_address: str | None = field(default=None, metadata={
        "help": "With --executor ray: address of a running Ray cluster (e.g. auto); default: RAY_ADDRESS, "
                "else a local Ray started for this build."})

    def __post_init__(self) -> None:
        object.__setattr__(self, "partition", Partition.parse(self.partition))


@dataclass
class BuildSummary:
    root: Path
    partition: Partition
    sources: int = 0  # sources of this slice (the download stage's jobs)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage → counts
    failures: dict[str, dict[str, str]] = field(default_factory=dict)  # stage → source id → reason
    shard: ShardSummary | None = None  # when the shard stage ran
    transient: int = 0  # failures that a rerun may fix

    @property
    def failed(self) -> int:
        """Sources that failed in some stage (each counted once, in the stage where it stopped)."""
        return sum(len(v) for v in self.failures.values())

    @property
    def nothing_built(self) -> bool:
        """Every source failed, the spec has none, or the shard stage ran and wrote no shard. (An empty
        slice of a partitioned run is not a failure: an array may have more tasks than sources.)"""
        if self.sources == 0:
            return self.partition.count == 1
        if self.failed >= self.sources:
            return True
        return self.shard is not None and self.shard.shards == 0

    def exit_code(self, strict: bool = False) -> int:
        if self.nothing_built or (strict and self.failed):
            return EXIT_FAILED
        return EXIT_TRANSIENT if self.transient else EXIT_OK

    def lines(self) -> list[str]:
        out = []
        for stage, counts in self.stages.items():
            out.append(f"{stage}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if self.shard is not None:
            samples = ", ".join(f"{k} {v}" for k, v in sorted(self.shard.samples.items()))
            out.append(f"shard: {self.shard.shards} shards ({samples}) → {self.shard.index_path}")
            if self.shard.sources_partial:
                out.append(f"{len(self.shard.sources_partial)} source(s) partial (damaged; clips before the "
                           "damage kept): see shards/stats.json")
        where = ": see failures/ and records/ under the root" if self.failed else ""
        out.append(f"{self.failed} source(s) failed{where}")
        if self.nothing_built:
            if self.sources == 0:
                out.append("nothing was built: the spec has no sources")
            elif self.failed >= self.sources:
                out.append("nothing was built: every source failed")
            else:
                out.append("nothing was built: no clip reached the shards (see shards/stats.json)")
        return out


def default_root(spec_name: str) -> Path:
    return Path("data") / spec_name


def build_dataset(cfg: BuildConfig) -> BuildSummary:
    """Run every stage for `cfg.spec` into `cfg.root`; resumable; returns per-stage counts and failures."""
    check_executor(cfg.executor)  # before anything runs
    spec = load_spec(cfg.spec)
    root = Path(cfg.root) if cfg.root is not None else default_root(spec.name)
    lock = cfg.lock
    if cfg.executor != "local":  # workers elsewhere have another working directory: absolute paths only
        root, lock = root.absolute(), (Path(lock).absolute() if lock is not None else None)
        spec = load_spec(spec.path.absolute())
    part = cfg.partition
    summary = BuildSummary(root=root, partition=part)
    root.mkdir(parents=True, exist_ok=True)

    dl_cfg = DownloadConfig(root=root, spec=str(spec.path), lock=lock, jobs=cfg.jobs, partition=part,
                            progress=False)
    entries, _ = load_entries(dl_cfg)  # resolves searches when needed and pins ROOT/lock.csv
    stages = [
        (download_stage(dl_cfg, entries), max(1, cfg.jobs)),
        (scene_cut_stage(spec), cfg.workers),
        (resample_stage(spec), cfg.workers),
        (ShardStage(spec, ShardConfig()), 1),
    ]
    with open_executor(cfg.executor, ray_address=cfg.ray_address) as dispatch, _display(cfg.progress) as progress:
        for stage, workers in stages:
            st = run_stage(stage, root, part, workers=workers, progress=progress if progress is not None else False,
                           dispatch=dispatch)
            if stage.name == "shard":
                if "shards" in st.results:
                    summary.shard = ShardSummary(**st.results["shards"])
                elif st.failures:  # a crash of the merge itself: report it as the shard stage's failure
                    summary.failures["shard"] = dict(st.failures)
                continue
            _record(summary, st, stage, root, part)
    if summary.shard is not None and not summary.nothing_built:  # the card describes shards that exist
        write_card(spec, root)
    return summary


def _record(summary: BuildSummary, st: StageSummary, stage: Stage, root: Path, part: Partition) -> None:
    summary.stages[st.stage] = {k: v for k, v in st.to_dict().items() if k not in ("stage", "failures")}
    if st.stage != "download":
        summary.failures[st.stage] = dict(sorted(st.failures.items()))
        summary.transient += st.transient
        return
    # A source that failed permanently in an earlier run is `done` (not retried) but still failed: the
    # failure records on disk, not this run's results, say which sources of the slice are out.
    ids = [job.source_id for job in stage.jobs(root, part)]
    summary.sources = len(ids)
    failures = {}
    for sid in ids:
        path = failure_path(root, st.stage, sid)
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        failures[sid] = f"{rec.get('error_class')}: {rec.get('error')}"
        summary.transient += rec.get("error_class") == "transient"
    summary.failures[st.stage] = failures


class _display:
    """A rich Progress shared by all stages (None when disabled)."""

    def __init__(self, show: bool):
        self.show, self.progress = show, None

    def __enter__(self) -> Progress | None:
        if self.show:
            self.progress = Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn())
            self.progress.__enter__()
        return self.progress

    def __exit__(self, *exc: Any) -> bool:
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False
