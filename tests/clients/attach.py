#!/usr/bin/env python3
"""Attach to a dejimad agent session with Python's websocket-client (and requests for REST).

Usage: attach.py PORT ISLAND MARKER

Checks, against the daemon's TCP listener on 127.0.0.1:PORT:
  1. GET /v1/islands/ISLAND answers 200 with that name (requests);
  2. a hand-made websocket handshake gets a clean 101: one Connection header, "Upgrade";
     no Content-Length or Transfer-Encoding; the right Sec-WebSocket-Accept; and the first
     bytes after the head are a websocket frame carrying the hello envelope;
  3. websocket.create_connection attaches to agent a1 (label=python), gets hello, has its
     {"type":"ping"} answered with {"type":"pong"}, resizes to 30x100, types
     `echo MARKER-$((6*7))` and reads until MARKER-42 comes back.
Prints "ok" and exits 0 on success; exits non-zero with a message on failure or after 20 s.
"""

import base64
import hashlib
import json
import os
import socket
import sys
import time

import requests
import websocket

DEADLINE_S = 20.0
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def fail(msg):
    print(f"attach.py: FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def session_path(island, label):
    return f"/v1/islands/{island}/agents/a1/session?label={label}"


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            fail(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def raw_handshake(port, island):
    """A handshake by hand, so the exact 101 head can be checked."""
    key = base64.b64encode(os.urandom(16)).decode()
    want_accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    req = (
        f"GET {session_path(island, 'python-raw')} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    )
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                fail(f"connection closed during the handshake; got {buf!r}")
            buf += chunk
            if len(buf) > 65536:
                fail("no end of the response head within 64 KiB")
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0]
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                fail(f"malformed header line {line!r} in {head!r}")
            headers.append((name.strip().lower(), value.strip()))

        def all_of(name):
            return [v for (k, v) in headers if k == name]

        parts = status.split(" ", 2)
        if len(parts) < 2 or parts[0] != "HTTP/1.1" or parts[1] != "101":
            fail(f"status line is {status!r}, want HTTP/1.1 101; head {head!r}")
        conn = all_of("connection")
        if conn != ["Upgrade"]:
            fail(f"want exactly one Connection header, 'Upgrade'; got {conn!r}; head {head!r}")
        if [v.lower() for v in all_of("upgrade")] != ["websocket"]:
            fail(f"want one Upgrade: websocket; got {all_of('upgrade')!r}; head {head!r}")
        for bad in ("content-length", "transfer-encoding"):
            if all_of(bad):
                fail(f"a 101 must not carry {bad}: {all_of(bad)!r}; head {head!r}")
        if all_of("sec-websocket-accept") != [want_accept]:
            fail(
                f"Sec-WebSocket-Accept {all_of('sec-websocket-accept')!r}, want {want_accept!r}"
            )

        # What follows the head must be websocket frames: the first is the hello envelope
        # (unmasked text, FIN set), not stray body bytes.
        class Buf:
            data = rest

        def take(n):
            while len(Buf.data) < n:
                chunk = s.recv(4096)
                if not chunk:
                    fail(f"connection closed before the hello frame; had {Buf.data!r}")
                Buf.data += chunk
            out, Buf.data = Buf.data[:n], Buf.data[n:]
            return out

        b0, b1 = take(2)
        if b0 != 0x81:
            fail(f"first frame byte {b0:#04x}, want 0x81 (FIN, text); head {head!r}")
        if b1 & 0x80:
            fail("a server frame must not be masked")
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(take(2), "big")
        elif n == 127:
            n = int.from_bytes(take(8), "big")
        hello = json.loads(take(n).decode())
        if hello.get("type") != "hello":
            fail(f"first frame is {hello!r}, want hello")
        # Leave politely: a masked close frame (code 1000).
        payload = (1000).to_bytes(2, "big")
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        s.sendall(bytes([0x88, 0x80 | len(payload)]) + mask + masked)
        return status, headers
    finally:
        s.close()


def main():
    if len(sys.argv) != 4:
        fail("usage: attach.py PORT ISLAND MARKER")
    port, island, marker = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    base = f"http://127.0.0.1:{port}"

    # REST through requests.
    r = requests.get(f"{base}/v1/islands/{island}", timeout=10)
    if r.status_code != 200:
        fail(f"GET /v1/islands/{island} -> {r.status_code}: {r.text}")
    if r.json().get("name") != island:
        fail(f"GET /v1/islands/{island} names {r.json().get('name')!r}")

    status, headers = raw_handshake(port, island)
    print(f"raw handshake: {status}; headers {headers}", flush=True)

    # The real client library.
    url = f"ws://127.0.0.1:{port}{session_path(island, 'python')}"
    try:
        ws = websocket.create_connection(url, timeout=30)
    except Exception as e:  # the bug this guards against: "Invalid WebSocket Header"
        fail(f"websocket-client could not attach to {url}: {type(e).__name__}: {e}")
    deadline = time.monotonic() + DEADLINE_S
    output = b""
    want = f"{marker}-42".encode()
    saw_hello = saw_pong = False
    typed = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail(
                    f"no {want!r} (hello={saw_hello}, pong={saw_pong}) within {DEADLINE_S} s; "
                    f"output tail {output[-400:]!r}"
                )
            ws.settimeout(min(left, 1.0))
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except websocket.WebSocketConnectionClosedException as e:
                fail(f"closed before {want!r}: {e}; output tail {output[-400:]!r}")
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                fail(f"server closed ({data!r}) before {want!r}; output tail {output[-400:]!r}")
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            msg = json.loads(data.decode() if isinstance(data, bytes) else data)
            kind = msg.get("type")
            if not saw_hello:
                if kind != "hello":
                    fail(f"first message is {msg!r}, want hello")
                saw_hello = True
                labels = [c.get("label") for c in msg.get("attached", [])]
                if "python" not in labels:
                    fail(f"hello's attached list {msg.get('attached')!r} lacks label python")
                ws.send(json.dumps({"type": "resize", "rows": 30, "cols": 100}))
                ws.send(json.dumps({"type": "ping"}))
                keys = f"echo {marker}-$((6*7))\r".encode()
                ws.send(json.dumps({"type": "data", "b64": base64.b64encode(keys).decode()}))
                typed = True
            elif kind == "data":
                output += base64.b64decode(msg["b64"])
            elif kind == "pong":
                saw_pong = True
            elif kind == "error":
                err = base64.b64decode(msg.get("b64", "")).decode(errors="replace")
                fail(f"server error frame: {err}")
            if typed and saw_pong and want in output:
                break
    finally:
        try:
            ws.close()
        except Exception:
            pass
    print("ok", flush=True)


if __name__ == "__main__":
    main()
