"""The yt-dlp glue: error classes from yt-dlp's messages, and URLs a lock file may hold that avbench
refuses to hand to yt-dlp (permanently: fetching them again cannot make them URLs)."""

from __future__ import annotations

import pytest
from yt_dlp.utils import DownloadError

from avbench.curate.download import DownloadConfig, download_sources
from avbench.curate.lock import write_lock
from avbench.curate.sources import SourceEntry, short_hash
from avbench.curate.ytdlp import check_url, classify
from avbench.errors import SourceFailure


@pytest.mark.parametrize(
    "message, cls",
    [
        ("ERROR: [youtube] test-id-x: Private video. Sign in if you've been granted access to this video", "permanent"),
        ("ERROR: [youtube] test-id-x: Video unavailable. This video has been removed by the uploader", "permanent"),
        ("ERROR: [youtube] test-id-x: Sign in to confirm you're not a bot. Use --cookies", "transient"),
        ("ERROR: [download] Got error: HTTP Error 403: Forbidden", "transient"),
        ("ERROR: [youtube] test-id-x: Requested format is not available", "permanent"),
        ("ERROR: [download] Got error: The read operation timed out", "transient"),
        ("ERROR: something nobody has seen before", "transient"),
    ],
)
def test_message_classes(message, cls):
    got_cls, msg = classify(DownloadError(message))
    assert got_cls == cls
    assert not msg.startswith("ERROR:") and "\n" not in msg


HOSTILE = ["file:///etc/passwd", "$(touch {tmp}/pwned)", "`touch {tmp}/pwned`", "http://127.0.0.1:1/a b.mp4",
           "javascript:alert(1)", "ftp://127.0.0.1/a.mp4"]


@pytest.mark.parametrize("url", HOSTILE)
def test_check_url_refuses_what_is_not_an_http_url(url, tmp_path):
    with pytest.raises(SourceFailure, match="refused, not an http") as err:
        check_url(url.format(tmp=tmp_path))
    assert err.value.cls == "permanent"


def test_check_url_accepts_what_resolve_writes():
    check_url("https://www.youtube.com/watch?v=test-id-a")
    check_url("https://huggingface.co/datasets/o/r/resolve/0123abcd/chunks/a%20b.mp4")
    check_url("http://127.0.0.1:8080/v.mp4?sig=a+b&x=(1)")
    check_url("https://example.org/vidéo.mp4")  # an IRI: yt-dlp escapes it


def test_hostile_urls_in_a_lock_file_fail_permanently_and_are_not_retried(tmp_path):
    """Before: yt-dlp refused them, but with messages classed transient, so every run tried again."""
    urls = [u.format(tmp=tmp_path) for u in HOSTILE]
    lock = tmp_path / "lock.csv"
    write_lock(lock, [SourceEntry(source_id=f"url-{short_hash(u)}", kind="url", id=u, url=u) for u in urls])
    cfg = DownloadConfig(root=tmp_path / "root", lock=lock, retries=0, progress=False)
    summary = download_sources(cfg)
    assert summary.failed_permanent == len(urls) and summary.exit_code == 1
    for rec in summary.records:
        assert rec["error_class"] == "permanent" and "refused" in rec["error"], rec["error"]
    again = download_sources(cfg)
    assert again.skipped == len(urls) and all(r["attempts"] == 1 for r in again.records)
    assert not (tmp_path / "pwned").exists()
