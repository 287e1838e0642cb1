"""Review regressions for avbench/curate and avbench/data: timelines, markers, determinism."""

from __future__ import annotations

import json
import shutil

import av
import numpy as np
import soundfile as sf
from support.fetchkit import faststart, render_bytes, url_spec
from support.httpserver import FaultServer
from support.shardkit import make_root
from support.synthroot import add_synthetic

from avbench.curate.download import DownloadConfig, download_sources
from avbench.curate.partition import Partition
from avbench.curate.records import ready_sources
from avbench.curate.resample import resample_file
from avbench.curate.shard import shard_dataset
from avbench.curate.spec import Filters, OutputFormat, parse_spec

OUT = OutputFormat(sizes=(32,))
SPANS = [(0.4, 4.5, 0)]


def _remux(src, dst, drop=None):
    """Copy the packets of `src` into another container (Matroska: 1 ms time base); `drop(packet)` → skip."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {}
        for s in inp.streams:
            streams[s.index] = out.add_stream_from_template(s)
        for packet in inp.demux():
            if packet.dts is None:
                continue
            if drop is not None and packet.stream.type == "audio" and drop(packet):
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


def _audio(root, result):
    return sf.read(root / result["clips"][0]["audio"], dtype="float64")[0]


def _lag(ref, wider):
    """|offset| in samples of `ref` inside `wider` (which has 32 extra samples each side)."""
    return abs(int(np.argmax(np.correlate(wider, ref, "valid"))) - 32)


def test_coarse_audio_timestamps_are_not_gaps(tmp_path):
    """AAC at 44.1 kHz in Matroska has 1 ms pts (1024 samples = 23.22 ms): the rounding is not a gap,
    so the clip audio equals the one made from the same frames in mp4 (exact pts)."""
    truth = add_synthetic(tmp_path, "m", 7, 5.0, ext="mp4", audio_codec="aac")
    mp4 = tmp_path / truth["path"]
    mkv = tmp_path / "same.mkv"
    _remux(mp4, mkv)
    with av.open(str(mkv)) as c:
        assert float(c.streams.audio[0].time_base) == 1e-3
    a = resample_file(mp4, "m", SPANS, tmp_path / "a", OUT, Filters())
    b = resample_file(mkv, "m", SPANS, tmp_path / "b", OUT, Filters())
    assert a["audio_gaps"] == 0
    assert b["audio_gaps"] == 0
    x, y = _audio(tmp_path / "a", a), _audio(tmp_path / "b", b)
    assert len(x) == len(y) == 1600 * 41
    # the mp4 AAC priming frame sits before t = 0; within one 1 ms pts step the two must agree
    assert _lag(x[8000:40000], y[8000 - 32 : 40000 + 32]) <= 16


def test_a_real_gap_is_still_silence_at_its_place(tmp_path):
    truth = add_synthetic(tmp_path, "g", 7, 5.0, ext="mp4", audio_codec="aac")
    mp4 = tmp_path / truth["path"]
    whole, mkv = tmp_path / "whole.mkv", tmp_path / "gap.mkv"
    _remux(mp4, whole)
    _remux(mp4, mkv, drop=lambda p: 2.0 <= float(p.pts * p.time_base) < 2.5)
    a = resample_file(whole, "g", SPANS, tmp_path / "a", OUT, Filters())
    b = resample_file(mkv, "g", SPANS, tmp_path / "b", OUT, Filters())
    assert a["audio_gaps"] == 0
    assert b["audio_gaps"] == 1
    x, y = _audio(tmp_path / "a", a), _audio(tmp_path / "b", b)
    start = 0.4
    # after the gap, the audio is where it belongs (not pulled forward by the missing half second)
    # (the first pts after the gap is rounded to 1 ms, so allow that much)
    lo, hi = int((2.8 - start) * 16000), int((4.2 - start) * 16000)
    assert _lag(x[lo:hi], y[lo - 32 : hi + 32]) <= 16
    # inside the gap: silence (AAC frames at its edges spread into it by at most one frame)
    glo, ghi = int((2.05 - start) * 16000), int((2.45 - start) * 16000)
    assert np.abs(y[glo:ghi]).max() == 0.0


def test_a_rejected_download_is_fetched_again_not_reused(tmp_path):
    """A server that sends a cut-off file with a matching Content-Length: yt-dlp calls it complete, the
    probe calls it truncated (transient). When the server is fixed, the rerun must download again
    instead of yt-dlp reusing the bad file left in the work dir ("already downloaded") forever."""
    whole = faststart(render_bytes(tmp_path, 11, duration_s=8.0), tmp_path)
    cut = whole[: int(len(whole) * 0.6)]
    root = tmp_path / "root"
    with FaultServer() as srv:
        srv.add("/v.mp4", cut)
        spec = url_spec(tmp_path / "spec.toml", [srv.url("/v.mp4")])
        cfg = DownloadConfig(root=root, spec=str(spec), retries=1, backoff_s=0.0, progress=False)
        (rec,) = download_sources(cfg).records
        assert (rec["status"], rec["error_class"]) == ("failed", "transient"), rec["error"]
        srv.state.entries["/v.mp4"].body = whole
        (rec,) = download_sources(cfg).records
        assert rec["status"] == "ok", rec["error"]
        assert rec["attempts"] == 2
        assert (root / rec["path"]).read_bytes() == whole


def test_a_leftover_temp_record_is_not_a_second_source(tmp_path):
    """atomic_path's temporary names start with ".tmp-" but pathlib's "*" matches dot files: a copy left
    by a kill -9 between write and rename must not make a source ready twice (duplicate samples)."""
    add_synthetic(tmp_path, "synth-1-0", 3, 2.0)
    add_synthetic(tmp_path, "synth-1-1", 4, 2.0)
    rec = tmp_path / "records" / "synth-1-0.json"
    shutil.copy(rec, tmp_path / "records" / ".tmp-synth-1-0.json.k2j3h4.json")
    assert [r["source_id"] for r in ready_sources(tmp_path)] == ["synth-1-0", "synth-1-1"]
    halves = [[r["source_id"] for r in ready_sources(tmp_path, Partition(i, 2))] for i in range(2)]
    assert halves == [["synth-1-0"], ["synth-1-1"]]


def test_clips_of_a_replaced_source_are_not_sharded_under_its_new_hash(tmp_path):
    """Resume markers only say "done": when a source was fetched again with other bytes (the cache file
    was deleted; YouTube re-muxed it), clips made from the old bytes must not be sharded with the new
    record's provenance."""
    make_root(tmp_path, {"a": [16], "b": [16]})
    for sid, made_from in (("a", None), ("b", "0" * 64)):
        rec = json.loads((tmp_path / "records" / f"{sid}.json").read_text())
        table = tmp_path / "clips" / sid / "clips.json"
        data = json.loads(table.read_text())
        data["source_sha256"] = made_from or rec["sha256"]
        table.write_text(json.dumps(data))
    spec = parse_spec({"name": "t", "description": "d", "target_hours": 0.01,
                       "sources": [{"kind": "synthetic", "count": 2, "seed": 1}],
                       "output": {"sizes": [32], "samples_per_shard": 4},
                       "split": {"train": 1.0, "val": 0.0, "test": 0.0, "salt": "x"}})
    summary = shard_dataset(spec, tmp_path)
    assert summary.samples["32/train"] == 1
    assert len(summary.clip_errors) == 1 and "clips/b" in summary.clip_errors[0], summary.clip_errors
