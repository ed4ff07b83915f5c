"""An HTTP proxy that adds a fixed delay to every request: a network round trip in front of
the local AWS emulator, which answers in a fraction of a millisecond where AWS takes
milliseconds to tens of milliseconds.

    order-kpis local-aws up --port 4566 &
    python benchmarks/latency_proxy.py --upstream 4566 --port 4600 --delay-ms 20 &
    AWS_ENDPOINT_URL=http://127.0.0.1:4600 ... python containers/transformer.py

It forwards each request whole (the body read first, chunked or not) on a kept-alive
connection per thread and sends the whole answer back. Ctrl-C (or SIGTERM) prints how many
requests it forwarded, by method and S3 bucket or DynamoDB operation. ``docs/aws-io.md``
("Dates side by side") used it to measure the transformer's dates side by side.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import signal
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = frozenset({"connection", "transfer-encoding", "content-length", "date", "server"})


class LatencyProxy(ThreadingHTTPServer):
    """Forwards to ``127.0.0.1:upstream`` after sleeping ``delay_s``; counts what it forwards."""

    daemon_threads = True

    def __init__(self, port: int, upstream: int, delay_s: float) -> None:
        super().__init__(("127.0.0.1", port), _Forward)
        self.upstream = upstream
        self.delay_s = delay_s
        self.counts: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.local = threading.local()
        self.connections: list[http.client.HTTPConnection] = []

    def server_close(self) -> None:
        super().server_close()
        with self.lock:
            for conn in self.connections:
                conn.close()


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LatencyProxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().strip().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers (aws-chunked checksums), dropped
                pass
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None

    def _forward(self) -> None:
        body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        target = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        what = target or self.path.split("?")[0].strip("/").split("/")[0] or "/"
        with self.server.lock:
            self.server.counts[f"{self.command} {what}"] += 1
        time.sleep(self.server.delay_s)
        status, reason, answer_headers, data = self._upstream(body, headers)
        self.send_response(status, reason)
        for k, v in answer_headers:
            if k.lower() not in _HOP_BY_HOP:
                self.send_header(k, v)
        length = answer_headers_get(answer_headers, "Content-Length")
        self.send_header(
            "Content-Length", length if self.command == "HEAD" and length else str(len(data))
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _upstream(
        self, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        for attempt in (1, 2):  # a kept-alive connection the emulator closed: open another
            conn = getattr(self.server.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream)
                self.server.local.conn = conn
                with self.server.lock:
                    self.server.connections.append(conn)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                return answer.status, answer.reason, answer.getheaders(), answer.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self.server.local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


def answer_headers_get(headers: list[tuple[str, str]], name: str) -> str | None:
    """The first header ``name`` (any case) of an answer, if any."""
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--upstream", type=int, required=True, help="the emulator's port")
    p.add_argument("--port", type=int, required=True, help="the port to listen on")
    p.add_argument("--delay-ms", type=float, default=20.0, help="added to each request")
    args = p.parse_args(argv)
    proxy = LatencyProxy(args.port, args.upstream, args.delay_ms / 1000)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"127.0.0.1:{args.port} -> 127.0.0.1:{args.upstream}, +{args.delay_ms:g} ms a request",
          file=sys.stderr)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.server_close()
    total = sum(proxy.counts.values())
    print(f"{total} requests forwarded", file=sys.stderr)
    for what, n in proxy.counts.most_common():
        print(f"  {n:7d}  {what}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
