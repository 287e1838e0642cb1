"""Dataset specs: the TOML files in `manifests/`, parsed into frozen dataclasses and validated.

A spec says *what* a dataset is (sources, clip policy, output format, splits); the stages decide *how*.
Every error names the file and the key, e.g.
`manifests/concerts.toml: [clip] unknown key 'skip_start' (allowed: max_clip_s, min_clip_s, skip_start_s)`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from avbench.errors import SpecError
from avbench.paths import resolve_manifest


@dataclass(frozen=True)
class ClipPolicy:
    skip_start_s: float = 10.0  # the seed skipped intros / channel idents
    max_clip_s: float = 34.0  # longer scenes are split into equal parts
    min_clip_s: float = 1.6  # one training window (16 frames at 10 fps)


@dataclass(frozen=True)
class OutputFormat:
    fps: int = 10
    sizes: tuple[int, ...] = (64, 256)
    sample_rate: int = 16000
    resize: Literal["center-crop", "letterbox"] = "center-crop"
    samples_per_shard: int = 0  # 0 = choose per frame size (~1 GB shards at 256 px)
    # Clip encoding (libx264, one thread, so the bytes are reproducible): a GOP of one second keeps
    # random access to any training window cheap.
    crf: int = 18
    preset: str = "veryfast"
    gop: int = 10


@dataclass(frozen=True)
class SplitPolicy:
    train: float = 0.90
    val: float = 0.05
    test: float = 0.05
    salt: str = "avbench-v1"


@dataclass(frozen=True)
class SceneDetection:
    detector: Literal["content", "adaptive"] = "content"
    threshold: float | None = None  # None = the detector's default (content 27, adaptive 3)
    min_scene_s: float = 0.5
    downscale: int = 0  # 0 = let PySceneDetect choose from the frame width


@dataclass(frozen=True)
class Filters:
    silence_dbfs: float = -50.0  # a 0.1 s window quieter than this is silent
    silence_fraction: float = 0.9  # a clip is silent when more than this fraction of windows is
    frozen_mad: float = 1.0  # mean |frame difference| (0-255 scale) below this is a frozen step
    frozen_fraction: float = 0.9
    black_luma: float = 16.0  # mean luma (0-255) below this is a black frame
    black_fraction: float = 0.9


# ---- sources: one dataclass per `kind` -------------------------------------------------------------


@dataclass(frozen=True)
class YouTubeSource:
    """Pinned YouTube videos. `ranges` optionally maps an id to [start_s, end_s] spans to keep."""

    ids: tuple[str, ...]
    ranges: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    kind: Literal["youtube"] = "youtube"


@dataclass(frozen=True)
class YouTubeSearchSource:
    """A search, pinned into a lock file by `avbench resolve`; never rebuilt from the live search."""

    query: str
    max_results: int = 50
    min_duration_s: float = 60.0
    max_duration_s: float = 4 * 3600.0
    creative_commons_only: bool = False
    kind: Literal["youtube-search"] = "youtube-search"


@dataclass(frozen=True)
class UrlSource:
    urls: tuple[str, ...]
    kind: Literal["url"] = "url"


@dataclass(frozen=True)
class FileSource:
    """Local files; relative paths and globs are relative to the spec file's directory. A file is identified
    by its bytes (sources.expand_files), so the same files in another folder are the same sources."""

    paths: tuple[str, ...]
    kind: Literal["file"] = "file"


@dataclass(frozen=True)
class HFSource:
    """Files of a Hugging Face dataset repository matching `pattern` (glob), at `revision`."""

    repo: str
    pattern: str = "*.mp4"
    revision: str = "main"
    kind: Literal["hf"] = "hf"


@dataclass(frozen=True)
class SyntheticSource:
    """Procedural audio-video sources (avbench.curate.synthetic), deterministic from `seed`."""

    count: int = 10
    seed: int = 0
    min_duration_s: float = 20.0
    max_duration_s: float = 40.0
    kind: Literal["synthetic"] = "synthetic"


Source = Union[YouTubeSource, YouTubeSearchSource, UrlSource, FileSource, HFSource, SyntheticSource]
SOURCE_KINDS: dict[str, type] = {
    "youtube": YouTubeSource,
    "youtube-search": YouTubeSearchSource,
    "url": UrlSource,
    "file": FileSource,
    "hf": HFSource,
    "synthetic": SyntheticSource,
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    target_hours: float
    sources: tuple[Source, ...]
    clip: ClipPolicy = ClipPolicy()
    output: OutputFormat = OutputFormat()
    split: SplitPolicy = SplitPolicy()
    scenes: SceneDetection = SceneDetection()
    filters: Filters = Filters()
    path: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("path")
        return d

    @property
    def spec_hash(self) -> str:
        """sha256 of the canonical parsed spec: formatting and comments in the TOML do not change it."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.sha256(canon.encode()).hexdigest()


