"""Overhead of the download stage itself, without a remote site in the way.

Serves N synthetic sources from a loopback HTTP server and times `download_sources` (yt-dlp generic
extractor + PyAV probe + sha256 + records) for a few `--jobs` values, plus the probe alone. Real
downloads are bound by the site (about 300 videos/hour per YouTube session), so this only shows that
the per-source overhead is small next to that.

    python scripts/bench_download.py --sources 8 --duration 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fetchkit import render_bytes, url_spec  # noqa: E402
from httpserver import FaultServer  # noqa: E402

from avbench.curate.download import DownloadConfig, download_sources  # noqa: E402
from avbench.curate.probe import probe_media  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=8)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per source")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.perf_counter()
        media = [render_bytes(tmp, 100 + i, args.duration, width=640, height=360, fps=30, sample_rate=44100, channels=2)
                 for i in range(args.sources)]
        render_s = time.perf_counter() - t0
        mb = sum(len(m) for m in media) / 1e6
        probe_file = tmp / "probe.mp4"
        probe_file.write_bytes(media[0])
        t0 = time.perf_counter()
        for _ in range(5):
            probe_media(probe_file)
        probe_ms = (time.perf_counter() - t0) / 5 * 1000

        rows = []
        with FaultServer() as srv:
            urls = [srv.add(f"/s{i}.mp4", m) for i, m in enumerate(media)]
            spec = url_spec(tmp / "bench.toml", urls)
            for jobs in args.jobs:
                root = tmp / f"root-j{jobs}"
                t0 = time.perf_counter()
                s = download_sources(DownloadConfig(root=root, spec=str(spec), jobs=jobs, progress=False))
                dt = time.perf_counter() - t0
                assert s.ok == args.sources, s.as_dict()
                t0 = time.perf_counter()
                download_sources(DownloadConfig(root=root, spec=str(spec), jobs=jobs, progress=False))
                resume_dt = time.perf_counter() - t0
                rows.append((jobs, dt, args.sources / dt, mb / dt, resume_dt))

    print(f"{args.sources} sources x {args.duration:.0f} s (640x360 30 fps, AAC stereo), {mb:.1f} MB in all")
    print(f"render (synthetic): {render_s / args.sources:.2f} s/source; probe: {probe_ms:.0f} ms/source")
    print(f"{'jobs':>4} | {'wall s':>7} | {'sources/s':>9} | {'MB/s':>6} | {'rerun (all skipped) s':>21}")
    for jobs, dt, sps, mbps, rdt in rows:
        print(f"{jobs:>4} | {dt:7.2f} | {sps:9.2f} | {mbps:6.1f} | {rdt:21.2f}")


if __name__ == "__main__":
    main()
