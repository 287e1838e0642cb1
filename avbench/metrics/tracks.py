"""Benchmark tracks: TOML files in `manifests/benchmarks/` that fix everything a comparable number depends on.

A track fixes the dataset spec (and optionally its lock file), the reference split and frame size, the
task, the eval protocol, the metrics, the clip count and the seed. `avbench eval --track NAME` evaluates
exactly that; the record stores the track's name and its file's sha256 and a fingerprint of the
reference windows it used, and `avbench leaderboard export` groups rows by track. Every error names the
file and the key, e.g. `manifests/benchmarks/concerts-64.toml: unknown key 'clips' (allowed: ...)`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from avbench.curate.build import default_root
from avbench.curate.spec import load_spec
from avbench.errors import MetricsError
from avbench.metrics.protocols import PROTOCOLS
from avbench.paths import REPO_ROOT, manifests_dir

TASKS = ("unconditional", "audio-to-video", "video-to-audio", "text-to-audio-video")


class TrackError(MetricsError):
    """A track file is missing or invalid; the message names the file and the key."""


@dataclass(frozen=True)
class Track:
    name: str
    description: str
    spec: str  # dataset spec name (manifests/<spec>.toml) or path
    split: str
    size: int
    task: str
    protocol: str
    metrics: tuple[str, ...]
    clip_count: int
    seed: int
    lock: str | None = None  # lock file the reference dataset was built from (path, repository-relative)
    fvd_profile: str | None = None  # only for the `avbench` protocol (the others fix their profile)
    fad_profile: str | None = None
    allow_small: bool = False  # demo/test tracks only: fewer clips than the feature dimension
    path: Path | None = field(default=None, compare=False)
    sha256: str | None = field(default=None, compare=False)

    def to_record(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path) if self.path else None
        d["metrics"] = list(self.metrics)
        return d


_REQUIRED = ("name", "description", "spec", "split", "size", "task", "protocol", "metrics", "clip_count", "seed")
_TYPES = {"name": str, "description": str, "spec": str, "split": str, "size": int, "task": str, "protocol": str,
          "metrics": list, "clip_count": int, "seed": int, "lock": str, "fvd_profile": str, "fad_profile": str,
          "allow_small": bool}


def benchmarks_dir() -> Path:
    return manifests_dir() / "benchmarks"


def resolve_track(name_or_path: str) -> Path:
    """`concerts-64` → `manifests/benchmarks/concerts-64.toml` (cwd first, then the repository's)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.is_file():
        return p
    for base in (Path.cwd() / "manifests" / "benchmarks", benchmarks_dir()):
        cand = base / f"{p.name}.toml"
        if cand.is_file():
            return cand
    have = sorted(q.stem for q in benchmarks_dir().glob("*.toml"))
    raise TrackError(f"no benchmark track named {name_or_path!r} in {benchmarks_dir()}; choose from "
                     f"{', '.join(have) or '(none)'} or pass the path of a track .toml")


def load_track(name_or_path: str, metric_names: tuple[str, ...] | None = None) -> Track:
    """Parse and validate a track file. `metric_names`: the metrics `avbench eval` knows (validated when given)."""
    path = resolve_track(name_or_path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TrackError(f"{path}: file not found; pass a track name from {benchmarks_dir()} or a path") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TrackError(f"{path}: not valid TOML ({e})") from None
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise TrackError(f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_TYPES))})")
    for key in _REQUIRED:
        if key not in data:
            raise TrackError(f"{path}: missing required key {key!r}")
    for key, value in data.items():
        tp = _TYPES[key]
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise TrackError(f"{path}: key {key!r} must be {'an' if tp is int else 'a'} {tp.__name__}, got {value!r}")
    if data["name"] != path.stem:
        raise TrackError(f"{path}: key 'name' is {data['name']!r} but the file is {path.name}; make them agree "
                         "(leaderboard rows are grouped by this name)")
    if data["task"] not in TASKS:
        raise TrackError(f"{path}: key 'task' must be one of {', '.join(TASKS)}, got {data['task']!r}")
    if data["protocol"] not in PROTOCOLS:
        raise TrackError(f"{path}: key 'protocol' must be one of {', '.join(PROTOCOLS)}, got {data['protocol']!r}")
    protocol = PROTOCOLS[data["protocol"]]
    if protocol.reference_split and data["split"] != protocol.reference_split:
        raise TrackError(f"{path}: key 'split' is {data['split']!r} but protocol {protocol.name!r} takes its "
                         f"reference from the {protocol.reference_split!r} split; set split = "
                         f"{protocol.reference_split!r}")
    if protocol.fvd_profile and data.get("fvd_profile") not in (None, protocol.fvd_profile):
        raise TrackError(f"{path}: key 'fvd_profile' is {data['fvd_profile']!r} but protocol {protocol.name!r} "
                         f"fixes {protocol.fvd_profile!r}; remove the key")
    metrics = data["metrics"]
    if not metrics or not all(isinstance(m, str) for m in metrics) or len(set(metrics)) != len(metrics):
        raise TrackError(f"{path}: key 'metrics' must be a non-empty list of distinct metric names, got {metrics!r}")
    if metric_names is not None:
        bad = [m for m in metrics if m not in metric_names]
        if bad:
            raise TrackError(f"{path}: key 'metrics' names unknown metric {bad[0]!r} (known: {', '.join(metric_names)})")
    for key in ("size", "clip_count"):
        if data[key] < 1:
            raise TrackError(f"{path}: key {key!r} must be a positive integer, got {data[key]}")
    if data.get("lock") is not None and not _repo_path(data["lock"]).is_file():
        raise TrackError(f"{path}: key 'lock' names {data['lock']!r}, which does not exist; commit the lock file "
                         "or remove the key")
    return Track(**{**data, "metrics": tuple(metrics)}, path=path, sha256=hashlib.sha256(raw).hexdigest())


