"""The reference HTTP platform: a real server speaking Backstop's platform contract.

Each platform is served by its own ThreadingHTTPServer on its own port and thread. Pure
standard library and no Django, so it also runs on its own (``python -m
mutations.platformserver``) and in any test process.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO
from urllib.parse import urlsplit

from mutations.platformserver import auth, routes
from mutations.platformserver.platform import Answer, Platform, error_body, new_id

MAX_BODY_BYTES = 1024 * 1024
STOP_POLL_SECONDS = 0.1  # how soon a server notices it is asked to stop


@dataclass(frozen=True)
class PlatformConfig:
    """One platform to serve; an empty token or secret turns that check off."""

    name: str
    port: int = 0  # 0: any free port (see PlatformServer.port)
    host: str = "127.0.0.1"
    token: str = field(default="", repr=False)
    signing_secret: str = field(default="", repr=False)
    latency_seconds: float = 0.0  # added before answering each /v1 call (a slow platform)


class PlatformServer:
    """One platform's state and configuration, served over HTTP on its own thread."""

    def __init__(self, config: PlatformConfig, *, log: TextIO | None = sys.stderr) -> None:
        self.config = config
        self.platform = Platform(config.name)
        self.log = log
        self._log_lock = threading.Lock()
        self._httpd = _HTTPServer((config.host, config.port), self)  # binds: port known now
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": STOP_POLL_SECONDS},
            name=f"platformserver-{self.config.name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting requests and close the socket; calls in flight are abandoned."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> PlatformServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def write_log(self, line: str) -> None:
        if self.log is not None:
            with self._log_lock:
                self.log.write(line + "\n")
                self.log.flush()


def serve_platforms(
    configs: list[PlatformConfig], *, log: TextIO | None = sys.stderr
) -> list[PlatformServer]:
    """Serve each platform on its own port; bind every port before serving any, so a port
    in use fails the whole start (OSError) instead of leaving half the platforms up."""
    servers: list[PlatformServer] = []
    try:
        for config in configs:
            servers.append(PlatformServer(config, log=log))
    except OSError:
        for server in servers:
            server.stop()
        raise
    for server in servers:
        server.start()
    return servers


def serve_until_signalled(servers: list[PlatformServer]) -> None:
    """Block until SIGTERM or SIGINT (from the main thread), then stop every server."""
    stopping = threading.Event()
    handlers = {
        number: signal.signal(number, lambda *_: stopping.set())
        for number in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        while not stopping.wait(timeout=1.0):
            pass
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        for server in servers:
            server.stop()


def _guarded(route: Callable[[], Answer]) -> Answer:
    """Answer a bug with a 500 the client can read, rather than a dropped connection that
    would pass for an ambiguous fault."""
    try:
        return route()
    except Exception:
        traceback.print_exc()
        return Answer(500, error_body("internal_error", "the platform server failed"), "error")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a call sleeping in a timeout fault must not hold the exit
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: PlatformServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the connector's pooled client expects
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK of the headers (~40 ms on Linux) on every keep-alive call.
    disable_nagle_algorithm = True
    server_version = "backstop-platformserver"
    server: _HTTPServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default access log: ``_handle`` writes one line without secrets."""

    def _handle(self) -> None:
        owner = self.server.owner
        request_id = new_id("req", 24)
        path = urlsplit(self.path).path
        headers = {name.lower(): value for name, value in self.headers.items()}
        key = headers.get("idempotency-key") or None
        raw, unread = self._read_body(headers)
        if unread is not None:
            answer = unread
        elif path.startswith("/_control/"):
            answer = _guarded(lambda: routes.control(owner.platform, self.command, path, raw))
        elif path.startswith("/v1/"):
            answer = self._contract(owner, path, headers, key, raw, request_id)
        else:
            answer = routes.unknown_route(self.command, path)
        self._send(answer, request_id)
        status = "dropped" if answer.drop else str(answer.status)
        owner.write_log(
            f"{owner.config.name} {self.command} {path} {status} {request_id} key={key or '-'}"
        )

    def _contract(
        self,
        owner: PlatformServer,
        path: str,
        headers: dict[str, str],
        key: str | None,
        raw: bytes,
        request_id: str,
    ) -> Answer:
        if owner.config.latency_seconds:
            # Each request has a thread of its own: concurrent calls wait concurrently.
            time.sleep(owner.config.latency_seconds)
        verdict = auth.check(
            headers, raw, token=owner.config.token, secret=owner.config.signing_secret
        )
        entry: dict[str, Any] = {
            "at": time.time(),
            "method": self.command,
            "path": path,
            "idempotency_key": key,
            "authorized": verdict.authorized,
            "signature_valid": verdict.signature_valid,
            "status": None,
            "request_id": request_id,
            "outcome": None,
        }
        owner.platform.log_request(entry)
        if verdict.refusal is not None:
            answer = Answer.refused(verdict.refusal)
        else:
            answer = _guarded(lambda: routes.contract(owner.platform, self.command, path, key, raw))
        # Recorded before answering: whoever reads the log after the answer sees its status.
        owner.platform.finish_request(entry, None if answer.drop else answer.status, answer.outcome)
        return answer

    def _read_body(self, headers: dict[str, str]) -> tuple[bytes, Answer | None]:
        """Return the body, or the refusal of one that was not read (the connection closes:
        the unread bytes would be taken for the next request)."""
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if "transfer-encoding" in headers or length < 0:
            self.close_connection = True
            message = "send the body with a Content-Length"
            return b"", Answer(411, error_body("length_required", message), "refused")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            message = f"the body is {length} bytes; at most {MAX_BODY_BYTES}"
            return b"", Answer(413, error_body("too_large", message), "refused")
        return self.rfile.read(length), None

    def _send(self, answer: Answer, request_id: str) -> None:
        if answer.drop:
            # An ambiguous outcome: applied, and then the client hears nothing at all.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = b"" if answer.body is None else json.dumps(answer.body).encode()
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Request-Id", request_id)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client gave up (a timeout fault, usually)
