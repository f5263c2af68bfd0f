"""Errors raised by the Dejima SDK."""

from typing import Any, Optional

__all__ = ["DejimaError", "DejimaConnectionError"]


class DejimaError(Exception):
    """A non-2xx answer from dejimad.

    ``status`` is the HTTP status code and ``message`` the daemon's ``{"error": "..."}`` text
    (or the raw body when it sent something else). ``method`` and ``path`` name the request.
    """

    def __init__(
        self,
        status: Optional[int],
        message: str,
        *,
        method: Optional[str] = None,
        path: Optional[str] = None,
        body: Any = None,
    ) -> None:
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        self.body = body
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = f" on {self.method} {self.path}" if self.method and self.path else ""
        if self.status is None:
            return f"dejimad unreachable{where}: {self.message}"
        return f"HTTP {self.status}{where}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r})"


class DejimaConnectionError(DejimaError):
    """The daemon could not be reached (or the connection broke); ``status`` is None."""

    def __init__(self, message: str, *, method: Optional[str] = None, path: Optional[str] = None) -> None:
        super().__init__(None, message, method=method, path=path)
