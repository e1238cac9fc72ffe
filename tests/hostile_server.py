"""A hostile server on 127.0.0.1 posing as Prometheus, for the rollout's safety tests (issue 20).

Each connection's request head is read (bounded), recorded, and handed to the test's `answer`,
which writes whatever bytes it likes: a good answer, odd JSON, a lying Content-Length, a body
dripped a byte at a time, a redirect, or nothing at all. Every wait checks the server's stop
event, so a test ends its server at once (bounded in time); it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.probe_servers import Pki


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names


@dataclass
class Conn:
    """One connection, as the answer sees it."""

    sock: socket.socket
    request: Request
    stop: threading.Event

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the client went away: as it may
            self.sock.sendall(data)

    def respond(
        self,
        body: bytes | str | Any,
        status: str = "200 OK",
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        """A whole response; `body` that is not bytes or str is sent as JSON."""
        if isinstance(body, str):
            data = body.encode()
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
        head = {"Content-Type": "application/json", "Content-Length": str(len(data))}
        if length is not None:
            head["Content-Length"] = str(length)
        head.update(headers or {})
        lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
        self.send(f"HTTP/1.1 {status}\r\n{lines}\r\n".encode("latin-1") + data)

    def wait(self, seconds: float) -> bool:
        """Sleep unless the server stops; False when it stopped."""
        return not self.stop.wait(seconds)


Answer = Callable[[Conn], None]


@dataclass
class Server:
    url: str
    requests: list[Request] = field(default_factory=list)
    answer: Answer = lambda conn: None

    def __post_init__(self) -> None:
        self.port = int(self.url.rsplit(":", 1)[1])


def _read_head(sock: socket.socket) -> Request | None:
    data = b""
    sock.settimeout(5)
    while b"\r\n\r\n" not in data and len(data) < 65536:
        try:
            chunk = sock.recv(4096)
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    method, path, _ = [*lines[0].split(" "), "", "", ""][:3]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(method, path, headers)


@contextmanager
def serve(answer: Answer | None = None, pki: Pki | None = None) -> Iterator[Server]:
    """A server whose `answer` (settable later through the yielded Server) writes each
    response; HTTPS with `pki`."""
    stop = threading.Event()
    context = None
    if pki is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            if context is not None:
                try:
                    sock = context.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError):
                    return
            request = _read_head(sock)
            if request is None:
                return
            server.requests.append(request)
            server.answer(Conn(sock, request, stop))

    class TCP(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    tcp = TCP(("127.0.0.1", 0), Handler)
    scheme = "https" if pki is not None else "http"
    server = Server(f"{scheme}://127.0.0.1:{tcp.server_address[1]}")
    if answer is not None:
        server.answer = answer
    thread = threading.Thread(target=tcp.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        tcp.shutdown()
        tcp.server_close()


# --- answers ---------------------------------------------------------------------------------


def now() -> float:
    return round(time.time(), 3)


def vector(value: str = "0.001", at: Any = None) -> dict[str, Any]:
    """A good instant-query answer: one series (web/api/v1 `queryData`)."""
    sample = [now() if at is None else at, value]
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": sample}]},
    }


def good(value: str = "0.001") -> Answer:
    return lambda conn: conn.respond(vector(value))


def json_body(document: Any) -> Answer:
    return lambda conn: conn.respond(document)


def raw(data: bytes) -> Answer:
    return lambda conn: conn.send(data)


def silent() -> Answer:
    """Reads the request and never answers."""

    def answer(conn: Conn) -> None:
        conn.wait(3600)

    return answer


def drip(every: float = 2.0) -> Answer:
    """Headers at once, then the body a byte every `every` seconds."""

    def answer(conn: Conn) -> None:
        body = json.dumps(vector()).encode()
        conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        for byte in body:
            conn.send(bytes([byte]))
            if not conn.wait(every):
                return

    return answer


def endless(chunk: int = 65536) -> Answer:
    """A chunked body that never ends (what a 400 MiB answer is to a reader without a limit)."""

    def answer(conn: Conn) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        piece = f"{chunk:x}\r\n".encode() + b"[" * chunk + b"\r\n"
        while not conn.stop.is_set():
            try:
                conn.sock.sendall(piece)
            except OSError:
                return

    return answer


def redirect(location: str, status: str = "302 Found") -> Answer:
    return lambda conn: conn.respond(b"", status=status, headers={"Location": location})


def sequence(*answers: Answer) -> Answer:
    """The first answers in turn, then the last one for every later request."""
    calls = iter(range(10**9))

    def answer(conn: Conn) -> None:
        answers[min(next(calls), len(answers) - 1)](conn)

    return answer
