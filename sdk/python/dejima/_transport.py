"""HTTP over a Unix socket for requests, with nothing but urllib3 (which requests ships with)."""

import socket
from typing import Any, Mapping, Optional

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.util.retry import Retry

__all__ = ["UnixAdapter", "make_retry"]


def make_retry() -> Retry:
    """Retry only a failed connect (never a request that may have reached the daemon)."""
    return Retry(total=1, connect=1, read=0, redirect=0, status=0, other=0, raise_on_status=False)


class _UnixHTTPConnection(HTTPConnection):
    def __init__(self, *args: Any, socket_path: str = "", **kwargs: Any) -> None:
        self._socket_path = socket_path
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        timeout = self.timeout
        if timeout is not None and not isinstance(timeout, (int, float)):
            timeout = socket.getdefaulttimeout()  # urllib3's "default timeout" sentinel
        sock.settimeout(timeout)
        try:
            sock.connect(self._socket_path)
        except OSError as e:
            sock.close()
            raise NewConnectionError(self, f"cannot connect to {self._socket_path}: {e}") from e
        return sock


class _UnixHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _UnixHTTPConnection

    def __init__(self, socket_path: str, maxsize: int) -> None:
        super().__init__("dejimad", maxsize=maxsize, retries=make_retry(), socket_path=socket_path)


class UnixAdapter(HTTPAdapter):
    """A requests transport adapter that sends every request to one Unix socket."""

    def __init__(self, socket_path: str, pool_maxsize: int = 10) -> None:
        self.socket_path = socket_path
        self._pool = _UnixHTTPConnectionPool(socket_path, pool_maxsize)
        super().__init__(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=make_retry())

    # requests < 2.32
    def get_connection(self, url: Any, proxies: Optional[Mapping[str, str]] = None) -> HTTPConnectionPool:
        return self._pool

    # requests >= 2.32
    def get_connection_with_tls_context(
        self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
    ) -> HTTPConnectionPool:
        return self._pool

    def request_url(self, request: Any, proxies: Any) -> str:
        return str(request.path_url)

    def close(self) -> None:
        self._pool.close()
        super().close()
