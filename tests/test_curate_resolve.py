"""Resolving specs into lock files: searches (yt-dlp against a loopback feed), Hugging Face listings
(the hub's HTTP API served on loopback), lock file I/O, and downloads driven by a lock file."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
from support.fetchkit import render_bytes
from support.httpserver import FaultServer, add_hf_dataset

from avbench.curate import ffmpeg
from avbench.curate import resolve as resolve_mod
from avbench.curate.download import DownloadConfig, download_sources
from avbench.curate.lock import read_lock, write_lock
from avbench.curate.resolve import resolve_entries, rows_from_search
from avbench.curate.sources import SourceEntry
from avbench.curate.spec import YouTubeSearchSource, load_spec
from avbench.errors import LockError, ResolveError


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("media")
    return [render_bytes(tmp, seed) for seed in (11, 12, 13)]


def _rss(items: list[tuple[str, str, str]]) -> bytes:
    """An RSS feed of (title, url, itunes duration) items, each published on a distinct day."""
    body = []
    for i, (title, url, dur) in enumerate(items):
        date = format_datetime(datetime(2024, 3, 1 + i, 12, 0, tzinfo=timezone.utc))
        body.append(
            f"<item><title>{title}</title><enclosure url=\"{url}\" type=\"video/mp4\" length=\"1\"/>"
            f"<pubDate>{date}</pubDate><itunes:duration>{dur}</itunes:duration></item>"
        )
    return (
        '<?xml version="1.0"?><rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">'
        "<channel><title>loopback search</title>" + "".join(body) + "</channel></rss>"
    ).encode()


def test_search_pins_results_through_yt_dlp(monkeypatch, tmp_path, clips):
    """The real search path (yt-dlp, extract_flat, duration bounds, max_results) on a loopback feed."""
    with FaultServer() as srv:
        urls = [srv.add(f"/c{i}.mp4", b) for i, b in enumerate(clips)]
        items = [("too short", urls[0], "0:30"), ("first", urls[1], "12:00"), ("second", urls[2], "1:05:00"),
                 ("third", srv.url("/not-fetched.mp4"), "20:00")]
        feed = srv.add("/feed.xml", _rss(items), content_type="application/rss+xml")
        monkeypatch.setattr(resolve_mod, "search_url", lambda src, n: feed)
        src = YouTubeSearchSource(query="live concert", max_results=2, min_duration_s=60, max_duration_s=7200)
        rows = resolve_mod.search_youtube(src)
        assert srv.requests_for("/c1.mp4") == []  # flat extraction: no media was fetched
    assert [r.title for r in rows] == ["first", "second"]  # "too short" filtered, max_results cut "third"
    assert [r.url for r in rows] == urls[1:]
    assert [r.duration_s for r in rows] == [720.0, 3900.0]
    assert [r.upload_date for r in rows] == ["20240302", "20240303"]
    assert all(r.kind == "url" and r.query == "live concert" and r.source_id.startswith("url-") for r in rows)


def test_youtube_search_entries_become_youtube_rows():
    # A flat search result shaped like yt-dlp's YoutubeSearch output; the ids are made up for the test
    # and deliberately not YouTube-shaped (11 characters), so they can never pass for real videos.
    info = {
        "_type": "playlist",
        "entries": [
            {"_type": "url", "ie_key": "Youtube", "id": "test-id-a", "title": "A", "channel": "Chan",
             "duration": 1800.0, "url": "https://www.youtube.com/watch?v=test-id-a"},
            {"_type": "url", "ie_key": "Youtube", "id": "test-id-live", "title": "L", "duration": None,
             "live_status": "is_live"},
            {"_type": "url", "ie_key": "Youtube", "id": "test-id-long", "title": "T", "duration": 99999.0},
            {"_type": "url", "ie_key": "Youtube", "id": "test-id-b", "title": "B", "uploader": "Up",
             "duration": 700, "upload_date": "20230105"},
        ],
    }
    src = YouTubeSearchSource(query="q", max_results=5, min_duration_s=600, max_duration_s=7200,
                              creative_commons_only=True)
    rows = rows_from_search(info, src)
    assert [(r.source_id, r.kind, r.url) for r in rows] == [
        ("test-id-a", "youtube", "https://www.youtube.com/watch?v=test-id-a"),
        ("test-id-b", "youtube", "https://www.youtube.com/watch?v=test-id-b"),
    ]
    assert [r.channel for r in rows] == ["Chan", "Up"]
    assert rows[1].upload_date == "20230105"
    assert all(r.license == "creative-commons (search filter)" for r in rows)
    assert resolve_mod.search_url(src, 10).startswith("https://www.youtube.com/results?search_query=q&sp=")
    assert resolve_mod.search_url(YouTubeSearchSource(query="a b"), 10) == "ytsearch10:a b"


def _entries() -> list[SourceEntry]:
    return [
        SourceEntry(source_id="url-bbbbbbbbbbbb", kind="url", id="http://h/b.mp4", url="http://h/b.mp4",
                    title='comma, "quote"', duration_s=12.5, query="q"),
        SourceEntry(source_id="synth-0-0", kind="synthetic", id="42", duration_s=31.5, license="generated"),
        SourceEntry(source_id="abc", kind="youtube", id="abc", url="https://www.youtube.com/watch?v=abc",
                    ranges="[[10.0, 40.0]]"),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_lock_round_trip_is_sorted_and_deterministic(tmp_path, suffix):
    a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    write_lock(a, _entries())
    write_lock(b, list(reversed(_entries())))
    assert a.read_bytes() == b.read_bytes()
    back = read_lock(a)
    assert [e.source_id for e in back] == ["abc", "synth-0-0", "url-bbbbbbbbbbbb"]
    assert back == sorted(_entries(), key=lambda e: e.source_id)
    if suffix == ".csv":
        assert a.read_text().splitlines()[0] == "source_id,kind,id,url,title,channel,duration_s,license,upload_date,query,ranges"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.replace("source_id,kind", "sid,kind"), r"missing column 'source_id'"),
        (lambda t: t.replace("synth-0-0,synthetic", "synth-0-0,torrent"), r"row 3: column 'kind' is 'torrent'"),
        (lambda t: t.replace(",31.5,", ",long,"), r"row 3: column 'duration_s' must be a number, got 'long'"),
        (lambda t: t.replace("url-bbbbbbbbbbbb", "abc"), r"source_id 'abc' appears twice"),
        (lambda t: t.replace("synth-0-0", "../evil"), r"row 3: column 'source_id' '../evil'"),
        (lambda t: t.replace("synth-0-0,synthetic,42", 'file-0123456789abcdef,file,"[""/a.mp4"", 3"'),
         r"row 3: column 'id' of a file row must be a path or a JSON list of paths"),
    ],
)
def test_lock_errors_name_file_row_and_column(tmp_path, mutate, message):
    p = tmp_path / "lock.csv"
    write_lock(p, _entries())
    p.write_text(mutate(p.read_text()))
    with pytest.raises(LockError, match=message) as err:
        read_lock(p)
    assert str(err.value).startswith(str(p))
    with pytest.raises(LockError, match="lock file not found; create it with `avbench resolve"):
        read_lock(tmp_path / "missing.csv")


def _hf_server(srv: FaultServer, clips: list[bytes], sha: str = "0123abcd") -> None:
    add_hf_dataset(srv, "someone/tiny-av", sha, {"README.md": b"# tiny", "chunks/b.mp4": clips[1], "chunks/a.mp4": clips[0]},
                   card={"license": "cc-by-4.0"})


HF_SPEC = """name = "hfset"
description = "hf on loopback"
target_hours = 0.01
[[sources]]
kind = "hf"
repo = "someone/tiny-av"
pattern = "*.mp4"
[[sources]]
kind = "url"
urls = ["{url}"]
[clip]
skip_start_s = 0.0
min_clip_s = 1.0
"""


def test_hf_listing_resolve_cli_and_download_from_lock(tmp_path, clips, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with FaultServer() as srv:
        _hf_server(srv, clips)
        extra = srv.add("/extra.mp4", clips[2])
        spec_path = tmp_path / "hfset.toml"
        spec_path.write_text(HF_SPEC.format(url=extra))
        env = {**os.environ, "HF_ENDPOINT": srv.url("")}
        monkeypatch.setenv("HF_ENDPOINT", srv.url(""))
        lock = tmp_path / "hfset.lock.csv"
        r = subprocess.run([sys.executable, "-m", "avbench", "resolve", str(spec_path), "--out", str(lock)],
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "3 sources (2 hf, 1 url)" in r.stdout
        rows = read_lock(lock)
        hf = [e for e in rows if e.kind == "hf"]
        assert sorted(e.id for e in hf) == ["chunks/a.mp4", "chunks/b.mp4"]  # README.md did not match *.mp4
        assert all(e.url.endswith(f"/resolve/0123abcd/{e.id}") for e in hf)  # pinned to the commit
        assert all(e.channel == "someone/tiny-av" and e.license == "cc-by-4.0" for e in hf)

        # A later build reads the lock only: the hub is not listed again.
        root = tmp_path / "root"
        listings = len(srv.requests_for("/api/datasets/someone/tiny-av/revision/main"))
        s = download_sources(DownloadConfig(root=root, lock=lock, spec=str(spec_path), progress=False))
        assert s.exit_code == 0 and s.ok == 3
        assert len(srv.requests_for("/api/datasets/someone/tiny-av/revision/main")) == listings
        assert (root / "lock.csv").read_bytes() == lock.read_bytes()
        # A spec that needs a lookup reuses ROOT/lock.csv instead of listing the hub again.
        s = download_sources(DownloadConfig(root=root, spec=str(spec_path), progress=False))
        assert s.skipped == 3 and len(srv.requests_for("/api/datasets/someone/tiny-av/revision/main")) == listings


def test_hf_listing_unreachable_gives_one_clear_error(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    spec_path = tmp_path / "hfset.toml"
    spec_path.write_text(HF_SPEC.format(url="http://127.0.0.1:1/x.mp4"))
    with pytest.raises(ResolveError) as err:
        resolve_entries(load_spec(spec_path))
    lines = str(err.value).splitlines()
    assert lines[0] == "1 source(s) could not be resolved:"
    assert f"hfset.toml: [[sources]] #1 (hf): hf dataset someone/tiny-av: cannot reach http://127.0.0.1:{port}" in lines[1]
    assert "set HF_ENDPOINT" in lines[1]
    # A spec that needs a lookup must be pinned before a partitioned (SLURM array) run.
    with pytest.raises(ValueError, match="run `avbench resolve"):
        download_sources(DownloadConfig(root=tmp_path / "r", spec=str(spec_path), partition="0/2", progress=False))


def test_resolve_dedupes_and_keeps_spec_order_for_duplicates(tmp_path):
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(
        'name = "s"\ndescription = "d"\ntarget_hours = 1\n'
        '[[sources]]\nkind = "youtube-search"\nquery = "one"\n'
        '[[sources]]\nkind = "youtube-search"\nquery = "two"\n'
    )
    found = {
        "one": [SourceEntry(source_id="test-id-z", kind="youtube", id="test-id-z", url="u", query="one")],
        "two": [SourceEntry(source_id="test-id-z", kind="youtube", id="test-id-z", url="u", query="two"),
                SourceEntry(source_id="test-id-a", kind="youtube", id="test-id-a", url="u", query="two")],
    }
    rows = resolve_entries(load_spec(spec_path), search=lambda src: found[src.query])
    assert [(r.source_id, r.query) for r in rows] == [("test-id-a", "two"), ("test-id-z", "one")]


def test_ffmpeg_is_put_on_path_under_its_plain_name(monkeypatch, tmp_path):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert shutil.which("ffmpeg") is None
    link = ffmpeg.ensure_ffmpeg_on_path()
    assert link.name == "ffmpeg" and link.is_symlink()
    assert shutil.which("ffmpeg") == str(link)
    out = subprocess.run(["ffmpeg", "-hide_banner", "-version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ffmpeg version")
    assert ffmpeg.ensure_ffmpeg_on_path() == link  # idempotent
