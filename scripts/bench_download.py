"""Overhead of the download stage itself, without a remote site in the way.

Serves N synthetic sources from a loopback HTTP server of its own (in-memory files, Range requests) and
times `download_sources` (yt-dlp generic extractor + PyAV probe + sha256 + records) for a few `--jobs`
values, plus the probe alone. Real downloads are bound by the site (about 300 videos/hour per YouTube
session), so this only shows that the per-source overhead is small next to that.

    python scripts/bench_download.py --sources 8 --duration 20
"""

from __future__ import annotations

import argparse
import re
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from avbench.curate.download import DownloadConfig, download_sources
from avbench.curate.probe import probe_media
from avbench.curate.synthetic import render_synthetic


class _RangeHandler(BaseHTTPRequestHandler):
    """GET/HEAD of in-memory files, with single `Range: bytes=a-b` requests (what yt-dlp sends)."""

    protocol_version = "HTTP/1.1"
    server: LoopbackServer

    def log_message(self, format, *args):  # a benchmark table, not an access log
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        body = self.server.files.get(self.path.split("?", 1)[0])
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end, status = 0, len(body) - 1, 200
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", (self.headers.get("Range") or "").strip())
        if m and (m[1] or m[2]):
            if m[1]:
                start, end = int(m[1]), min(int(m[2]), end) if m[2] else end
            else:  # suffix form: the last N bytes
                start = max(0, len(body) - int(m[2]))
            if start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        self.end_headers()
        if not head:
            self.wfile.write(body[start:end + 1])


class LoopbackServer(ThreadingHTTPServer):
    """`with LoopbackServer({"/a.mp4": data}) as srv: srv.url("/a.mp4")` on 127.0.0.1, a free port."""

    daemon_threads = True

    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.files = files
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request, client_address):
        pass  # yt-dlp hangs up after its probe requests; that is not an error here

    def url(self, path: str) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


def url_spec(path: Path, urls: list[str]) -> Path:
    """A dataset spec with one `url` source per URL (clips from the start, so short sources qualify)."""
    quoted = ", ".join(f'"{u}"' for u in urls)
    path.write_text(f'''name = "bench-download"
description = "loopback sources for scripts/bench_download.py"
target_hours = 0.01
[[sources]]
kind = "url"
urls = [{quoted}]
[clip]
skip_start_s = 0.0
min_clip_s = 1.0
''')
    return path


def render_bytes(tmp: Path, seed: int, duration_s: float) -> bytes:
    path = tmp / f"src-{seed}.mp4"
    render_synthetic(path, seed, duration_s, width=640, height=360, fps=30, sample_rate=44100, channels=2)
    return path.read_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=8)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per source")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.perf_counter()
        media = [render_bytes(tmp, 100 + i, args.duration) for i in range(args.sources)]
        render_s = time.perf_counter() - t0
        mb = sum(len(m) for m in media) / 1e6
        probe_file = tmp / "probe.mp4"
        probe_file.write_bytes(media[0])
        t0 = time.perf_counter()
        for _ in range(5):
            probe_media(probe_file)
        probe_ms = (time.perf_counter() - t0) / 5 * 1000

        rows = []
        with LoopbackServer({f"/s{i}.mp4": m for i, m in enumerate(media)}) as srv:
            urls = [srv.url(f"/s{i}.mp4") for i in range(len(media))]
            spec = url_spec(tmp / "bench.toml", urls)
            for jobs in args.jobs:
                root = tmp / f"root-j{jobs}"
                t0 = time.perf_counter()
                # one loopback host: --per-host must not hold back the --jobs being measured
                s = download_sources(DownloadConfig(root=root, spec=str(spec), jobs=jobs, per_host=jobs, progress=False))
                dt = time.perf_counter() - t0
                assert s.ok == args.sources, s.as_dict()
                t0 = time.perf_counter()
                download_sources(DownloadConfig(root=root, spec=str(spec), jobs=jobs, per_host=jobs, progress=False))
                resume_dt = time.perf_counter() - t0
                rows.append((jobs, dt, args.sources / dt, mb / dt, resume_dt))

    print(f"{args.sources} sources x {args.duration:.0f} s (640x360 30 fps, AAC stereo), {mb:.1f} MB in all")
    print(f"render (synthetic): {render_s / args.sources:.2f} s/source; probe: {probe_ms:.0f} ms/source")
    print(f"{'jobs':>4} | {'wall s':>7} | {'sources/s':>9} | {'MB/s':>6} | {'rerun (all skipped) s':>21}")
    for jobs, dt, sps, mbps, rdt in rows:
        print(f"{jobs:>4} | {dt:7.2f} | {sps:9.2f} | {mbps:6.1f} | {rdt:21.2f}")


if __name__ == "__main__":
    main()
