"""Fixtures for the SDK's tests against a live dejimad.

Where the daemon is comes from the environment:
  DEJIMA_HOME          its state directory; the tests use $DEJIMA_HOME/dejimad.sock (owner)
  DEJIMA_TEST_TCP      host:port of its TCP listener (else DEJIMA_HOST when that is host:port)
  DEJIMA_TEST_TOKEN_OWNER   an owner token for TCP, when the daemon runs --require-token
  DEJIMA_TEST_TOKEN_OPERATOR / DEJIMA_TEST_TOKEN_VIEWER   tokens to use instead of minting
Every island a test makes is named pysdk-<run>-... and purged (force) when its fixture ends.
Tests whose effect is daemon-wide (panic, revoking every session) run only when every island
on the daemon is this run's, i.e. on a private daemon.
"""

import os
import secrets
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import pytest

import dejima

RUN = "pysdk-" + secrets.token_hex(3)

SOCKET_HOME = os.environ.get("DEJIMA_HOME") or ""
SOCKET_PATH = os.path.join(SOCKET_HOME, "dejimad.sock") if SOCKET_HOME else ""
_host_env = os.environ.get("DEJIMA_HOST") or ""
TCP = os.environ.get("DEJIMA_TEST_TCP") or ("" if _host_env.startswith("unix:") else _host_env)
OWNER_TOKEN = os.environ.get("DEJIMA_TEST_TOKEN_OWNER") or None


def wait_until(
    fn: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: Union[str, Callable[[], str]] = ""
) -> Any:
    """Poll ``fn`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except dejima.DejimaError as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            desc = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout} s waiting for {desc or fn}: last {last!r}")
        time.sleep(interval)


def purge_quietly(client: dejima.Client, name: str) -> None:
    try:
        client.purge_island(name, force=True)
    except dejima.DejimaError as e:
        if e.status != 404:
            raise


@pytest.fixture(scope="session")
def unix_client() -> Iterator[dejima.Client]:
    if not SOCKET_PATH or not os.path.exists(SOCKET_PATH):
        pytest.skip("set DEJIMA_HOME to a running dejimad's home to test the Unix socket")
    c = dejima.Client(socket=SOCKET_PATH, token="")
    yield c
    c.close()


@pytest.fixture(scope="session")
def tcp_client() -> Iterator[dejima.Client]:
    """The owner over TCP: untokened (a trusted loopback peer), or with
    $DEJIMA_TEST_TOKEN_OWNER, or, when the daemon runs --require-token, with an owner token
    minted over the socket for this run (revoked after)."""
    if not TCP:
        pytest.skip("set DEJIMA_TEST_TCP=host:port to test TCP")
    c = dejima.Client(host=TCP, token=OWNER_TOKEN or "")
    minted: Optional[str] = None
    if OWNER_TOKEN is None:
        try:
            c.list_tokens()
        except dejima.DejimaError as e:
            if e.status != 401 or not (SOCKET_PATH and os.path.exists(SOCKET_PATH)):
                raise
            owner = dejima.Client(socket=SOCKET_PATH, token="")
            tok = owner.create_token("owner", label=f"{RUN}-tcp-owner")
            minted = tok["id"]
            c = dejima.Client(host=TCP, token=tok.pop("secret"))
    yield c
    c.close()
    if minted:
        dejima.Client(socket=SOCKET_PATH, token="").revoke_token(minted)


@pytest.fixture(scope="session")
def client() -> Iterator[dejima.Client]:
    """The owner: the Unix socket when DEJIMA_HOME is set, else TCP (with the owner token)."""
    if SOCKET_PATH and os.path.exists(SOCKET_PATH):
        c = dejima.Client(socket=SOCKET_PATH, token="")
    elif TCP:
        c = dejima.Client(host=TCP, token=OWNER_TOKEN or "")
    else:
        pytest.skip("no daemon: set DEJIMA_HOME (socket) and/or DEJIMA_TEST_TCP (host:port)")
    try:
        c.healthz()
    except dejima.DejimaError as e:
        pytest.fail(f"the daemon named by the environment does not answer: {e}")
    yield c
    c.close()


def _create(client: dejima.Client, suffix: str, **kw: Any) -> Dict[str, Any]:
    name = f"{RUN}-{suffix}"
    body: Dict[str, Any] = dict(name=name, no_repo=True, agent="custom", cmd="bash")
    body.update(kw)
    return client.create_island(**body)


@pytest.fixture(scope="session")
def island(client: dejima.Client) -> Iterator[str]:
    """A running island shared by the read-mostly tests."""
    info = _create(client, "main")
    name = info["name"]
    try:
        yield name
    finally:
        purge_quietly(client, name)


@pytest.fixture
def make_island(client: dejima.Client) -> Iterator[Callable[..., Dict[str, Any]]]:
    """A factory of islands that are purged when the test ends."""
    made: List[str] = []

    def make(suffix: str, **kw: Any) -> Dict[str, Any]:
        made.append(f"{RUN}-{suffix}")
        return _create(client, suffix, **kw)

    yield make
    for name in made:
        purge_quietly(client, name)


@pytest.fixture
def private_daemon(client: dejima.Client) -> None:
    """Skip unless every island on the daemon is this run's (so daemon-wide acts are safe)."""
    others = [i["name"] for i in client.list_islands() if not i["name"].startswith(RUN)]
    if others:
        pytest.skip(f"the daemon has islands of others ({len(others)}); not doing daemon-wide acts")


@pytest.fixture
def http_sink() -> Iterator["Sink"]:
    """A loopback HTTP server recording requests and answering from a route table."""
    s = Sink()
    yield s
    s.close()


class Sink:
    def __init__(self) -> None:
        import http.server
        import json

        sink = self
        self.requests: List[Dict[str, Any]] = []
        self.routes: Dict[Any, Any] = {}
        self.cond = threading.Condition()

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                with sink.cond:
                    sink.requests.append(rec)
                    sink.cond.notify_all()
                route = sink.routes.get((self.command, self.path.split("?")[0]))
                status, payload, headers = route(rec) if callable(route) else (route or (200, {}, {}))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *a: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, pred: Callable[[Dict[str, Any]], bool], timeout: float = 20.0) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for r in self.requests:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no matching request within {timeout} s; got {[r['path'] for r in self.requests]}")
                self.cond.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def marker() -> str:
    return secrets.token_hex(3)


def type_and_wait(session: dejima.Session, timeout: float = 15.0, watcher: Optional[dejima.Session] = None) -> bytes:
    """Type ``echo MARK-$((6*7))-<nonce>`` into ``session``; wait for ``MARK-42-<nonce>`` on
    ``watcher`` (default the same session). The nonce keeps an earlier screen from matching."""
    nonce = marker()
    session.send(f"echo MARK-$((6*7))-{nonce}\r")
    return (watcher or session).read_until(f"MARK-42-{nonce}", timeout)