# ---- parsing -----------------------------------------------------------------------------------------

_SECTIONS = {"clip": ClipPolicy, "output": OutputFormat, "split": SplitPolicy, "scenes": SceneDetection, "filters": Filters}


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp` and convert lists to tuples; raise SpecError otherwise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise SpecError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for a in args:
            try:
                return _convert(value, a, where)
            except SpecError as e:
                errors.append(str(e))
        raise SpecError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where} must be a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise SpecError(f"{where} must have {len(args)} items, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{where} must be a table, got {type(value).__name__}")
        return {_convert(k, args[0], where): _convert(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where} must be an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise SpecError(f"{where} must be a {tp.__name__}, got {value!r}")
        return value
    raise SpecError(f"{where}: unsupported type {tp!r}")  # a programming error in this module


def _build(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise SpecError(f"{where} must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "path"}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise SpecError(f"{where} unknown key {unknown[0]!r} (allowed: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name in table:
            kwargs[name] = _convert(table[name], hints[name], f"{where} key {name!r}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SpecError(f"{where} missing required key {name!r}")
    return cls(**kwargs)


def parse_spec(data: dict[str, Any], path: Path | None = None) -> DatasetSpec:
    label = str(path) if path else "<spec>"
    data = dict(data)
    raw_sources = data.pop("sources", None)
    if not raw_sources:
        raise SpecError(f"{label}: missing required key 'sources' (add at least one [[sources]] table)")
    if not isinstance(raw_sources, list):
        raise SpecError(f"{label}: 'sources' must be an array of tables ([[sources]])")
    sources = []
    for i, s in enumerate(raw_sources):
        where = f"{label}: [[sources]] #{i + 1}"
        if not isinstance(s, dict) or "kind" not in s:
            raise SpecError(f"{where} missing required key 'kind' (one of {', '.join(SOURCE_KINDS)})")
        cls = SOURCE_KINDS.get(s["kind"])
        if cls is None:
            raise SpecError(f"{where} unknown kind {s['kind']!r} (one of {', '.join(SOURCE_KINDS)})")
        sources.append(_build(cls, s, where))
    sections = {}
    for key, cls in _SECTIONS.items():
        if key in data:
            sections[key] = _build(cls, data.pop(key), f"{label}: [{key}]")
    top = _build(DatasetSpec, {**data, "sources": []}, f"{label}:")
    spec = dataclasses.replace(top, sources=tuple(sources), path=path, **sections)
    _check_values(spec, label)
    return spec


def _check_values(spec: DatasetSpec, label: str) -> None:
    s = spec.split
    if min(s.train, s.val, s.test) < 0 or abs(s.train + s.val + s.test - 1.0) > 1e-6:
        raise SpecError(f"{label}: [split] train + val + test must be non-negative and sum to 1")
    c = spec.clip
    if not (0 < c.min_clip_s <= c.max_clip_s) or c.skip_start_s < 0:
        raise SpecError(f"{label}: [clip] needs 0 < min_clip_s <= max_clip_s and skip_start_s >= 0")
    if not spec.output.sizes or any(x <= 0 for x in spec.output.sizes):
        raise SpecError(f"{label}: [output] key 'sizes' must list positive frame sizes")


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and validate a spec; a name like `demo` resolves to `manifests/demo.toml`."""
    try:
        p = resolve_manifest(path)
    except FileNotFoundError as e:
        raise SpecError(str(e)) from None
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{p}: file not found; pass the path of a dataset spec (.toml)") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{p}: not valid TOML ({e})") from None
    return parse_spec(data, p)
