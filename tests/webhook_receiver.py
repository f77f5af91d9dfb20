"""A webhook receiver on this machine for the tests: an http.server in a thread that can be taken down and brought
back on the same port, checks each body's X-Shelf-Signature with its secret, and keeps what it got."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shelf.serving.webhooks import SIGNATURE_HEADER, verify


class Receiver:
    def __init__(self, secret: str = "", port: int = 0):
        self.secret, self.port = secret, port
        self.received: list[dict] = []  # every body that came, in order, with its key header and signature check
        self.server: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.received.append({**json.loads(body), "header_key": self.headers["Idempotency-Key"],
                                              "signed": verify(receiver.secret, body, self.headers[SIGNATURE_HEADER])})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def events(self) -> list[tuple[int, str]]:
        with self.lock:
            return [(r["task"]["id"], r["event"]) for r in self.received]

    def keys(self) -> list[str]:
        with self.lock:
            return [r["key"] for r in self.received]
