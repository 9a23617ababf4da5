"""A webhook receiver for tests: a real HTTP server on a loopback port (the outside world).

It answers from a script of status codes (the last one repeats), records every request, and lets
a test wait for the n-th request without sleeping blindly.
"""

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses) or [200]
        self.requests: list[Received] = []
        self._cond = threading.Condition()
        self.url = ""

    def answer(self) -> int:
        index = min(len(self.requests) - 1, len(self.statuses) - 1)
        return self.statuses[index]

    def record(self, received: Received) -> int:
        with self._cond:
            self.requests.append(received)
            status = self.answer()
            self._cond.notify_all()
        return status

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Block until `count` requests arrived (or fail after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver got {len(self.requests)} requests, expected {count}")
                self._cond.wait(left)
            return list(self.requests)


@contextmanager
def webhook_receiver(statuses: list[int] | None = None):
    """Serve a Receiver on 127.0.0.1:<free port>; yields it (its `.url` is set)."""
    receiver = Receiver(statuses or [200])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status = receiver.record(Received(self.path, dict(self.headers.items()), body, time.time()))
            text = b'{"ok": true}' if status < 300 else b'{"error": "scripted failure"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/fleetweb"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
