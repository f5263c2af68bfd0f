"""The raw SSH byte stream: ``GET /v1/islands/{name}/ssh`` upgraded to ``dejima-ssh``."""

import json
import socket
import ssl
from typing import Any, Optional, Union

from .errors import DejimaConnectionError, DejimaError

__all__ = ["SshStream", "open_ssh_stream", "PROTO"]

PROTO = "dejima-ssh"
_MAX_HEAD = 64 << 10


class SshStream:
    """A connection to the island's ``sshd -i`` after the daemon's ``101``: the SSH protocol
    flows both ways (give it to an SSH library, or pipe it as a ProxyCommand would).

    Socket-like: ``recv(n)`` returns bytes (``b""`` at the end), ``sendall(data)``,
    ``shutdown_write()``, ``settimeout(t)``, ``fileno()``, ``close()``; a context manager.
    Bytes the daemon sent right after its answer's head (``leftover``) come first from
    ``recv``. ``socket`` is the underlying socket, to use directly once ``leftover`` is empty.
    """

    def __init__(self, sock: socket.socket, leftover: bytes = b"") -> None:
        self.socket = sock
        self.leftover = leftover
        self._closed = False

    def recv(self, bufsize: int = 65536) -> bytes:
        """Up to ``bufsize`` bytes; ``b""`` once the other end closed. A timeout set with
        :meth:`settimeout` raises ``socket.timeout`` (``TimeoutError``)."""
        if self.leftover:
            out, self.leftover = self.leftover[:bufsize], self.leftover[bufsize:]
            return out
        return self.socket.recv(bufsize)

    def sendall(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Send every byte of ``data``."""
        self.socket.sendall(data)

    def send(self, data: Union[bytes, bytearray, memoryview]) -> int:
        """Send some of ``data``; the number of bytes sent."""
        return self.socket.send(data)

    def shutdown_write(self) -> None:
        """Tell the other end nothing more will be sent (reading goes on)."""
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def settimeout(self, timeout: Optional[float]) -> None:
        """Seconds a ``recv``/``send`` may block (None: for ever, the default)."""
        self.socket.settimeout(timeout)

    def fileno(self) -> int:
        """The socket's descriptor (for select; mind ``leftover``)."""
        return self.socket.fileno()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the connection (the island's sshd for it ends)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.socket.close()
        except OSError:
            pass

    def __enter__(self) -> "SshStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<dejima.SshStream {'closed' if self._closed else 'open'}>"


def _connect(socket_path: Optional[str], http_base: str, timeout: Optional[float], path: str) -> socket.socket:
    try:
        if socket_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(socket_path)
            except OSError:
                sock.close()
                raise
            return sock
        scheme, rest = http_base.split("://", 1)
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            host, port = rest, ("443" if scheme == "https" else "80")
        host = host.strip("[]")
        sock = socket.create_connection((host, int(port)), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        return sock
    except OSError as e:
        where = socket_path if socket_path is not None else http_base
        raise DejimaConnectionError(f"cannot connect to {where}: {e}", method="GET", path=path) from e


def _header(head: str, name: str) -> Optional[str]:
    for line in head.split("\r\n")[1:]:
        k, sep, v = line.partition(":")
        if sep and k.strip().lower() == name:
            return v.strip()
    return None


def open_ssh_stream(
    *,
    path: str,
    socket_path: Optional[str],
    http_base: str,
    token: Optional[str],
    user_agent: str,
    timeout: Optional[float],
) -> SshStream:
    """Send the upgrade request for ``path`` and return the stream after the ``101``; any
    other answer raises DejimaError with the daemon's message."""
    sock = _connect(socket_path, http_base, timeout, path)
    try:
        host = "dejimad" if socket_path is not None else http_base.split("://", 1)[1]
        req = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n"
            f"Connection: Upgrade\r\nUpgrade: {PROTO}\r\n"
        )
        if token:
            req += f"Authorization: Bearer {token}\r\n"
        sock.sendall((req + "\r\n").encode("latin-1"))
        buf = b""
        while b"\r\n\r\n" not in buf:
            if len(buf) > _MAX_HEAD:
                raise DejimaConnectionError("dejimad's answer head is too long", method="GET", path=path)
            chunk = sock.recv(65536)
            if not chunk:
                raise DejimaConnectionError("dejimad closed the connection before answering", method="GET", path=path)
            buf += chunk
        raw_head, _, rest = buf.partition(b"\r\n\r\n")
        head = raw_head.decode("latin-1")
        parts = head.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status != 101:
            raise _refusal(sock, head, rest, status, path)
        upgrade = _header(head, "upgrade") or ""
        if upgrade.lower() != PROTO:
            raise DejimaConnectionError(
                f"dejimad switched to {upgrade!r}, not {PROTO}", method="GET", path=path
            )
        sock.settimeout(None)
        return SshStream(sock, rest)
    except socket.timeout as e:
        sock.close()
        raise DejimaConnectionError(f"no answer within {timeout} s", method="GET", path=path) from e
    except OSError as e:
        sock.close()
        raise DejimaConnectionError(str(e), method="GET", path=path) from e
    except BaseException:
        sock.close()
        raise


def _refusal(sock: socket.socket, head: str, body: bytes, status: int, path: str) -> DejimaError:
    """The DejimaError of a non-101 answer, from its JSON ``{"error": ...}`` body."""
    length = _header(head, "content-length")
    want = int(length) if length and length.isdigit() else 0
    want = min(want, _MAX_HEAD)
    try:
        while len(body) < want:
            chunk = sock.recv(want - len(body))
            if not chunk:
                break
            body += chunk
    except OSError:
        pass
    text = body[:want].decode("utf-8", "replace") if want else body.decode("utf-8", "replace")
    parsed: Any = None
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    if isinstance(parsed, dict) and "error" in parsed:
        message = str(parsed["error"])
    else:
        first = head.split("\r\n", 1)[0]
        message = text.strip()[:1000] or first.split(" ", 2)[-1]
    return DejimaError(status or None, message, method="GET", path=path, body=parsed)
