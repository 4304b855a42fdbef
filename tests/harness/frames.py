"""RFC 6455 by hand over a plain socket: handshakes, frames, close payloads.

The protocol tests speak websocket byte by byte so they can send what no
client library sends (unmasked frames, invalid UTF-8, malformed handshakes)
and see exactly what the server answers.  Every read is bounded by the
socket timeout, and a connection the server drops or resets is recorded
(``Connection.ended``), never raised: it is an observation.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
from dataclasses import dataclass, field

TIMEOUT = 5.0  # s any single read or connect may take
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3's sample nonce (16 bytes)
MAX_HEAD = 64 * 1024

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
OPCODES = {0x0: "continuation", 0x1: "text", 0x2: "binary", 0x8: "close", 0x9: "ping", 0xA: "pong"}
# RFC 6455 7.4.1/7.4.2: codes an endpoint must never put in a close frame.
NOT_SENDABLE = {1004, 1005, 1006, 1015}


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer ``key`` with (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + GUID).digest()).decode("ascii")


def upgrade_request(
    path: str,
    *,
    key: str | None = SAMPLE_KEY,
    version: str | None = "13",
    http: str = "HTTP/1.1",
    host: str = "127.0.0.1",
) -> bytes:
    """A websocket upgrade request; ``None`` leaves a header out.  Latin-1 on the wire."""
    lines = [f"GET {path} {http}", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade"]
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    mask: bool = True,
    fin: bool = True,
    mask_key: bytes | None = None,
) -> bytes:
    """One frame as a client sends it (masked) or, with ``mask=False``, as it must not."""
    payload = bytes(payload)
    head = bytearray([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head.append(bit | n)
    elif n <= 0xFFFF:
        head.append(bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(bit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


@dataclass
class Close:
    """A close frame's payload read as RFC 6455 5.5.1 defines it."""

    code: int | None
    reason: str | None
    length: int
    problem: str | None = None  # why the payload is not a valid close payload

    @property
    def valid(self) -> bool:
        return self.problem is None

    def __str__(self) -> str:
        if self.problem:
            return f"invalid close payload ({self.problem})"
        return f"close code {self.code} reason {self.reason!r} ({self.length} bytes)"


def parse_close(payload: bytes) -> Close:
    payload = bytes(payload)
    n = len(payload)
    if n == 0:
        return Close(None, "", 0)
    if n == 1:
        return Close(None, None, 1, f"1-byte payload {payload!r}")
    (code,) = struct.unpack("!H", payload[:2])
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return Close(code, None, n, f"reason is not UTF-8: {payload[2:60]!r}")
    problem = None
    if n > 125:
        problem = f"{n}-byte payload, a control frame holds at most 125"
    elif not (1000 <= code <= 4999) or code in NOT_SENDABLE:
        problem = f"code {code} is not a code an endpoint may send (payload {payload[:40]!r})"
    return Close(code, reason, n, problem)


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    @property
    def kind(self) -> str:
        return OPCODES.get(self.opcode, f"reserved({self.opcode:#x})")

    def close(self) -> Close:
        return parse_close(self.payload)

    def __str__(self) -> str:
        if self.opcode == OP_CLOSE:
            return f"close frame: {self.close()}"
        data = self.payload if len(self.payload) <= 60 else self.payload[:60] + b"..."
        return (
            f"{self.kind} frame{'' if self.fin else ' (not final)'}"
            f"{' masked' if self.masked else ''} {data!r}"
        )


@dataclass
class Response:
    """An HTTP response head and as much body as its Content-Length announced."""

    status_line: str = ""
    code: int | None = None
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    content_length: int | None = None
    ended: str | None = None  # how the connection ended while reading, if it did

    @property
    def complete(self) -> bool:
        """The body has exactly the bytes the Content-Length announced."""
        return self.content_length is not None and len(self.body) == self.content_length

    def __str__(self) -> str:
        if not self.status_line:
            return f"no response ({self.ended})"
        body = f"body {self.body[:80]!r}"
        if self.content_length is not None and not self.complete:
            body = (
                f"{len(self.body)} of {self.content_length} body bytes, then "
                f"{self.ended or 'nothing'}"
            )
        return f"{self.status_line!r}, {body}"


