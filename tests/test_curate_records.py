"""Source records: one schema (SourceRecord), read back as written, `is_done` as the download stage
needs it, and `ready_sources` over the lock file."""

from __future__ import annotations

import json

from avbench.curate.lock import write_lock
from avbench.curate.records import SourceRecord, all_records, ready_sources, record_path
from avbench.curate.sources import SourceEntry, file_entry


def test_a_record_reads_back_as_written_and_like_its_json(tmp_path):
    rec = SourceRecord(source_id="file-0123456789abcdef", kind="file", id="/a/x.mp4", title="x.mp4",
                       paths=["/a/x.mp4", "/b/x.mp4"], ranges=[[1.0, 2.5]], status="ok", attempts=2,
                       sha256="ab" * 32, path="sources/" + "ab" * 32 + ".mp4", bytes=10, duration_s=3.0,
                       probe={"width": 96}, fetcher="copy")
    path = rec.write(tmp_path)
    assert path == record_path(tmp_path, rec.source_id) == tmp_path / "records" / "file-0123456789abcdef.json"
    assert SourceRecord.read(tmp_path, rec.source_id) == rec
    data = json.loads(path.read_text())
    assert dict(rec) == data and rec["paths"] == data["paths"] and rec.get("query") == ""
    # yt-dlp's provenance is only written for sources yt-dlp fetched
    assert "format" not in data and "format" not in rec and rec.get("format") is None


def test_unknown_keys_of_a_newer_schema_survive_a_round_trip(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "s.json").write_text(json.dumps({"source_id": "s", "status": "ok", "new_key": [1, 2]}))
    rec = SourceRecord.read(tmp_path, "s")
    assert rec["new_key"] == [1, 2]
    rec.replace(attempts=3).write(tmp_path)
    assert json.loads((tmp_path / "records" / "s.json").read_text())["new_key"] == [1, 2]


def test_is_done(tmp_path):
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "x.mp4").write_bytes(b"x")
    ok = SourceRecord(source_id="a", status="ok", path="sources/x.mp4")
    assert ok.is_done(tmp_path) and ok.present(tmp_path)
    assert not ok.replace(path="sources/gone.mp4").is_done(tmp_path)  # the cache file was deleted
    permanent = SourceRecord(source_id="a", error_class="permanent", error="404")
    assert permanent.is_done(tmp_path) and not permanent.is_done(tmp_path, retry_failed=True)
    assert not SourceRecord(source_id="a", error_class="transient").is_done(tmp_path)


def test_ready_sources_skips_failed_missing_unlisted_and_leftover_records(tmp_path):
    (tmp_path / "sources").mkdir()
    for sid in ("a", "b", "c", "d"):
        (tmp_path / "sources" / f"{sid}.mp4").write_bytes(sid.encode())
    SourceRecord(source_id="a", status="ok", path="sources/a.mp4").write(tmp_path)
    SourceRecord(source_id="b", status="failed", error_class="permanent", path="sources/b.mp4").write(tmp_path)
    SourceRecord(source_id="c", status="ok", path="sources/missing.mp4").write(tmp_path)
    SourceRecord(source_id="d", status="ok", path="sources/d.mp4").write(tmp_path)
    (tmp_path / "records" / ".tmp-a.json.x1y2.json").write_text((tmp_path / "records" / "a.json").read_text())
    assert [r.source_id for r in all_records(tmp_path)] == ["a", "b", "c", "d"]
    assert [r.source_id for r in ready_sources(tmp_path)] == ["a", "d"]
    # with a lock file, only its sources are part of the dataset
    write_lock(tmp_path / "lock.csv", [SourceEntry(source_id=s, kind="synthetic", id="1") for s in ("a", "b", "c")])
    assert [r.source_id for r in ready_sources(tmp_path)] == ["a"]


def test_a_file_record_keeps_every_path_of_its_entry():
    entry = file_entry("file-0123456789abcdef", ["/b/y.mp4", "/a/x.mp4"])
    rec = SourceRecord.from_entry(entry)
    assert rec.paths == ["/a/x.mp4", "/b/y.mp4"] and rec.title == "x.mp4"
    assert rec.status == "failed" and rec.attempts == 1
