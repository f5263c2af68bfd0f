"""The multiplexed stream (``GET /v1/stream``): events and many agents' terminals on one
websocket. See docs/stream.md for the protocol."""

import base64
import collections
import json
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

from .errors import DejimaConnectionError, DejimaError
from .session import _websocket

__all__ = ["MuxStream", "KIND_OUTPUT", "KIND_SCREEN", "KIND_INPUT"]

KIND_OUTPUT = 1
KIND_SCREEN = 2
KIND_INPUT = 3

Message = Tuple[str, Any]


def frame(kind: int, island: str, agent: str, payload: bytes) -> bytes:
    """``[kind][island length][island][agent length][agent][payload]``."""
    i, a = island.encode(), agent.encode()
    return bytes([kind, len(i)]) + i + bytes([len(a)]) + a + payload


def parse_frame(b: bytes) -> Tuple[int, str, str, bytes]:
    il = b[1]
    island = b[2 : 2 + il].decode()
    al = b[2 + il]
    agent = b[3 + il : 3 + il + al].decode()
    return b[0], island, agent, b[3 + il + al :]


class MuxStream:
    """One multiplexed connection. ``call(op, ...)`` sends a control message and returns its
    reply (raising ``DejimaError`` with the reply's status when it is refused); ``recv()``
    returns the next message as ``(kind, value)``: ``("output", (island, agent, bytes))``,
    ``("screen", (island, agent, bytes))`` (a full screen), ``("event", event)``,
    ``("exit", {...})``, ``("detached", {...})``, ``("dropped", {...})``; ``None`` once closed,
    or after ``timeout`` with nothing. Output is also kept per terminal in ``output``."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._ws_mod = _websocket()
        self._next = 0
        self._replies: Dict[Any, Dict[str, Any]] = {}
        self._queue: Deque[Message] = collections.deque()
        self.output: Dict[Tuple[str, str], bytearray] = collections.defaultdict(bytearray)
        self.events: List[Dict[str, Any]] = []
        self.closed = False
        self.close_code: Optional[int] = None

    def __enter__(self) -> "MuxStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _read_one(self, timeout: Optional[float]) -> bool:
        """Read one websocket message into the queues; False on timeout or close."""
        if self.closed:
            return False
        self._ws.settimeout(timeout)
        try:
            opcode, data = self._ws.recv_data(control_frame=True)
        except self._ws_mod.WebSocketTimeoutException:
            return False
        except (self._ws_mod.WebSocketException, OSError):
            self.closed = True
            return False
        if opcode == self._ws_mod.ABNF.OPCODE_BINARY:
            kind, island, agent, payload = parse_frame(data)
            self.output[(island, agent)] += payload
            self._queue.append(("output" if kind == KIND_OUTPUT else "screen", (island, agent, payload)))
        elif opcode == self._ws_mod.ABNF.OPCODE_TEXT:
            m = json.loads(data.decode("utf-8"))
            if m.get("type") == "reply":
                self._replies[m.get("id")] = m
            elif m.get("type") == "event":
                self.events.append(m["event"])
                self._queue.append(("event", m["event"]))
            elif m.get("type") not in ("hello", "pong"):
                self._queue.append((str(m.get("type")), m))
        elif opcode == self._ws_mod.ABNF.OPCODE_CLOSE:
            self.closed = True
            if len(data) >= 2:
                self.close_code = int.from_bytes(data[:2], "big")
            return False
        return True

    def call(self, op: str, timeout: float = 60.0, **fields: Any) -> Dict[str, Any]:
        """Send ``{"op": op, "id": N, **fields}`` and wait for its reply."""
        self._next += 1
        rid = self._next
        self.send_json({"op": op, "id": rid, **fields})
        deadline = time.monotonic() + timeout
        while rid not in self._replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DejimaConnectionError(f"no reply to {op} within {timeout} s")
            if not self._read_one(min(left, 1.0)) and self.closed:
                raise DejimaConnectionError(f"the stream closed before the reply to {op} (code {self.close_code})")
        r = self._replies.pop(rid)
        if not r.get("ok"):
            raise DejimaError(r.get("status"), r.get("error", "refused"), method="WS", path="/v1/stream")
        return r

    def send_json(self, msg: Dict[str, Any]) -> None:
        try:
            self._ws.send(json.dumps(msg, separators=(",", ":")))
        except (self._ws_mod.WebSocketException, OSError) as e:
            self.closed = True
            raise DejimaConnectionError(f"stream send failed: {e}") from e

    def send_input(self, island: str, data: Any, agent: str = "a1") -> None:
        """Keystrokes for an attached terminal (a binary input frame)."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        self._ws.send_binary(frame(KIND_INPUT, island, agent, payload))

    def recv(self, timeout: Optional[float] = None) -> Optional[Message]:
        if not self._queue:
            self._read_one(timeout)
        return self._queue.popleft() if self._queue else None

    def read_until(self, island: str, needle: str, agent: str = "a1", timeout: float = 20.0) -> bytes:
        """Read until ``needle`` is in that terminal's output; return the output so far."""
        deadline = time.monotonic() + timeout
        want = needle.encode()
        while want not in self.output[(island, agent)]:
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise DejimaConnectionError(f"no {needle!r} from {island}/{agent} within {timeout} s")
            self._read_one(min(left, 1.0))
        return bytes(self.output[(island, agent)])

    def close(self) -> None:
        if not self.closed:
            try:
                self._ws.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
            self.closed = True