class Connection:
    """A client socket with a read buffer; use as a context manager."""

    def __init__(self, port: int, timeout: float = TIMEOUT):
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""
        self.ended: str | None = None  # "EOF", "reset", "timeout after 5.0 s (bound)"

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def end_writes(self) -> None:
        """Half-close: the server reads EOF after what was sent, and can still answer."""
        self.sock.shutdown(socket.SHUT_WR)

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.ended = self.ended or f"send failed: {type(exc).__name__}: {exc}"
            return False
        return True

    def _receive(self) -> bool:
        """One recv() into the buffer; False once the peer is gone (``ended`` says how).
        A timeout is the caller's to judge: it propagates."""
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise
        except OSError as exc:
            self.ended = (
                "reset"
                if isinstance(exc, ConnectionResetError)
                else (f"{type(exc).__name__}: {exc}")
            )
            return False
        if not data:
            self.ended = "EOF"
            return False
        self.buffer += data
        return True

    def _fill(self) -> bool:
        if self.ended:
            return False
        try:
            return self._receive()
        except TimeoutError:
            self.ended = f"timeout after {self.timeout:.1f} s (bound)"
            return False

    def read_exact(self, n: int) -> bytes | None:
        while len(self.buffer) < n:
            if not self._fill():
                return None
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_until(self, separator: bytes, limit: int = MAX_HEAD) -> bytes | None:
        while separator not in self.buffer:
            if len(self.buffer) > limit or not self._fill():
                return None
        data, _, self.buffer = self.buffer.partition(separator)
        return data

    def read_response(self) -> Response:
        """The response head, then the body its Content-Length announces (none for a 101)."""
        head = self.read_until(b"\r\n\r\n")
        if head is None:
            return Response(ended=self.ended or "head too long", body=self.buffer)
        lines = head.decode("latin-1").split("\r\n")
        response = Response(status_line=lines[0])
        parts = lines[0].split(" ", 2)
        if len(parts) >= 2 and parts[1].isdigit():
            response.code = int(parts[1])
            response.reason = parts[2] if len(parts) > 2 else ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            response.headers[name.strip().lower()] = value.strip()
        if response.code == 101:
            return response
        length = response.headers.get("content-length")
        if length is not None and length.isdigit():
            response.content_length = int(length)
            body = self.read_exact(response.content_length)
            if body is None:  # what arrived before the connection ended
                body, self.buffer = self.buffer, b""
            response.body = body
        elif response.headers.get("connection", "").lower() == "close":
            self.read_to_end()
            response.body, self.buffer = self.buffer, b""
        response.ended = self.ended
        return response

    def read_frame(self) -> Frame | None:
        head = self.read_exact(2)
        if head is None:
            return None
        fin, rsv, opcode = bool(head[0] & 0x80), head[0] & 0x70, head[0] & 0x0F
        masked, n = bool(head[1] & 0x80), head[1] & 0x7F
        if n in (126, 127):
            extra = self.read_exact(2 if n == 126 else 8)
            if extra is None:
                return None
            (n,) = struct.unpack("!H" if len(extra) == 2 else "!Q", extra)
        key = self.read_exact(4) if masked else b""
        payload = self.read_exact(n)
        if key is None or payload is None:
            return None
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return Frame(fin, rsv, opcode, masked, payload)

    def stays_open(self, seconds: float) -> bool:
        """Whether the peer keeps the connection open for ``seconds`` (what it sends is kept)."""
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                try:
                    if not self._receive():
                        return False
                except TimeoutError:
                    return True
            return True
        finally:
            self.sock.settimeout(self.timeout)

    def read_to_end(self) -> str:
        """Read until the server ends the connection (bounded); how it ended."""
        while self._fill():
            pass
        assert self.ended, "_fill() stops only once the connection has ended"
        return self.ended
