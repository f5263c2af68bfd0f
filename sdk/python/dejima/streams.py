"""Streamed responses (followed logs, server-sent events, image builds) as closable iterators."""

import codecs
import json
import socket
from typing import Any, Callable, Dict, Generic, Iterator, List, Optional, TypeVar

import requests

from .errors import DejimaConnectionError

__all__ = ["Stream", "iter_lines", "iter_sse"]

T = TypeVar("T")


class Stream(Generic[T]):
    """An iterator over a streamed response that owns its connection.

    The connection is closed when the stream is exhausted, when ``close()`` is called (from
    any thread: a blocked ``next()`` then ends with StopIteration), when a ``with`` block
    ends, or when the object is dropped.
    """

    def __init__(self, response: requests.Response, parse: Callable[[requests.Response], Iterator[T]]) -> None:
        self.response = response
        self._sock = _socket_of(response)
        self._it = parse(response)
        self._closed = False

    def __iter__(self) -> "Stream[T]":
        return self

    def __next__(self) -> T:
        if self._closed:
            raise StopIteration
        try:
            return next(self._it)
        except StopIteration:
            self.close()
            raise
        except (requests.RequestException, OSError, ValueError, AttributeError) as e:
            # A close() from another thread surfaces here as a read on a closed connection.
            was_closed = self._closed
            self.close()
            if was_closed:
                raise StopIteration from None
            raise DejimaConnectionError(f"stream broke: {e}") from e

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._sock is not None:
            # Closing alone does not wake a read blocked in another thread; a shutdown does.
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.response.close()
        except Exception:
            pass

    def __enter__(self) -> "Stream[T]":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _socket_of(response: requests.Response) -> Optional[socket.socket]:
    """The socket under a streamed response (urllib3 1.x and 2.x), if it can be found."""
    raw = response.raw
    conn = getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    fp = getattr(getattr(raw, "_fp", None), "fp", None)
    sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def iter_lines(response: requests.Response) -> Iterator[str]:
    """Text lines (without their line ends) as they arrive; a last unterminated line too."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    buf = ""
    for chunk in response.iter_content(chunk_size=None):
        if not chunk:
            continue
        buf += decoder.decode(chunk)
        start = 0
        while True:
            i = buf.find("\n", start)
            if i < 0:
                break
            line = buf[start:i]
            yield line[:-1] if line.endswith("\r") else line
            start = i + 1
        buf = buf[start:]
    buf += decoder.decode(b"", final=True)
    if buf:
        yield buf


def iter_sse(response: requests.Response) -> Iterator[Dict[str, Any]]:
    """Server-sent events as dicts: the event's JSON (which carries its own id and type).

    A frame whose data is not a JSON object is given as ``{"type": <event>, "id": <id>,
    "data": <text>}``. The daemon's last frame for a consumer it cut off is
    ``{"type": "dropped", ...}``; keepalive comments are skipped.
    """
    data: List[str] = []
    event: Optional[str] = None
    eid: Optional[str] = None
    for line in iter_lines(response):
        if line == "":
            if data or event is not None:
                text = "\n".join(data)
                obj: Any
                try:
                    obj = json.loads(text) if text else None
                except ValueError:
                    obj = None
                if isinstance(obj, dict):
                    if event is not None:
                        obj.setdefault("type", event)
                    if eid is not None:
                        obj.setdefault("id", eid)
                    yield obj
                else:
                    yield {"type": event or "message", "id": eid, "data": text}
            data, event, eid = [], None, None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id":
            eid = value
