"""Python SDK for Dejima: drive ``dejimad`` (islands, agents, exec, files, events) and attach
to agents' terminals.

    from dejima import Client

    dj = Client()  # $DEJIMA_HOST / $DEJIMA_TOKEN, else the Unix socket under $DEJIMA_HOME
    isl = dj.create_island(name="demo", no_repo=True, agent="custom", cmd="bash")
    print(dj.exec(isl["name"], ["uname", "-a"])["stdout"])
    with dj.attach(isl["name"]) as s:
        s.send("echo hi\\r")
        print(s.read_until("hi"))
"""

from ._version import __version__
from .client import JSON, ROUTES, Client
from .errors import DejimaConnectionError, DejimaError
from .mux import MuxStream
from .session import Session
from .ssh import SshStream
from .streams import Stream

__all__ = [
    "Client",
    "DejimaConnectionError",
    "DejimaError",
    "JSON",
    "MuxStream",
    "ROUTES",
    "Session",
    "SshStream",
    "Stream",
    "__version__",
]
