"""A loopback HTTP server for download tests: Range/206 support and per-path injected faults.

Python's SimpleHTTPRequestHandler ignores Range headers, which makes yt-dlp/ffmpeg silently write
empty files on partial reads; this server answers `Range: bytes=a-b` with 206 like a real CDN does.

Faults (set per path, optionally only for the first `times` requests, then the file is served):
  "404", "403", "429", "500", "503"  the status code with a small body (and `Retry-After: retry_after`
                       when the entry sets it)
  "reset"              full Content-Length announced, half the body sent, then a TCP RST
  "truncate"           full Content-Length announced, half the body sent, then a clean close
  "slow"               the body trickles out in small chunks (for kill-mid-download tests)
The server counts requests in flight (`max_active`: the most at once), so a test can see a client's
per-host concurrency limit from the server's side, and records when each request arrived (`arrivals`).
`add_hf_dataset` registers the few hub endpoints huggingface_hub calls (point HF_ENDPOINT at `url("")`).
Content faults (an HTML page served as .mp4, a zero-length file, a file without audio) are just
different bytes registered under a path, so they go through the normal serving path.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Entry:
    body: bytes
    content_type: str = "video/mp4"
    fault: str | None = None
    times: int | None = None  # apply the fault to this many requests (None = always)
    slow_chunk: int = 4096
    slow_delay_s: float = 0.02
    ranges: bool = True  # False: ignore Range headers like SimpleHTTPRequestHandler does
    headers: dict[str, str] = field(default_factory=dict)  # sent with every successful answer
    retry_after: str | None = None  # sent with a status fault
    fault_headers: dict[str, str] = field(default_factory=dict)  # sent with a status fault (X-Error-Code: GatedRepo)
    hold_s: float = 0.0  # keep each request open this long before answering (to observe concurrency)


@dataclass
class ServerState:
    entries: dict[str, Entry] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    bytes_sent: dict[str, int] = field(default_factory=dict)
    arrivals: list[tuple[str, float]] = field(default_factory=list)  # (path, time.monotonic())
    authorization: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Authorization header)
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def _take_fault(self, entry: Entry) -> str | None:
        with self.server.state.lock:
            if entry.fault is None:
                return None
            if entry.times is None:
                return entry.fault
            if entry.times > 0:
                entry.times -= 1
                return entry.fault
            return None

    def _count(self, path: str, n: int) -> None:
        with self.server.state.lock:
            self.server.state.bytes_sent[path] = self.server.state.bytes_sent.get(path, 0) + n

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        state = self.server.state
        with state.lock:
            state.active += 1
            state.max_active = max(state.max_active, state.active)
        try:
            self._answer(head)
        finally:
            with state.lock:
                state.active -= 1

    def _answer(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        state = self.server.state
        rng = self.headers.get("Range")
        with state.lock:
            state.requests.append((path, rng))
            state.arrivals.append((path, time.monotonic()))
            state.authorization.append((path, self.headers.get("Authorization")))
        entry = state.entries.get(path)
        if entry is None:
            return self._status(404)
        if entry.hold_s:
            time.sleep(entry.hold_s)
        fault = self._take_fault(entry)
        if fault in ("404", "403", "429", "500", "503"):
            return self._status(int(fault), entry.retry_after, entry.fault_headers)

        body = entry.body
        start, end = 0, len(body) - 1
        status = 200
        if rng and body and entry.ranges:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m:
                return self._status(416)
            a, b = m.groups()
            if a == "":  # suffix range: the last b bytes
                start = max(0, len(body) - int(b))
            else:
                start = int(a)
                end = min(int(b), len(body) - 1) if b else len(body) - 1
            if start >= len(body) or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        payload = body[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Type", entry.content_type)
        if entry.ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(payload)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        for k, v in entry.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if head:
            return
        if fault in ("reset", "truncate"):
            half = payload[: len(payload) // 2]
            self.wfile.write(half)
            self.wfile.flush()
            self._count(path, len(half))
            if fault == "reset":
                # Let the client read the half body first: Linux drops unread data when the RST lands.
                time.sleep(0.2)
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if fault == "slow":
            for i in range(0, len(payload), entry.slow_chunk):
                chunk = payload[i : i + entry.slow_chunk]
                try:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                self._count(path, len(chunk))
                time.sleep(entry.slow_delay_s)
            return
        self.wfile.write(payload)
        self._count(path, len(payload))

    def _status(self, code: int, retry_after: str | None = None, headers: dict[str, str] | None = None) -> None:
        body = f"<html><body>error {code}</body></html>".encode()
        self.send_response(code)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":  # a body after a HEAD answer would corrupt the next one on this connection
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # clients hanging up mid-body (yt-dlp's probe request, killed processes) are expected

    def __init__(self, state: ServerState):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class FaultServer:
    """`with FaultServer() as srv: srv.add("/a.mp4", data, fault="403", times=1); srv.url("/a.mp4")`."""

    def __init__(self) -> None:
        self.state = ServerState()
        self._server = _Server(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, path: str, body: bytes, **kw) -> str:
        self.state.entries[path] = Entry(body=body, **kw)
        return self.url(path)

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def arrivals_for(self, path: str) -> list[float]:
        with self.state.lock:
            return [t for p, t in self.state.arrivals if p == path]

    def requests_for(self, path: str) -> list[str | None]:
        with self.state.lock:
            return [r for p, r in self.state.requests if p == path]

    def __enter__(self) -> "FaultServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def add_hf_dataset(srv: FaultServer, repo: str, sha: str, files: dict[str, bytes], *, revision: str = "main",
                   card: dict | None = None) -> dict[str, str]:
    """Answer the hub API for one dataset repository the way huggingface_hub expects (checked by logging
    its requests): `revision/{rev}` (info with the commit sha, card and siblings), `tree/{sha}` (the
    recursive listing) and `resolve/{sha}/{path}` with the X-Repo-Commit/ETag headers hf_hub_download
    needs. Returns {path: resolve URL path} so a test can inject faults there."""
    info = {"id": repo, "sha": sha, "cardData": card or {}, "siblings": [{"rfilename": f} for f in files]}
    body = json.dumps(info).encode()
    for rev in {revision, sha}:
        srv.add(f"/api/datasets/{repo}/revision/{rev}", body, content_type="application/json")
    tree = [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()} for f, b in files.items()]
    srv.add(f"/api/datasets/{repo}/tree/{sha}", json.dumps(tree).encode(), content_type="application/json")
    out = {}
    for f, b in files.items():
        path = f"/datasets/{repo}/resolve/{sha}/{f}"
        srv.add(path, b, headers={"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(b).hexdigest()}"'})
        out[f] = path
    return out
