"""Where evaluation clips come from: generated-sample folders, folders of mp4s, shard folders, dataset splits.

Every source yields `Clip`s: one window of `frames` frames (uint8 RGB) plus the audio that covers exactly
those frames (float32 mono at its native rate). `iter_clips` gives one window per clip, starting at frame
0 (the `avbench` protocol); `iter_windows` gives the windows a clip-drawing protocol chose
(`protocols.draw_windows` over `list_clips`), read by random access into the files and tars. Generated
and reference sets are sampled by the same rule. `reference_fingerprint` hashes the clip keys, window
starts and member bytes a score actually used. (Over 400 lines because the four source kinds share these
readers; splitting them would scatter one format over two modules.)

Source strings:
- `DIR:split` or `DIR:split:size` where `DIR/shards/index.json` exists → the dataset split through the
  loader (`avbench.data`, eval mode, fixed window at frame 0); size defaults to the largest built.
- a folder in the `avbench sample` layout (`video/<i>.mp4`, `audio/<i>.wav`, `samples.json`);
- a folder of `*.tar` shards (members `<key>.mp4`, `<key>.flac`, `<key>.json`);
- a folder of `*.mp4` files with an audio stream.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from avbench import dataset_index
from avbench.errors import MetricsError


class SourceError(MetricsError):
    """A sample or reference location cannot be read; the message names it and the fix."""


@dataclass
class Clip:
    key: str
    frames: np.ndarray | None  # uint8 [T, H, W, 3]
    audio: np.ndarray | None  # float32 mono
    sample_rate: int
    fps: float
    prompt: str | None = None
    start: int = 0  # first frame of the window within its clip


@dataclass
class Source:
    kind: str  # "dataset" | "samples" | "shards" | "mp4"
    path: Path
    split: str | None = None
    size: int | None = None
    meta: dict = field(default_factory=dict)

    def describe(self) -> dict:
        d = {"kind": self.kind, "path": str(self.path)}
        if self.split is not None:
            d.update(split=self.split, size=self.size)
        d.update(self.meta)
        return d


def parse_source(spec: str) -> Source:
    """Turn a `--samples`/`--reference` string into a Source (see module docstring)."""
    path = Path(spec)
    if not path.exists() and ":" in spec:
        base, _, rest = spec.partition(":")
        split, _, size = rest.partition(":")
        index_path = dataset_index.index_path(base)
        if not index_path.is_file():
            raise SourceError(f"{index_path}: no shard index for dataset source {spec!r}; build the dataset or pass a folder")
        index = dataset_index.load_index(base)  # validated: shard paths confined to shards/
        sizes = sorted({int(r["size"]) for r in index["shards"] if r["split"] == split})
        if not sizes:
            raise SourceError(f"{index_path}: no shards for split {split!r}; use one of "
                              f"{sorted({r['split'] for r in index['shards']})}")
        chosen = int(size) if size else sizes[-1]
        spec_hash = (index.get("spec") or {}).get("hash")
        return Source("dataset", Path(base), split, chosen, meta={
            "dataset_spec_hash": spec_hash, "dataset_name": (index.get("spec") or {}).get("name"),
            "index_sha256": hashlib.sha256(index_path.read_bytes()).hexdigest()})
    if not path.is_dir():
        raise SourceError(f"{spec}: not a folder and not DIR:split of a built dataset; pass a sample folder or DIR:test")
    if (path / "video").is_dir():
        return Source("samples", path)
    if any(path.glob("*.tar")):
        return Source("shards", path)
    if any(path.glob("*.mp4")):
        return Source("mp4", path)
    raise SourceError(f"{path}: no video/ folder, *.tar shards or *.mp4 files found; point it at `avbench sample` output")


def content_hash(src: Source) -> str:
    """Identity of a source's content for the reference cache: index hash, or names+sizes+mtimes of files."""
    if src.kind == "dataset":
        return f"{src.meta['index_sha256']}:{src.split}:{src.size}"
    h = hashlib.sha256()
    for p in sorted(q for q in src.path.rglob("*") if q.is_file()):
        st = p.stat()
        h.update(f"{p.relative_to(src.path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def count_clips(src: Source) -> int | None:
    """How many clips the source holds (for progress bars); None where only reading would tell."""
    if src.kind == "dataset":
        index = dataset_index.load_index(src.path)
        return sum(r["samples"] for r in index["shards"] if r["split"] == src.split and int(r["size"]) == src.size)
    if src.kind == "samples":
        return len(list((src.path / "video").glob("*.mp4")))
    if src.kind == "mp4":
        return len(list(src.path.glob("*.mp4")))
    return None


def _to_float(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.int16:
        return a.astype(np.float32) / 32768.0
    if a.dtype == np.int32:
        return a.astype(np.float32) / 2147483648.0
    return a.astype(np.float32)


def decode_mp4(data: bytes | Path, frames: int, want_video: bool, want_audio: bool,
               start: int = 0) -> tuple[np.ndarray | None, np.ndarray | None, int, float]:
    """RGB frames start … start+frames−1 and the audio under them (mono mean) from an mp4 file or bytes."""
    import av

    fh = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else str(data)
    with av.open(fh) as container:
        vs = container.streams.video[0]
        fps = float(vs.average_rate or vs.guessed_rate or 10)
        video = None
        if want_video:
            vs.thread_type = "AUTO"
            out, seen = [], 0
            for frame in container.decode(vs):
                seen += 1
                if seen <= start:
                    continue
                out.append(frame.to_ndarray(format="rgb24"))
                if len(out) == frames:
                    break
            if len(out) < frames:
                where = f" from frame {start}" if start else ""
                raise SourceError(f"video has {len(out)} frames{where}, fewer than a window of {frames}")
            video = np.stack(out)
        audio, rate = None, 0
        if want_audio:
            if not container.streams.audio:
                raise SourceError("no audio stream (FAD needs one; pass the `avbench sample` folder with audio/*.wav)")
            container.seek(0)
            ast = container.streams.audio[0]
            rate = int(ast.rate)
            need = int(round(frames / fps * rate))
            offset = int(round(start / fps * rate))
            chunks, have = [], 0
            for af in container.decode(ast):
                a = _to_float(af.to_ndarray())
                a = a.reshape(len(af.layout.channels), -1) if af.format.is_planar else a.reshape(-1, len(af.layout.channels)).T
                chunks.append(a.mean(axis=0))
                have += chunks[-1].shape[0]
                if have >= offset + need:
                    break
            audio = np.concatenate(chunks)[offset:offset + need] if chunks else np.zeros(0, np.float32)
            if len(audio) < need:
                raise SourceError(f"audio has {len(audio)} samples, need {need} to cover {frames} frames")
    return video, audio, rate, fps


def _read_wav(path: Path, seconds: float, start_s: float = 0.0) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        need = int(round(seconds * f.samplerate))
        if start_s:
            f.seek(int(round(start_s * f.samplerate)))
        a = f.read(need, dtype="float32", always_2d=True)
        rate = f.samplerate
    if a.shape[0] < need:
        raise SourceError(f"{path}: {a.shape[0]} samples, need {need} to cover the video window")
    return a.mean(axis=1), rate


def _sample_items(src: Source) -> list[tuple[str, Path, Path | None, str | None]]:
    prompts: dict[str, str] = {}
    meta_path = src.path / "samples.json"
    if meta_path.is_file():
        doc = json.loads(meta_path.read_text(encoding="utf-8"))
        rows = doc.get("samples", doc) if isinstance(doc, dict) else doc
        if isinstance(rows, list):
            for row in rows:
                if isinstance(row, dict) and row.get("prompt") is not None:
                    prompts[str(row.get("index", row.get("key", "")))] = row["prompt"]
    videos = sorted((src.path / "video").glob("*.mp4"), key=lambda p: (len(p.stem), p.stem))
    items = []
    for v in videos:
        wav = src.path / "audio" / f"{v.stem}.wav"
        items.append((v.stem, v, wav if wav.is_file() else None, prompts.get(v.stem)))
    return items


def _ordered_parallel(fn, items: list, workers: int) -> Iterator:
    """`map(fn, items)` on a thread pool (PyAV and libsndfile release the GIL), in order, bounded look-ahead."""
    if workers <= 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 4 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def iter_clips(src: Source, frames: int = 16, *, want_video: bool = True, want_audio: bool = True,
               limit: int | None = None, errors: list[str] | None = None, workers: int = 0) -> Iterator[Clip]:
    """Yield up to `limit` clips in a fixed order; unreadable files are recorded in `errors` (when given) and
    skipped. `workers` > 0 decodes in parallel (threads for folders, DataLoader processes for datasets)."""
    n = 0

    def fail(where: str, exc: Exception) -> None:
        msg = f"{where}: {exc}"
        if errors is None:
            raise SourceError(msg) from exc
        errors.append(msg)

    if src.kind == "dataset":
        import torch

        from avbench.data.windows import WindowConfig, WindowDataset

        ds = WindowDataset(src.path, WindowConfig(size=src.size, split=src.split, frames=frames, mode="eval"),
                           rank=0, world_size=1)
        rate = ds.samples_per_frame * ds.fps
        # Eval mode gives worker w the positions w::W and the DataLoader takes one item from each worker in
        # turn, so the order (and hence which clips `limit` keeps) does not depend on the worker count.
        workers = min(workers, ds.num_samples, os.cpu_count() or 1)
        stream = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers) if workers > 1 else ds
        for item in stream:
            if limit is not None and n >= limit:
                return
            video = ((item["video"].permute(0, 2, 3, 1) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
            yield Clip(item["key"], video if want_video else None, item["audio"][0].numpy() if want_audio else None, rate, float(ds.fps))
            n += 1
        return

    if src.kind in ("samples", "mp4"):
        if src.kind == "samples":
            items = _sample_items(src)
        else:
            items = [(p.stem, p, None, None) for p in sorted(src.path.glob("*.mp4"))]

        def load(item) -> Clip | tuple[str, Exception]:
            key, video_path, wav, prompt = item
            try:
                v, a, rate, fps = decode_mp4(video_path, frames, want_video, want_audio and wav is None)
                if want_audio and wav is not None:
                    a, rate = _read_wav(wav, frames / fps)
            except Exception as exc:  # noqa: BLE001 - any broken file is recorded, the rest still count
                return str(video_path), exc
            return Clip(key, v, a, rate, fps, prompt)

        # Broken files are skipped, so the look-ahead decodes a few more than `limit` at most.
        for got in _ordered_parallel(load, items, workers):
            if limit is not None and n >= limit:
                return
            if isinstance(got, tuple):
                fail(*got)
                continue
            yield got
            n += 1
        return

    if src.kind == "shards":
        import soundfile as sf

        for tar_path in sorted(src.path.glob("*.tar")):
            groups: dict[str, dict[str, bytes]] = {}
            with tarfile.open(tar_path) as tar:
                for m in tar.getmembers():
                    if m.isfile():
                        key, _, ext = m.name.partition(".")
                        groups.setdefault(key, {})[ext] = tar.extractfile(m).read()
            for key in sorted(groups):
                if limit is not None and n >= limit:
                    return
                g = groups[key]
                try:
                    v, _, _, fps = decode_mp4(g["mp4"], frames, want_video, False)
                    a, rate = None, 0
                    if want_audio:
                        with sf.SoundFile(io.BytesIO(g["flac"])) as f:
                            need = int(round(frames / fps * f.samplerate))
                            a = f.read(need, dtype="float32", always_2d=True).mean(axis=1)
                            rate = f.samplerate
                        if len(a) < need:
                            raise SourceError(f"audio has {len(a)} samples, need {need}")
                except Exception as exc:  # noqa: BLE001
                    fail(f"{tar_path}:{key}", exc)
                    continue
                yield Clip(key, v, a, rate, fps)
                n += 1
        return
    raise SourceError(f"unknown source kind {src.kind!r}")


# ---- random access: clip lengths, chosen windows, fingerprints ----------------------------------------

def _tar_members(tar_path: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """key → {ext: (byte offset, size)} of one tar, in member order (read by seeking, not extracting)."""
    groups: dict[str, dict[str, tuple[int, int]]] = {}
    with tarfile.open(tar_path) as tar:
        for m in tar.getmembers():
            if m.isfile():
                key, _, ext = m.name.partition(".")
                groups.setdefault(key, {})[ext] = (m.offset_data, m.size)
    return groups


def _read_at(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


class _Store:
    """Where each clip's member files live, so a window can be read (and hashed) by key in any order."""

    def __init__(self, src: Source):
        self.src = src
        self.order: list[str] = []
        self.members: dict[str, dict[str, tuple[Path, int, int]]] = {}  # key → ext → (file, offset, size)
        self.prompts: dict[str, str | None] = {}
        self.fps: int | None = None
        self.rate: int | None = None
        if src.kind in ("dataset", "shards"):
            if src.kind == "dataset":
                index = dataset_index.load_index(src.path)
                tars = [dataset_index.shard_file(src.path, r) for r in index["shards"]
                        if int(r["size"]) == src.size and r["split"] == src.split]
                self.fps, self.rate = int(index["fps"]), int(index["sample_rate"])
            else:
                tars = sorted(src.path.glob("*.tar"))
            for tar_path in tars:
                for key, exts in _tar_members(tar_path).items():
                    self.order.append(key)
                    self.members[key] = {e: (tar_path, off, size) for e, (off, size) in exts.items()}
        elif src.kind == "samples":
            for key, video, wav, prompt in _sample_items(src):
                self.order.append(key)
                self.members[key] = {"mp4": (video, 0, -1), **({"wav": (wav, 0, -1)} if wav else {})}
                self.prompts[key] = prompt
        elif src.kind == "mp4":
            for p in sorted(src.path.glob("*.mp4")):
                self.order.append(p.stem)
                self.members[p.stem] = {"mp4": (p, 0, -1)}
        else:
            raise SourceError(f"unknown source kind {src.kind!r}")

    def read(self, key: str, ext: str) -> bytes:
        path, offset, size = self.members[key][ext]
        return path.read_bytes() if size < 0 else _read_at(path, offset, size)

    def frame_count(self, key: str) -> int:
        exts = self.members[key]
        if "json" in exts:
            meta = json.loads(self.read(key, "json"))
            frames = (meta.get("video") or {}).get("frames") if isinstance(meta, dict) else None
            if isinstance(frames, int):
                return frames
        return _count_frames(self.read(key, "mp4"))

    def window(self, key: str, start: int, frames: int, want_video: bool, want_audio: bool) -> Clip:
        exts = self.members[key]
        if self.src.kind == "dataset":
            # avbench.data pulls in torch: imported when a dataset window is read, not for `eval --help`
            from avbench.data.decode import decode_audio_window, decode_video_window

            spf = self.rate // self.fps
            v = decode_video_window(self.read(key, "mp4"), start, frames, self.fps) if want_video else None
            a = decode_audio_window(self.read(key, "flac"), start * spf, frames * spf) if want_audio else None
            return Clip(key, v, a, self.rate, float(self.fps), start=start)
        audio_member = "flac" if "flac" in exts else "wav" if "wav" in exts else None
        v, a, rate, fps = decode_mp4(self.read(key, "mp4"), frames, want_video, want_audio and audio_member is None,
                                     start=start)
        if want_audio and audio_member is not None:
            import soundfile as sf

            with sf.SoundFile(io.BytesIO(self.read(key, audio_member))) as f:
                need = int(round(frames / fps * f.samplerate))
                f.seek(int(round(start / fps * f.samplerate)))
                a = f.read(need, dtype="float32", always_2d=True).mean(axis=1)
                rate = f.samplerate
            if len(a) < need:
                raise SourceError(f"audio has {len(a)} samples from frame {start}, need {need}")
        return Clip(key, v, a, rate, fps, self.prompts.get(key), start=start)


def _count_frames(mp4: bytes) -> int:
    import av

    with av.open(io.BytesIO(mp4)) as container:
        vs = container.streams.video[0]
        if vs.frames:
            return int(vs.frames)
        return sum(1 for p in container.demux(vs) if p.size)


def list_clips(src: Source) -> list[tuple[str, int]]:
    """(key, frame count) of every clip of the source, in source order (index/tar order, sorted files)."""
    store = _Store(src)
    return [(k, store.frame_count(k)) for k in store.order]


def iter_windows(src: Source, windows: list[tuple[str, int]], frames: int = 16, *, want_video: bool = True,
                 want_audio: bool = True, errors: list[str] | None = None, workers: int = 0) -> Iterator[Clip]:
    """Yield the given (key, start) windows in the given order; unreadable ones are recorded in `errors`
    (when given) and skipped, as in `iter_clips`."""
    store = _Store(src)

    def load(w: tuple[str, int]) -> Clip | tuple[str, Exception]:
        key, start = w
        try:
            return store.window(key, start, frames, want_video, want_audio)
        except Exception as exc:  # noqa: BLE001 - a broken clip is recorded, the rest still count
            return f"{src.path}:{key}@{start}", exc

    for got in _ordered_parallel(load, windows, workers):
        if isinstance(got, tuple):
            if errors is None:
                raise SourceError(f"{got[0]}: {got[1]}") from got[1]
            errors.append(f"{got[0]}: {got[1]}")
            continue
        yield got


def reference_fingerprint(src: Source, used: list[tuple[str, int]]) -> str:
    """sha256 over the (key, window start) pairs a score used, in order, each with the sha256 of every
    member file of its clip: two records share it only if they scored the same windows of the same bytes."""
    store = _Store(src)
    digests: dict[str, str] = {}
    h = hashlib.sha256()
    for key, start in used:
        if key not in digests:
            exts = store.members.get(key)
            if exts is None:
                raise SourceError(f"{src.path}: clip {key!r} is not in the source any more; the fingerprint "
                                  "cannot be computed (re-run without the reference cache: --no-cache)")
            digests[key] = ",".join(f"{e}:{hashlib.sha256(store.read(key, e)).hexdigest()}" for e in sorted(exts))
        h.update(f"{key}\0{start}\0{digests[key]}\n".encode())
    return h.hexdigest()
