"""Websocket PTY sessions: attach to an island's agent or a host terminal (needs websocket-client)."""

import base64
import collections
import json
import socket
import time
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple, Union

from .errors import DejimaConnectionError, DejimaError

__all__ = ["Session", "open_session", "connect_ws"]


def _websocket() -> Any:
    try:
        import websocket
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "attach() needs websocket-client: pip install 'dejima-sdk[ws]'"
        ) from e
    return websocket


class Session:
    """One client attached to a terminal; tmux gives every attached client the same screen.

    ``recv()`` returns PTY output as bytes; ``None`` once the program exited or the
    connection closed; ``b""`` when its ``timeout`` passed with no output. ``attached`` is the
    presence list from the server's hello (this client included). Use it as a context manager
    (or call ``close()``) to detach; the agent keeps running.
    """

    def __init__(self, ws: Any, label: str) -> None:
        self._ws = ws
        self._ws_mod = _websocket()
        self.label = label
        self.hello: Dict[str, Any] = {}
        self.attached: List[Dict[str, Any]] = []
        self.errors: List[str] = []
        self.exited = False
        self.close_code: Optional[int] = None
        self.close_reason = ""
        self.pongs = 0
        self._pings = 0
        self._unflushed = False
        self._done = False
        self._closed = False
        self._pending: Deque[Tuple[int, Any]] = collections.deque()

    # -- sending ----------------------------------------------------------------------------

    def _send_json(self, msg: Dict[str, Any]) -> None:
        if self._closed:
            raise DejimaConnectionError("session is closed")
        try:
            self._ws.send(json.dumps(msg, separators=(",", ":")))
        except (self._ws_mod.WebSocketException, OSError) as e:
            self._done = True
            raise DejimaConnectionError(f"session send failed: {e}") from e

    def send(self, data: Union[bytes, bytearray, str]) -> None:
        """Type keystrokes (a str is sent as UTF-8; use "\\r" for Enter)."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self._send_json({"type": "data", "b64": base64.b64encode(raw).decode("ascii")})
        self._unflushed = True

    def resize(self, rows: int, cols: int) -> None:
        """Tell the PTY this client's size (1..1000 each)."""
        self._send_json({"type": "resize", "rows": int(rows), "cols": int(cols)})

    def ping(self) -> None:
        """An application ping; the server's pong is counted in ``pongs``."""
        self._send_json({"type": "ping"})
        self._pings += 1

    # -- receiving --------------------------------------------------------------------------

    def _next_frame(self, deadline: Optional[float]) -> Optional[Tuple[int, Any]]:
        """The next websocket frame, or None on timeout. Raises nothing on close."""
        if self._pending:
            return self._pending.popleft()
        wsm = self._ws_mod
        if deadline is None:
            self._ws.settimeout(None)
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._ws.settimeout(left)
        try:
            opcode, data = self._ws.recv_data()
        except wsm.WebSocketTimeoutException:
            return None
        except socket.timeout:
            return None
        except (wsm.WebSocketException, OSError, ValueError) as e:
            # No close frame: 1006 (abnormal closure), as browsers report it.
            self.close_reason = str(e)
            return (wsm.ABNF.OPCODE_CLOSE, None)
        return (opcode, data)

    def _handle(self, opcode: int, data: Any) -> Optional[bytes]:
        """Bytes for the caller (possibly empty), or None when the session is over."""
        wsm = self._ws_mod
        if opcode == wsm.ABNF.OPCODE_CLOSE:
            self._done = True
            if data is None:
                self.close_code = 1006
            elif len(data) >= 2:
                self.close_code = int.from_bytes(data[:2], "big")
                self.close_reason = bytes(data[2:]).decode("utf-8", "replace")
            else:
                self.close_code = 1005  # a close frame without a status
            return None
        if opcode == wsm.ABNF.OPCODE_BINARY:
            return bytes(data)
        if opcode != wsm.ABNF.OPCODE_TEXT:
            return b""
        try:
            msg = json.loads(data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data)
        except ValueError:
            return b""
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "data":
            return base64.b64decode(msg.get("b64", ""))
        if kind == "exit":
            self.exited = True
            self._done = True
            return None
        if kind == "error":
            self.errors.append(base64.b64decode(msg.get("b64", "")).decode("utf-8", "replace"))
        elif kind == "pong":
            self.pongs += 1
        elif kind == "hello":
            self.hello = msg
            self.attached = list(msg.get("attached") or [])
        return b""

    def recv(self, timeout: Optional[float] = None) -> Optional[bytes]:
        """The next PTY output; None once the session ended; b"" when ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._done or self._closed:
                return None
            frame = self._next_frame(deadline)
            if frame is None:
                return b""
            out = self._handle(*frame)
            if out is None:
                return None
            if out:
                return out

    def read_until(
        self, pattern: Union[bytes, str], timeout: float = 10.0, *, since: bytes = b""
    ) -> bytes:
        """Read output until ``pattern`` appears; returns everything read (after ``since``).

        Raises TimeoutError (with the output's tail) when it does not appear in ``timeout``
        seconds, and EOFError when the session ends first.
        """
        want = pattern.encode("utf-8") if isinstance(pattern, str) else pattern
        out = bytearray(since)
        deadline = time.monotonic() + timeout
        while want not in out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{want!r} not seen within {timeout} s; tail {bytes(out[-300:])!r}")
            chunk = self.recv(timeout=left)
            if chunk is None:
                raise EOFError(f"session ended before {want!r}; tail {bytes(out[-300:])!r}")
            out += chunk
        return bytes(out)

    def _await_hello(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        skipped: List[Tuple[int, Any]] = []
        while not self.hello:
            frame = self._next_frame(deadline)
            if frame is None:
                break
            opcode, data = frame
            if self._is_hello(frame):
                self._handle(opcode, data)
            else:
                skipped.append(frame)
            if opcode == self._ws_mod.ABNF.OPCODE_CLOSE:
                break
        self._pending.extend(skipped)

    def _is_hello(self, frame: Tuple[int, Any]) -> bool:
        opcode, data = frame
        if opcode != self._ws_mod.ABNF.OPCODE_TEXT:
            return False
        try:
            msg = json.loads(data)
        except ValueError:
            return False
        return isinstance(msg, dict) and msg.get("type") == "hello"

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once close() was called or the server ended the session."""
        return self._closed or self._done

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until the server has taken every message sent so far (a ping, answered in
        order). Output that arrives meanwhile is kept for recv(). False on timeout or end."""
        if self._done or self._closed:
            return False
        self.ping()
        deadline = time.monotonic() + timeout
        kept: List[Tuple[int, Any]] = []
        try:
            while self.pongs < self._pings:
                frame = self._next_frame(deadline)
                if frame is None:
                    return False
                opcode, data = frame
                if opcode == self._ws_mod.ABNF.OPCODE_TEXT and b'"pong"' in (
                    data if isinstance(data, bytes) else str(data).encode()
                ):
                    self._handle(opcode, data)
                else:
                    kept.append(frame)
                    if opcode == self._ws_mod.ABNF.OPCODE_CLOSE:
                        return False
            self._unflushed = False
            return True
        finally:
            self._pending.extend(kept)

    def close(self) -> None:
        """Detach (the program keeps running). Keystrokes sent before are delivered first:
        the daemon drops messages that arrive in the same read as the close frame."""
        if self._closed:
            return
        if self._unflushed and not self._done:
            try:
                self.flush(timeout=1.0)
            except Exception:
                pass
        self._closed = True
        try:
            self._ws.close(timeout=1)
        except Exception:
            try:
                self._ws.shutdown()
            except Exception:
                pass

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self._ws.shutdown()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<dejima.Session label={self.label!r} {state}>"


_ws_class: Any = None


def _tolerant_ws_class() -> Any:
    """websocket-client's WebSocket, except that answering the server's close frame after
    the server already hung up is not an error (the close frame's code is kept)."""
    global _ws_class
    if _ws_class is None:
        wsm = _websocket()

        class _TolerantWebSocket(wsm.WebSocket):  # type: ignore[misc,name-defined]
            def send_close(self, *args: Any, **kwargs: Any) -> None:
                try:
                    super().send_close(*args, **kwargs)
                except (wsm.WebSocketConnectionClosedException, OSError):
                    pass

        _ws_class = _TolerantWebSocket
    return _ws_class


def open_session(
    *,
    path: str,
    label: str,
    socket_path: Optional[str],
    http_base: str,
    token: Optional[str],
    timeout: float,
    rows: Optional[int] = None,
    cols: Optional[int] = None,
    extra_headers: Sequence[str] = (),
) -> Session:
    """Connect a websocket to ``path`` (with its query) on the daemon and wait for its hello."""
    ws = connect_ws(path=path, socket_path=socket_path, http_base=http_base, token=token, timeout=timeout, extra_headers=extra_headers)
    s = Session(ws, label)
    try:
        if rows is not None and cols is not None:
            s.resize(rows, cols)
        s._await_hello(timeout)
    except BaseException:
        s.close()
        raise
    return s


def connect_ws(
    *,
    path: str,
    socket_path: Optional[str],
    http_base: str,
    token: Optional[str],
    timeout: float,
    extra_headers: Sequence[str] = (),
) -> Any:
    """A websocket to ``path`` (with its query) on the daemon: the Unix socket or TCP."""
    wsm = _websocket()
    headers = list(extra_headers)
    if token:
        headers.append(f"Authorization: Bearer {token}")
    try:
        if socket_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(socket_path)
            except OSError as e:
                sock.close()
                raise DejimaConnectionError(f"cannot connect to {socket_path}: {e}", method="GET", path=path.split("?")[0]) from e
            ws = wsm.create_connection(
                "ws://localhost" + path,
                timeout=timeout,
                header=headers,
                socket=sock,
                skip_utf8_validation=True,
                class_=_tolerant_ws_class(),
            )
        else:
            scheme = "wss" if http_base.startswith("https://") else "ws"
            url = scheme + "://" + http_base.split("://", 1)[1] + path
            ws = wsm.create_connection(
                url, timeout=timeout, header=headers, skip_utf8_validation=True, class_=_tolerant_ws_class()
            )
    except wsm.WebSocketBadStatusException as e:
        body = getattr(e, "resp_body", None) or b""
        message = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        try:
            parsed = json.loads(message)
            if isinstance(parsed, dict) and "error" in parsed:
                message = str(parsed["error"])
        except ValueError:
            pass
        raise DejimaError(
            getattr(e, "status_code", None), message or str(e), method="GET", path=path.split("?")[0]
        ) from None
    except (wsm.WebSocketException, OSError) as e:
        raise DejimaConnectionError(str(e), method="GET", path=path.split("?")[0]) from e
    return ws