def _repo_path(p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() or q.exists() else REPO_ROOT / q


def lock_sha256(track: Track) -> str | None:
    return hashlib.sha256(_repo_path(track.lock).read_bytes()).hexdigest() if track.lock else None


def default_reference_root(track: Track) -> Path:
    """Where `avbench build` puts the track's dataset by default: `data/<spec name>`."""
    return default_root(load_spec(track.spec).name)


def spec_hash(track: Track) -> str:
    return load_spec(track.spec).spec_hash


def apply_track(cfg, metric_flags: tuple[str, ...]):
    """The eval config a track fixes: (config with the track's reference, protocol, metrics, clip count,
    seed and profiles filled in; the track; where the reference root came from). `cfg` is an EvalConfig
    and `metric_flags` its metric fields. A flag that contradicts the track is an error rather than
    silently overridden or obeyed."""
    if cfg.track is None:
        return cfg, None, None
    track = load_track(cfg.track, metric_flags)
    where = f"track {track.name} ({track.path})"
    extra = [m for m in metric_flags if getattr(cfg, m) and m not in track.metrics]
    if extra:
        raise TrackError(f"{where} fixes the metrics ({', '.join(track.metrics)}); drop --{extra[0].replace('_', '-')}")
    fad_given = cfg.fad_profile if cfg.fad_profile != "vggish" else None  # "vggish" is the option's default
    for opt, mine, theirs in (("protocol", cfg.protocol, track.protocol), ("num-clips", cfg.num_clips, track.clip_count),
                              ("fvd-profile", cfg.fvd_profile, track.fvd_profile),
                              ("fad-profile", fad_given, track.fad_profile)):
        if mine is not None and mine != theirs:
            raise TrackError(f"{where} fixes --{opt} {theirs if theirs is not None else '(the default)'}; "
                             f"drop --{opt} {mine}")
    if cfg.seed not in (0, track.seed):
        raise TrackError(f"{where} fixes --seed {track.seed}; drop --seed {cfg.seed}")
    if cfg.reference is not None and ":" in cfg.reference and not Path(cfg.reference).exists():
        raise TrackError(f"{where}: --reference is the dataset ROOT (the track fixes split {track.split} and size "
                         f"{track.size}); pass the folder without ':{cfg.reference.partition(':')[2]}'")
    root, origin = (Path(cfg.reference), "--reference") if cfg.reference else (default_reference_root(track), "spec default")
    if not (root / "shards" / "index.json").is_file():
        hint = "pass --reference ROOT" if origin == "spec default" else "check the folder"
        raise TrackError(f"{root / 'shards' / 'index.json'}: no shard index for {where} (reference root from "
                         f"{origin}); build it with `avbench build {track.spec}` or {hint}")
    out = dataclasses.replace(
        cfg, **{m: m in track.metrics for m in metric_flags}, reference=f"{root}:{track.split}:{track.size}",
        protocol=track.protocol, num_clips=track.clip_count, seed=track.seed,
        allow_small=cfg.allow_small or track.allow_small,
        fvd_profile=track.fvd_profile or cfg.fvd_profile, fad_profile=track.fad_profile or cfg.fad_profile)
    return out, track, origin


def track_record(track: Track, reference, origin: str, warnings: list[str]) -> dict:
    """The track as a result record holds it: its fields and file sha256, the lock's sha256, and whether
    the reference root (a `sources.Source`) was built from the track's spec (a warning when not)."""
    want = spec_hash(track)
    have = reference.meta.get("dataset_spec_hash")
    if have != want:
        warnings.append(f"track {track.name}: the reference root {reference.path} was built from spec "
                        f"{reference.meta.get('dataset_name')!r} (hash {str(have)[:12]}), not the track's "
                        f"{track.spec!r} (hash {want[:12]}): its rows are comparable only with the same fingerprint")
    return {**track.to_record(), "lock_sha256": lock_sha256(track), "spec_hash": want, "spec_match": have == want,
            "reference_root": str(reference.path), "reference_root_from": origin}
