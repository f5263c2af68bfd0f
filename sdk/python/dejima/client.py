"""The Dejima REST client: one method per operation in openapi.yaml."""

import json as _json
import os
from typing import (
    IO,
    Any,
    Dict,
    Iterable,
    List,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
    overload,
)
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from ._version import __version__
from ._transport import UnixAdapter, make_retry
from .errors import DejimaConnectionError, DejimaError
from .mux import MuxStream
from .session import Session, connect_ws, open_session
from .ssh import SshStream, open_ssh_stream
from .streams import Stream, iter_lines, iter_sse

__all__ = ["Client", "ROUTES", "JSON"]

JSON = Dict[str, Any]
Timeout = Union[None, float, Tuple[Optional[float], Optional[float]]]
_DEFAULT: Any = object()  # "the client's timeout"

# Every operation in openapi.yaml and the Client method that performs it. The test suite
# fails when openapi.yaml gains an operation this table lacks, or names a missing method.
ROUTES: Dict[Tuple[str, str], str] = {
    ("GET", "/v1/healthz"): "healthz",
    ("GET", "/v1/readyz"): "readyz",
    ("GET", "/metrics"): "metrics",
    ("GET", "/v1/doctor"): "doctor",
    ("POST", "/v1/doctor/fix"): "doctor_fix",
    ("POST", "/v1/admin/update"): "update",
    ("GET", "/v1/overview"): "overview",
    ("POST", "/v1/image/build"): "image_build",
    ("GET", "/v1/islands"): "list_islands",
    ("POST", "/v1/islands"): "create_island",
    ("GET", "/v1/islands/{name}"): "get_island",
    ("PATCH", "/v1/islands/{name}"): "set_title",
    ("DELETE", "/v1/islands/{name}"): "purge_island",
    ("POST", "/v1/islands/{name}/hibernate"): "hibernate",
    ("POST", "/v1/islands/{name}/wake"): "wake",
    ("POST", "/v1/islands/{name}/reset"): "reset",
    ("POST", "/v1/islands/{name}/upgrade"): "upgrade",
    ("POST", "/v1/islands/{name}/clone"): "clone_island",
    ("PUT", "/v1/islands/{name}/resources"): "set_resources",
    ("GET", "/v1/islands/{name}/workspace-ready"): "workspace_ready",
    ("POST", "/v1/islands/{name}/reclone"): "reclone",
    ("POST", "/v1/islands/{name}/exec"): "exec",
    ("GET", "/v1/islands/{name}/files/{path}"): "read_file",
    ("PUT", "/v1/islands/{name}/files/{path}"): "write_file",
    ("GET", "/v1/islands/{name}/logs"): "logs",
    ("GET", "/v1/islands/{name}/session"): "attach",
    ("GET", "/v1/islands/{name}/agents"): "list_agents",
    ("POST", "/v1/islands/{name}/agents"): "add_agent",
    ("GET", "/v1/islands/{name}/agents/{id}"): "get_agent",
    ("PATCH", "/v1/islands/{name}/agents/{id}"): "relabel_agent",
    ("DELETE", "/v1/islands/{name}/agents/{id}"): "remove_agent",
    ("GET", "/v1/agent-types"): "agent_types",
    ("POST", "/v1/islands/{name}/agents/{id}/restart"): "restart_agent",
    ("PATCH", "/v1/islands/{name}/agents/{id}/config"): "configure_agent",
    ("GET", "/v1/islands/{name}/agents/{id}/session"): "attach",
    ("GET", "/v1/islands/{name}/agents/{id}/screen"): "screen",
    ("POST", "/v1/islands/{name}/agents/{id}/prompt"): "prompt",
    ("POST", "/v1/islands/{name}/agents/{id}/upload"): "upload",
    ("GET", "/v1/islands/{name}/recordings"): "list_recordings",
    ("GET", "/v1/islands/{name}/recordings/{id}"): "get_recording",
    ("DELETE", "/v1/islands/{name}/recordings/{id}"): "delete_recording",
    ("GET", "/v1/stream"): "stream",
    ("GET", "/v1/clients"): "clients",
    ("POST", "/v1/sessions/revoke"): "revoke_sessions",
    ("GET", "/v1/terminals"): "list_terminals",
    ("POST", "/v1/terminals"): "create_terminal",
    ("PATCH", "/v1/terminals/{id}"): "relabel_terminal",
    ("DELETE", "/v1/terminals/{id}"): "close_terminal",
    ("GET", "/v1/terminals/{id}/session"): "attach_terminal",
    ("GET", "/v1/islands/{name}/events"): "events",
    ("POST", "/v1/events/subscribe"): "subscribe",
    ("GET", "/v1/events/subscriptions"): "subscriptions",
    ("DELETE", "/v1/events/subscriptions/{id}"): "unsubscribe",
    ("GET", "/v1/events/stream"): "event_stream",
    ("POST", "/v1/internal/agent-event"): "post_agent_event",
    ("GET", "/v1/audit"): "audit",
    ("GET", "/v1/activity"): "activity",
    ("GET", "/v1/panic"): "panic_status",
    ("POST", "/v1/panic"): "engage_panic",
    ("DELETE", "/v1/panic"): "clear_panic",
    ("GET", "/v1/tokens"): "list_tokens",
    ("POST", "/v1/tokens"): "create_token",
    ("DELETE", "/v1/tokens/{id}"): "revoke_token",
    ("GET", "/v1/islands/{name}/port/scopes"): "list_port_scopes",
    ("POST", "/v1/islands/{name}/port/scopes"): "grant_port_scope",
    ("DELETE", "/v1/islands/{name}/port/scopes/{scope}"): "revoke_port_scope",
    ("POST", "/v1/islands/{name}/port/intake"): "port_intake",
    ("POST", "/v1/islands/{name}/port/export"): "port_export",
    ("POST", "/v1/islands/{name}/port/write"): "port_write",
    ("GET", "/v1/capabilities"): "list_capabilities",
    ("GET", "/v1/islands/{name}/capability/grants"): "list_capability_grants",
    ("POST", "/v1/islands/{name}/capability/grants"): "grant_capability",
    ("DELETE", "/v1/islands/{name}/capability/grants/{target}"): "revoke_capability",
    ("POST", "/v1/capabilities/execute"): "execute_capability",
    ("GET", "/v1/mcp/servers"): "list_mcp_servers",
    ("GET", "/v1/islands/{name}/mcp/grants"): "list_mcp_grants",
    ("POST", "/v1/islands/{name}/mcp/grants"): "grant_mcp",
    ("DELETE", "/v1/islands/{name}/mcp/grants/{server}"): "revoke_mcp",
    ("POST", "/v1/mcp/call"): "mcp_call",
    ("GET", "/v1/islands/{name}/spawn"): "spawn_info",
    ("PUT", "/v1/islands/{name}/spawn"): "grant_spawn",
    ("GET", "/v1/credentials/claude"): "claude_status",
    ("PUT", "/v1/credentials/claude"): "set_claude_credentials",
    ("DELETE", "/v1/credentials/claude"): "delete_claude_credentials",
    ("GET", "/v1/credentials/github"): "list_github_identities",
    ("PUT", "/v1/credentials/github/{name}"): "put_github_identity",
    ("DELETE", "/v1/credentials/github/{name}"): "delete_github_identity",
    ("GET", "/v1/credentials/github/{name}/repos"): "github_repos",
    ("POST", "/v1/credentials/github/{name}/repos"): "create_github_repo",
    ("GET", "/v1/credentials/providers"): "list_providers",
    ("GET", "/v1/credentials/providers/{provider}"): "get_provider",
    ("PUT", "/v1/credentials/providers/{provider}"): "set_provider",
    ("DELETE", "/v1/credentials/providers/{provider}"): "delete_provider",
    ("GET", "/v1/islands/{name}/ssh"): "ssh_stream",
    ("GET", "/v1/ssh/account-keys"): "list_account_keys",
    ("POST", "/v1/ssh/account-keys"): "add_account_key",
    ("DELETE", "/v1/ssh/account-keys/{fingerprint}"): "remove_account_key",
    ("GET", "/v1/islands/{name}/ssh/keys"): "list_island_ssh_keys",
    ("POST", "/v1/islands/{name}/ssh/keys"): "add_island_ssh_key",
    ("DELETE", "/v1/islands/{name}/ssh/keys/{fingerprint}"): "remove_island_ssh_key",
}

# Engine operations (create, wake, clone, ...) may take minutes; they get at least this long.
_SLOW_SECS = 600.0


def _seg(value: str) -> str:
    """One path segment, percent-encoded (a name can never reach another route)."""
    return quote(str(value), safe="")


def _compact(d: Mapping[str, Any]) -> Dict[str, Any]:
    """The fields the caller gave (None means not given)."""
    return {k: v for k, v in d.items() if v is not None}


def _query(d: Mapping[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else v
    return out


def _csv(v: Union[None, str, Iterable[str]]) -> Optional[str]:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    return ",".join(v)


def _home() -> str:
    home = os.environ.get("DEJIMA_HOME") or ""
    return home if home else os.path.join(os.path.expanduser("~"), ".dejima")


class Client:
    """A client of one dejimad.

    ``host``: ``"host:port"`` (or ``http://host:port``, ``https://...``) for TCP, or
    ``"unix:/path/to/dejimad.sock"``; default ``$DEJIMA_HOST``. ``socket``: a Unix socket path
    (overrides ``host``). With neither, the Unix socket ``$DEJIMA_HOME/dejimad.sock``
    (``~/.dejima/dejimad.sock``). ``token``: an operator token (``djo_...``) sent as
    ``Authorization: Bearer``; default ``$DEJIMA_TOKEN``. ``timeout``: seconds for each
    ordinary request (engine operations such as create or wake wait at least 600 s; streams
    wait for data without a limit unless given one); None waits for ever.

    Every non-2xx answer raises :class:`DejimaError` (``status``, ``message``); a daemon that
    cannot be reached raises :class:`DejimaConnectionError` (a DejimaError with status None).
    """

    def __init__(
        self,
        host: Optional[str] = None,
        token: Optional[str] = None,
        socket: Optional[str] = None,
        timeout: Optional[float] = 30.0,
    ) -> None:
        if host is None and socket is None:
            host = os.environ.get("DEJIMA_HOST") or None
        if token is None:
            token = os.environ.get("DEJIMA_TOKEN") or None
        self.token: Optional[str] = token or None
        self.timeout: Optional[float] = timeout
        self.socket_path: Optional[str] = None
        self._headers: Dict[str, str] = {
            "User-Agent": f"dejima-sdk-python/{__version__}",
            "Accept-Encoding": "identity",
        }
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        if socket is not None or host is None or host.startswith("unix:"):
            if socket is not None:
                path = socket
            elif host is not None:
                path = host[len("unix:"):]
                if path.startswith("//"):
                    path = path[2:]
            else:
                path = os.path.join(_home(), "dejimad.sock")
            self.socket_path = os.path.expanduser(path)
            self.base_url = "http://dejimad"
            adapter: HTTPAdapter = UnixAdapter(self.socket_path)
        else:
            h = host.strip().rstrip("/")
            if "://" not in h:
                h = "http://" + h
            scheme, rest = h.split("://", 1)
            if scheme not in ("http", "https"):
                raise ValueError(f"host {host!r}: want host:port, http(s)://host:port or unix:/path")
            if rest.startswith(":"):
                rest = "127.0.0.1" + rest
            self.base_url = f"{scheme}://{rest}"
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=10, max_retries=make_retry())
        self._adapter = adapter

    def __repr__(self) -> str:
        where = f"unix:{self.socket_path}" if self.socket_path else self.base_url
        return f"<dejima.Client {where}{' (token)' if self.token else ''}>"

    # -- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections."""
        self._adapter.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _slow(self, at_least: float = _SLOW_SECS) -> Optional[float]:
        return None if self.timeout is None else max(self.timeout, at_least)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        data: Any = None,
        headers: Optional[Mapping[str, str]] = None,
        stream: bool = False,
        timeout: Timeout = _DEFAULT,
    ) -> requests.Response:
        if timeout is _DEFAULT:
            timeout = self.timeout
        hdrs: Dict[str, str] = dict(self._headers)
        body: Any = None
        if json is not None:
            body = _json.dumps(json, separators=(",", ":")).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        elif data is not None:
            body = data
        if headers:
            hdrs.update(headers)
        try:
            # The adapter directly: requests.Session's per-call merging (cookies, proxies,
            # environment, hooks) costs more than the request itself on a local socket.
            req = requests.PreparedRequest()
            req.prepare(
                method=method,
                url=self.base_url + path,
                headers=hdrs,
                data=body,
                params=_query(params) if params else None,
            )
            resp = self._adapter.send(
                req, stream=stream, timeout=timeout, verify=True, cert=None, proxies={}  # type: ignore[arg-type]
            )
        except requests.RequestException as e:
            raise DejimaConnectionError(str(e), method=method, path=path) from e
        if not 200 <= resp.status_code < 300:
            try:
                raise self._error(resp, method, path)
            finally:
                resp.close()
        return resp

    @staticmethod
    def _error(resp: requests.Response, method: str, path: str) -> DejimaError:
        body: Any = None
        message = ""
        try:
            text = resp.content.decode("utf-8", "replace")
        except Exception:
            text = ""
        try:
            body = _json.loads(text) if text else None
        except ValueError:
            body = text
        if isinstance(body, dict) and "error" in body:
            message = str(body["error"])
        else:
            message = text.strip()[:1000] or (resp.reason or "")
        return DejimaError(resp.status_code, message, method=method, path=path, body=body)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        """A request whose answer is JSON (or nothing, for a 204)."""
        resp = self._request(method, path, **kw)
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def _stream(self, method: str, path: str, parse: Any, read_timeout: Optional[float], **kw: Any) -> Stream[Any]:
        resp = self._request(method, path, stream=True, timeout=(self.timeout, read_timeout), **kw)
        return Stream(resp, parse)

    def _isl(self, island: str, *rest: str) -> str:
        return "/v1/islands/" + _seg(island) + "".join("/" + r for r in rest)

    def _file_path(self, island: str, path: str) -> str:
        p = path.lstrip("/")
        if not p:
            raise ValueError("a file path is needed (e.g. /workspace/README.md)")
        return self._isl(island, "files", quote(p, safe="/"))

    # -- daemon -----------------------------------------------------------------------------

    def healthz(self) -> JSON:
        """``{status, ok, version, docker_reachable}``; reachable with any token."""
        return self._call("GET", "/v1/healthz")  # type: ignore[no-any-return]

    def readyz(self) -> JSON:
        """Readiness: ``{ready: True, image}`` when the engine answers and the island image is
        there; otherwise DejimaError 503 whose ``body`` is ``{ready: False, reason, error}``.
        Any role."""
        return self._call("GET", "/v1/readyz")  # type: ignore[no-any-return]

    def metrics(self) -> str:
        """The Prometheus exposition (text format 0.0.4): requests and latency by route,
        engine calls, islands, agents, clients, webhooks, the process. Operator."""
        resp = self._request("GET", "/metrics", headers={"Accept": "text/plain"})
        return resp.content.decode("utf-8", "replace")

    def doctor(self) -> JSON:
        """The daemon's checks of its host: ``{ok, checks: [{name, status, detail, fix?,
        hint?}], fixed}``. Operator."""
        return self._call("GET", "/v1/doctor")  # type: ignore[no-any-return]

    def doctor_fix(self) -> JSON:
        """Do what is safe (build the image, chmod 600 the socket, raise the file limit),
        then check again. Owner."""
        return self._call("POST", "/v1/doctor/fix", timeout=self._slow(1800))  # type: ignore[no-any-return]

    def update(self, execute: bool = False, force: bool = False) -> JSON:
        """Whether a newer dejimad exists: ``{current, latest, mode, update_available,
        applying, note?, attached?}``; with ``execute`` put it in place (the daemon then
        re-executes itself). Owner. 409 when the daemon has no update source."""
        return self._call(  # type: ignore[no-any-return]
            "POST", "/v1/admin/update", json={"execute": execute, "force": force}, timeout=self._slow(3600)
        )

    def version(self) -> str:
        """The daemon's version (from healthz)."""
        return str(self.healthz().get("version", ""))

    def overview(self) -> JSON:
        """Server-wide totals and substrate health."""
        return self._call("GET", "/v1/overview")  # type: ignore[no-any-return]

    def image_build(
        self,
        tag: Optional[str] = None,
        base: Optional[str] = None,
        force: Optional[bool] = None,
        slim: Optional[bool] = None,
        *,
        read_timeout: Optional[float] = None,
    ) -> Stream[str]:
        """Build the island image; yields the build's output lines, the last ``ok: ...`` or
        ``error: ...`` (a failed build is still a 200: check the last line). Owner."""
        body = _compact({"tag": tag, "base": base, "force": force, "slim": slim})
        return self._stream("POST", "/v1/image/build", iter_lines, read_timeout, json=body or None)

    # -- islands ----------------------------------------------------------------------------

    def list_islands(self) -> List[JSON]:
        """Every island (lightweight)."""
        return self._call("GET", "/v1/islands")  # type: ignore[no-any-return]

    def create_island(
        self,
        repo: Optional[str] = None,
        name: Optional[str] = None,
        agent: Optional[str] = None,
        no_repo: bool = False,
        *,
        cmd: Optional[str] = None,
        image: Optional[str] = None,
        github_identity: Optional[str] = None,
        provider: Optional[str] = None,
        model: Optional[str] = None,
        resources: Optional[Mapping[str, Any]] = None,
        title: Optional[str] = None,
        owner: Optional[str] = None,
        role: Optional[str] = None,
        tags: Optional[Mapping[str, str]] = None,
        **fields: Any,
    ) -> JSON:
        """Create an island from a git URL or host path (``repo``), or empty (``no_repo=True``,
        with ``name``). ``agent``: claude-code (default), codex, custom or headless. A git URL
        is cloned in the background: poll :meth:`workspace_ready`. Returns IslandInfo."""
        body = _compact(
            {
                "repo": repo,
                "name": name,
                "agent": agent,
                "no_repo": True if no_repo else None,
                "cmd": cmd,
                "image": image,
                "github_identity": github_identity,
                "provider": provider,
                "model": model,
                "resources": dict(resources) if resources is not None else None,
                "title": title,
                "owner": owner,
                "role": role,
                "tags": dict(tags) if tags is not None else None,
            }
        )
        body.update(_compact(fields))
        return self._call("POST", "/v1/islands", json=body, timeout=self._slow())  # type: ignore[no-any-return]

    def get_island(self, island: str) -> JSON:
        """Detail of one island (git, health, disk, resources)."""
        return self._call("GET", self._isl(island))  # type: ignore[no-any-return]

    def set_title(self, island: str, title: str) -> JSON:
        """Set the display title (empty: show the name). Returns IslandInfo."""
        return self._call("PATCH", self._isl(island), json={"title": title})  # type: ignore[no-any-return]

    def purge_island(self, island: str, force: bool = False) -> None:
        """Remove the island: container, volumes, network, records. Refused (409) while the
        workspace holds unpushed work unless ``force``."""
        self._call(
            "DELETE", self._isl(island), params={"force": True} if force else None, timeout=self._slow()
        )

    def hibernate(self, island: str) -> JSON:
        """Stop the container, keep the volumes."""
        return self._call("POST", self._isl(island, "hibernate"), timeout=self._slow())  # type: ignore[no-any-return]

    def wake(self, island: str) -> JSON:
        """Start the container (recreated against the volumes if it was removed)."""
        return self._call("POST", self._isl(island, "wake"), timeout=self._slow())  # type: ignore[no-any-return]

    def reset(self, island: str) -> JSON:
        """A new empty home volume; the workspace is untouched; the island runs after."""
        return self._call("POST", self._isl(island, "reset"), timeout=self._slow())  # type: ignore[no-any-return]

    def upgrade(self, island: str) -> JSON:
        """Recreate the container on the current image, volumes kept."""
        return self._call("POST", self._isl(island, "upgrade"), timeout=self._slow())  # type: ignore[no-any-return]

    def clone_island(self, island: str, new_name: str) -> JSON:
        """Copy both volumes into a new island ``new_name``. Returns the new IslandInfo."""
        return self._call(  # type: ignore[no-any-return]
            "POST", self._isl(island, "clone"), json={"new_name": new_name}, timeout=self._slow()
        )

    def set_resources(
        self, island: str, memory: Optional[str] = None, oom_priority: Optional[int] = None
    ) -> JSON:
        """Change the memory cap (live, e.g. "6G") and OOM priority (-10..10, on the next
        recreate). Returns ``{resources, restart_required}``."""
        body = _compact({"memory": memory, "oom_priority": oom_priority})
        return self._call("PUT", self._isl(island, "resources"), json=body)  # type: ignore[no-any-return]

    def workspace_ready(self, island: str) -> JSON:
        """``{ready, clone_failed, clone_reason}``."""
        return self._call("GET", self._isl(island, "workspace-ready"))  # type: ignore[no-any-return]

    def reclone(self, island: str) -> JSON:
        """Clone the island's git URL again after a failed clone; waits for it."""
        return self._call("POST", self._isl(island, "reclone"), timeout=self._slow())  # type: ignore[no-any-return]

    def exec(
        self,
        island: str,
        cmd: Union[str, Sequence[str]],
        timeout_secs: Optional[int] = None,
        *,
        stdin: Optional[str] = None,
        workdir: Optional[str] = None,
        user: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> JSON:
        """Run a command in the island (no PTY): ``{stdout, stderr, exit_code, timed_out?,
        truncated?}``. ``cmd`` is an argv list; a string is run by ``sh -c``."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        body = _compact(
            {
                "cmd": argv,
                "stdin": stdin,
                "timeout_secs": timeout_secs,
                "workdir": workdir,
                "user": user,
                "env": dict(env) if env is not None else None,
            }
        )
        wait = float(timeout_secs if timeout_secs is not None else 60) + 30.0
        return self._call("POST", self._isl(island, "exec"), json=body, timeout=self._slow(wait))  # type: ignore[no-any-return]

    def read_file(self, island: str, path: str) -> bytes:
        """A file's bytes (``path`` absolute, under /workspace or /home/agent)."""
        return self._request("GET", self._file_path(island, path), timeout=self._slow(120)).content

    def write_file(self, island: str, path: str, data: Union[bytes, bytearray, str, IO[bytes]]) -> None:
        """Write a file (parents created, replaced atomically). ``data``: bytes, str (UTF-8)
        or a binary file object (streamed)."""
        body: Any = data.encode("utf-8") if isinstance(data, str) else data
        if isinstance(body, bytearray):
            body = bytes(body)
        self._request(
            "PUT",
            self._file_path(island, path),
            data=body,
            headers={"Content-Type": "application/octet-stream"},
            timeout=self._slow(120),
        ).close()

    @overload
    def logs(
        self,
        island: str,
        follow: Literal[False] = False,
        agent: Optional[str] = None,
        tail: Union[int, str, None] = None,
    ) -> str: ...

    @overload
    def logs(
        self,
        island: str,
        follow: Literal[True],
        agent: Optional[str] = None,
        tail: Union[int, str, None] = None,
    ) -> Stream[str]: ...

    def logs(
        self,
        island: str,
        follow: bool = False,
        agent: Optional[str] = None,
        tail: Union[int, str, None] = None,
    ) -> Union[str, Stream[str]]:
        """The container's output (or a headless ``agent``'s log). ``tail``: a number of
        lines or "all". Without ``follow`` the text; with it, an iterator of lines that stays
        open until closed."""
        params = {"follow": True if follow else None, "agent": agent, "tail": tail}
        path = self._isl(island, "logs")
        if follow:
            return self._stream("GET", path, iter_lines, None, params=params)
        resp = self._request("GET", path, params=params, timeout=self._slow(120))
        return resp.content.decode("utf-8", "replace")

    # -- agents -----------------------------------------------------------------------------

    def list_agents(self, island: str) -> List[JSON]:
        """The island's agents, primary first."""
        return self._call("GET", self._isl(island, "agents"))  # type: ignore[no-any-return]

    def add_agent(
        self,
        island: str,
        type: Optional[str] = None,
        label: Optional[str] = None,
        cmd: Optional[str] = None,
        provider: Optional[str] = None,
        model: Optional[str] = None,
    ) -> JSON:
        """Add an agent (next ``a<N>`` id, its own worktree and branch). Returns AgentInfo."""
        body = _compact({"type": type, "label": label, "cmd": cmd, "provider": provider, "model": model})
        return self._call("POST", self._isl(island, "agents"), json=body, timeout=self._slow())  # type: ignore[no-any-return]

    def get_agent(self, island: str, agent: str) -> JSON:
        """One agent."""
        return self._call("GET", self._isl(island, "agents", _seg(agent)))  # type: ignore[no-any-return]

    def relabel_agent(self, island: str, agent: str, label: str) -> JSON:
        """Set an agent's label."""
        return self._call("PATCH", self._isl(island, "agents", _seg(agent)), json={"label": label})  # type: ignore[no-any-return]

    def remove_agent(self, island: str, agent: str) -> None:
        """Remove an agent (session killed, worktree pruned, branch kept)."""
        self._call("DELETE", self._isl(island, "agents", _seg(agent)), timeout=self._slow())

    def restart_agent(self, island: str, agent: str, resume: bool = False) -> JSON:
        """Relaunch the agent's program in place; ``resume`` continues the last conversation."""
        return self._call(  # type: ignore[no-any-return]
            "POST",
            self._isl(island, "agents", _seg(agent), "restart"),
            json={"resume": True} if resume else None,
            timeout=self._slow(),
        )

    def configure_agent(
        self, island: str, agent: str, provider: Optional[str] = None, model: Optional[str] = None
    ) -> JSON:
        """Set an agent's provider and model ("" clears); taken up at its next restart."""
        body = _compact({"provider": provider, "model": model})
        return self._call("PATCH", self._isl(island, "agents", _seg(agent), "config"), json=body)  # type: ignore[no-any-return]

    def agent_types(self) -> List[JSON]:
        """The agent types and what each needs."""
        return self._call("GET", "/v1/agent-types")  # type: ignore[no-any-return]

    # -- sessions ---------------------------------------------------------------------------

    def attach(
        self,
        island: str,
        agent: Optional[str] = None,
        label: str = "python-sdk",
        rows: Optional[int] = None,
        cols: Optional[int] = None,
        observe: bool = False,
        scrollback: int = 0,
    ) -> Session:
        """Attach to the island's primary agent (or ``agent``'s) terminal over a websocket.
        ``observe``: read-only (keystrokes and resizes ignored; always so for a viewer's
        token). ``scrollback``: history lines sent before the live screen.
        Needs ``pip install 'dejima-sdk[ws]'``."""
        path = self._isl(island, "session") if agent is None else self._isl(island, "agents", _seg(agent), "session")
        extra = ("&mode=observe" if observe else "") + (f"&scrollback={int(scrollback)}" if scrollback else "")
        return self._open_session(path, label, rows, cols, extra)

    def attach_terminal(
        self, terminal: str, label: str = "python-sdk", rows: Optional[int] = None, cols: Optional[int] = None
    ) -> Session:
        """Attach to a host terminal (dejimad --host-terminals; owner)."""
        return self._open_session("/v1/terminals/" + _seg(terminal) + "/session", label, rows, cols)

    def _open_session(
        self, path: str, label: str, rows: Optional[int], cols: Optional[int], extra: str = ""
    ) -> Session:
        return open_session(
            path=path + "?label=" + quote(label, safe="") + extra,
            label=label,
            socket_path=self.socket_path,
            http_base=self.base_url,
            token=self.token,
            timeout=self.timeout if self.timeout is not None else 30.0,
            rows=rows,
            cols=cols,
        )

    def screen(self, island: str, agent: str = "a1", format: str = "text", scrollback: int = 0) -> Any:
        """The agent's screen without attaching: ``text`` or ``ansi`` (a str), or ``json`` (a
        dict with rows, cursor, size, history)."""
        path = self._isl(island, "agents", _seg(agent), "screen")
        params = {"format": format, "scrollback": str(int(scrollback))}
        if format == "json":
            return self._call("GET", path, params=params)
        return self._request("GET", path, params=params).text

    def prompt(self, island: str, text: str, agent: str = "a1", submit: bool = True) -> JSON:
        """Send a prompt as one paste and press the agent's submit key, each verified on its
        screen: ``{delivered, submitted, attempts, elapsed_ms}`` (409/504 raise with what was seen)."""
        return self._call(  # type: ignore[no-any-return]
            "POST",
            self._isl(island, "agents", _seg(agent), "prompt"),
            json={"text": text, "submit": submit},
            timeout=self._slow(),
        )

    def upload(self, island: str, filename: str, data: Union[bytes, bytearray, str], agent: str = "a1") -> JSON:
        """Save a file (at most 8 MiB) in the island's ~/uploads and paste it into the agent's
        input (text) or its path (anything else): ``{path, bytes, pasted_as, pasted}``."""
        body = data.encode() if isinstance(data, str) else bytes(data)
        return self._call(  # type: ignore[no-any-return]
            "POST",
            self._isl(island, "agents", _seg(agent), "upload"),
            params={"filename": filename},
            data=body,
            headers={"Content-Type": "application/octet-stream"},
            timeout=self._slow(),
        )

    def stream(self, label: str = "python-sdk") -> MuxStream:
        """Open the multiplexed stream (events and many terminals on one websocket; see
        docs/stream.md). Needs ``pip install 'dejima-sdk[ws]'``."""
        ws = connect_ws(
            path="/v1/stream?label=" + quote(label, safe=""),
            socket_path=self.socket_path,
            http_base=self.base_url,
            token=self.token,
            timeout=self.timeout if self.timeout is not None else 30.0,
        )
        return MuxStream(ws)

    def set_record(self, island: str, on: bool) -> JSON:
        """Turn recording of the island's agent sessions on or off (PATCH record)."""
        return self._call("PATCH", self._isl(island), json={"record": bool(on)})  # type: ignore[no-any-return]

    def list_recordings(self, island: str) -> List[JSON]:
        """The island's session recordings, newest first: id, agent, started_at, ended_at, bytes, active."""
        return self._call("GET", self._isl(island, "recordings"))  # type: ignore[no-any-return]

    def get_recording(self, island: str, recording: str) -> bytes:
        """One recording as asciicast v2 bytes."""
        return self._request("GET", self._isl(island, "recordings", _seg(recording)), timeout=self._slow(120)).content

    def delete_recording(self, island: str, recording: str) -> None:
        """Delete a finished recording (409 for the one being written)."""
        self._call("DELETE", self._isl(island, "recordings", _seg(recording)))

    def clients(self) -> List[JSON]:
        """Recent attach/detach records, newest first."""
        return self._call("GET", "/v1/clients")  # type: ignore[no-any-return]

    def revoke_sessions(self) -> JSON:
        """Close every attached client (agents keep running): ``{revoked: N}``."""
        return self._call("POST", "/v1/sessions/revoke")  # type: ignore[no-any-return]

    # -- host terminals ---------------------------------------------------------------------

    def list_terminals(self) -> List[JSON]:
        """Host terminals (404 unless dejimad --host-terminals)."""
        return self._call("GET", "/v1/terminals")  # type: ignore[no-any-return]

    def create_terminal(
        self,
        label: Optional[str] = None,
        command: Optional[str] = None,
        args: Optional[Sequence[str]] = None,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        cols: Optional[int] = None,
        rows: Optional[int] = None,
    ) -> JSON:
        """Start a host terminal (tmux on the daemon host)."""
        body = _compact(
            {
                "label": label,
                "command": command,
                "args": list(args) if args is not None else None,
                "cwd": cwd,
                "env": dict(env) if env is not None else None,
                "cols": cols,
                "rows": rows,
            }
        )
        return self._call("POST", "/v1/terminals", json=body or None)  # type: ignore[no-any-return]

    def relabel_terminal(self, terminal: str, label: str) -> JSON:
        """Relabel a host terminal."""
        return self._call("PATCH", "/v1/terminals/" + _seg(terminal), json={"label": label})  # type: ignore[no-any-return]

    def close_terminal(self, terminal: str) -> None:
        """Close a host terminal (its clients are closed)."""
        self._call("DELETE", "/v1/terminals/" + _seg(terminal))

    # -- events -----------------------------------------------------------------------------

    def events(self, island: str) -> List[JSON]:
        """The island's recent events, newest first."""
        return self._call("GET", self._isl(island, "events"))  # type: ignore[no-any-return]

    def event_stream(
        self,
        islands: Union[None, str, Iterable[str]] = None,
        types: Union[None, str, Iterable[str]] = None,
        replay: int = 0,
        *,
        read_timeout: Optional[float] = None,
    ) -> Stream[JSON]:
        """Live events (server-sent events) as dicts, optionally filtered by island names and
        event types, after ``replay`` recent matching ones. Close it to disconnect."""
        params = {"island": _csv(islands), "type": _csv(types), "replay": replay or None}
        return self._stream("GET", "/v1/events/stream", iter_sse, read_timeout, params=params)

    def subscribe(
        self,
        url: str,
        secret: Optional[str] = None,
        events: Optional[Sequence[str]] = None,
        islands: Optional[Sequence[str]] = None,
    ) -> JSON:
        """Subscribe a webhook (``events``/``islands`` empty: all)."""
        body = _compact(
            {
                "url": url,
                "secret": secret,
                "events": list(events) if events is not None else None,
                "islands": list(islands) if islands is not None else None,
            }
        )
        return self._call("POST", "/v1/events/subscribe", json=body)  # type: ignore[no-any-return]

    def subscriptions(self) -> List[JSON]:
        """Webhook subscriptions and their delivery state."""
        return self._call("GET", "/v1/events/subscriptions")  # type: ignore[no-any-return]

    def unsubscribe(self, subscription: str) -> None:
        """Remove a webhook (its pending deliveries are dropped)."""
        self._call("DELETE", "/v1/events/subscriptions/" + _seg(subscription))

    def post_agent_event(
        self,
        type: str,
        island: Optional[str] = None,
        agent: Optional[str] = None,
        payload: Optional[Mapping[str, Any]] = None,
    ) -> None:
        """Report an agent's state (agent.waiting-for-input, agent.task-complete,
        agent.error). ``island`` is required unless the client holds an island's token."""
        body = _compact(
            {"type": type, "island": island, "agent": agent, "payload": dict(payload) if payload is not None else None}
        )
        self._call("POST", "/v1/internal/agent-event", json=body)

    # -- audit ------------------------------------------------------------------------------

    def audit(
        self,
        format: Optional[str] = None,
        limit: Optional[int] = None,
        since: Optional[str] = None,
        until: Optional[str] = None,
        island: Optional[str] = None,
        type: Optional[str] = None,
        actor: Optional[str] = None,
        decision: Optional[str] = None,
    ) -> Union[JSON, str]:
        """The audit ledger: ``{entries, verify}`` for json (the default); the export text for
        ``format="jsonl"`` or ``"csv"``. Owner."""
        params = {
            "format": format,
            "limit": limit,
            "since": since,
            "until": until,
            "island": island,
            "type": type,
            "actor": actor,
            "decision": decision,
        }
        resp = self._request("GET", "/v1/audit", params=params, timeout=self._slow(120))
        if format in (None, "json"):
            return resp.json()  # type: ignore[no-any-return]
        return resp.content.decode("utf-8", "replace")

    def activity(
        self,
        kind: Optional[str] = None,
        limit: Optional[int] = None,
        since: Optional[str] = None,
        until: Optional[str] = None,
        island: Optional[str] = None,
        actor: Optional[str] = None,
        decision: Optional[str] = None,
    ) -> List[JSON]:
        """A newest-first timeline in words: ``[{seq, time, kind, actor, island?, decision, text}]``."""
        params = {
            "kind": kind,
            "limit": limit,
            "since": since,
            "until": until,
            "island": island,
            "actor": actor,
            "decision": decision,
        }
        return self._call("GET", "/v1/activity", params=params)  # type: ignore[no-any-return]

    # -- panic ------------------------------------------------------------------------------

    def panic_status(self) -> JSON:
        """``{panicked, reason?, since?}``."""
        return self._call("GET", "/v1/panic")  # type: ignore[no-any-return]

    def engage_panic(self, reason: Optional[str] = None) -> JSON:
        """Stop every island and revoke every session; nothing starts until cleared."""
        body = _compact({"reason": reason})
        return self._call("POST", "/v1/panic", json=body or None, timeout=self._slow())  # type: ignore[no-any-return]

    def clear_panic(self) -> JSON:
        """Clear the panic switch; islands meant to be running are woken."""
        return self._call("DELETE", "/v1/panic", timeout=self._slow())  # type: ignore[no-any-return]

    # -- tokens -----------------------------------------------------------------------------

    def list_tokens(self) -> List[JSON]:
        """Operator tokens (never their secrets)."""
        return self._call("GET", "/v1/tokens")  # type: ignore[no-any-return]

    def create_token(
        self, role: str, label: Optional[str] = None, islands: Optional[Sequence[str]] = None
    ) -> JSON:
        """A new operator token (viewer, operator or owner); its ``secret`` is only here."""
        body = _compact({"role": role, "label": label, "islands": list(islands) if islands is not None else None})
        return self._call("POST", "/v1/tokens", json=body)  # type: ignore[no-any-return]

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token at once (its sessions and streams are closed)."""
        self._call("DELETE", "/v1/tokens/" + _seg(token_id))

    # -- Port: host folders ----------------------------------------------------------------

    def list_port_scopes(self, island: str) -> List[JSON]:
        """The island's Port scopes: ``[{name, host_path, mode, granted_at}]``. Viewer, or the
        island's own token."""
        return self._call("GET", self._isl(island, "port", "scopes"))  # type: ignore[no-any-return]

    def grant_port_scope(
        self, island: str, host_path: str, mode: Optional[str] = None, name: Optional[str] = None
    ) -> JSON:
        """Grant a host folder (absolute, existing; stored canonical) to the island. ``mode``:
        "ro" (the default: intake only) or "rw" (also write). ``name`` defaults to the folder's
        basename, de-duplicated with -2, -3…; a taken explicit name is 409. Owner."""
        body = _compact({"host_path": host_path, "mode": mode, "name": name})
        return self._call("POST", self._isl(island, "port", "scopes"), json=body)  # type: ignore[no-any-return]

    def revoke_port_scope(self, island: str, scope: str) -> None:
        """Revoke a Port scope (404 when the island has none of that name). Owner."""
        self._call("DELETE", self._isl(island, "port", "scopes", _seg(scope)))

    def port_intake(
        self, island: str, scope: str, src_rel: Optional[str] = None, dest: Optional[str] = None
    ) -> JSON:
        """Copy ``<scope>/<src_rel>`` (a file or a folder; empty: the whole scope) from the host
        into the island at ``dest`` (default ``/home/agent/intake/<scope>/<src_rel>``):
        ``{scope, src_rel, dest, files, bytes, sha256, skipped, ledger_seq}``. Links inside a
        folder are left behind (``skipped``); an unknown scope or a link as ``src_rel`` is 403.
        Operator, or the island's own token."""
        body = _compact({"scope": scope, "src_rel": src_rel, "dest": dest})
        return self._call("POST", self._isl(island, "port", "intake"), json=body, timeout=self._slow())  # type: ignore[no-any-return]

    def port_export(self, island: str, src: str) -> JSON:
        """Copy the island's ``src`` (a file or folder under /workspace or /home/agent) to a new
        folder under ``$DEJIMA_HOME/port/<island>/exports/`` on the host: ``{src, host_path,
        files, bytes, sha256, skipped, ledger_seq}``. Operator, or the island's own token."""
        return self._call(  # type: ignore[no-any-return]
            "POST", self._isl(island, "port", "export"), json={"src": src}, timeout=self._slow()
        )

    def port_write(self, island: str, scope: str, src: str, dest_rel: str) -> JSON:
        """Write the island file ``src`` into the ``rw`` scope at ``dest_rel`` (atomically;
        missing folders made): ``{scope, dest_rel, host_path, bytes, sha256, ledger_seq}``. An
        ``ro`` scope is 403, a folder as ``src`` 422. Operator, or the island's own token."""
        body = {"scope": scope, "src": src, "dest_rel": dest_rel}
        return self._call("POST", self._isl(island, "port", "write"), json=body, timeout=self._slow())  # type: ignore[no-any-return]

    # -- capabilities -----------------------------------------------------------------------

    def list_capabilities(self) -> List[JSON]:
        """The targets in ``$DEJIMA_HOME/capabilities/``: ``[{target, usable, problem?}]``. Viewer."""
        return self._call("GET", "/v1/capabilities")  # type: ignore[no-any-return]

    def list_capability_grants(self, island: str) -> List[JSON]:
        """The capabilities the island may run: ``[{target, granted_at}]``. Viewer, or the
        island's own token."""
        return self._call("GET", self._isl(island, "capability", "grants"))  # type: ignore[no-any-return]

    def grant_capability(self, island: str, target: str) -> JSON:
        """Let the island run ``target`` (it need not exist yet): ``{target, granted_at}``. Operator."""
        return self._call("POST", self._isl(island, "capability", "grants"), json={"target": target})  # type: ignore[no-any-return]

    def revoke_capability(self, island: str, target: str) -> None:
        """Withdraw a capability grant (404 when there is none). Operator."""
        self._call("DELETE", self._isl(island, "capability", "grants", _seg(target)))

    def execute_capability(
        self,
        target: str,
        island: Optional[str] = None,
        agent: Optional[str] = None,
        args: Optional[Mapping[str, str]] = None,
    ) -> JSON:
        """Run a granted capability, ``args`` (string → string) as JSON on its stdin: ``{ok,
        exit_code, stdout, stderr, truncated, timed_out, ledger_seq}`` (a non-zero exit is
        still an answer, with ``ok`` false). ``island`` is required unless the client holds an
        island's token (then it is that island). Ungranted: 403."""
        body = _compact(
            {"target": target, "island": island, "agent": agent, "args": dict(args) if args is not None else None}
        )
        return self._call("POST", "/v1/capabilities/execute", json=body, timeout=self._slow(90))  # type: ignore[no-any-return]

    # -- MCP --------------------------------------------------------------------------------

    def list_mcp_servers(self) -> List[JSON]:
        """The servers in ``$DEJIMA_HOME/mcp/servers.json``: ``[{name, command, args, env_keys,
        keep_alive_secs}]`` (environment values never shown). Viewer."""
        return self._call("GET", "/v1/mcp/servers")  # type: ignore[no-any-return]

    def list_mcp_grants(self, island: str) -> List[JSON]:
        """The MCP servers the island may call: ``[{server, granted_at}]``. Viewer, or the
        island's own token."""
        return self._call("GET", self._isl(island, "mcp", "grants"))  # type: ignore[no-any-return]

    def grant_mcp(self, island: str, server: str) -> JSON:
        """Let the island call a registered MCP server (unknown: 404): ``{server, granted_at}``. Operator."""
        return self._call("POST", self._isl(island, "mcp", "grants"), json={"server": server})  # type: ignore[no-any-return]

    def revoke_mcp(self, island: str, server: str) -> None:
        """Withdraw an MCP grant (the island's server process ends). Operator."""
        self._call("DELETE", self._isl(island, "mcp", "grants", _seg(server)))

    def mcp_call(
        self,
        island: Optional[str],
        server: str,
        method: str,
        params: Optional[Mapping[str, Any]] = None,
    ) -> JSON:
        """One brokered JSON-RPC call (tools/list, tools/call, resources/list, resources/read,
        prompts/list, prompts/get; others 400) on a granted server: ``{ok, is_error, result?,
        error?, ledger_seq}``. ``island`` may be None only with an island's own token."""
        body = _compact(
            {"island": island, "server": server, "method": method, "params": dict(params) if params is not None else None}
        )
        return self._call("POST", "/v1/mcp/call", json=body, timeout=self._slow(90))  # type: ignore[no-any-return]

    # -- child islands ----------------------------------------------------------------------

    def spawn_info(self, island: str) -> JSON:
        """The island's spawn grant: ``{granted, max_children, cpus, memory, granted_at,
        children}`` (``granted`` False when it has none). Viewer, or the island's own token."""
        return self._call("GET", self._isl(island, "spawn"))  # type: ignore[no-any-return]

    def grant_spawn(
        self, island: str, max_children: int, cpus: Optional[str] = None, memory: Optional[str] = None
    ) -> JSON:
        """Let the island's token create up to ``max_children`` (1..64) child islands, each
        within the ``cpus`` / ``memory`` ceilings (empty: none). Returns the grant. Operator."""
        body = _compact({"max_children": max_children, "cpus": cpus, "memory": memory})
        return self._call("PUT", self._isl(island, "spawn"), json=body)  # type: ignore[no-any-return]

    def revoke_spawn(self, island: str) -> JSON:
        """Withdraw the spawn grant (``max_children: 0``; existing children stay). Operator."""
        return self._call("PUT", self._isl(island, "spawn"), json={"max_children": 0})  # type: ignore[no-any-return]

    # -- SSH --------------------------------------------------------------------------------

    def ssh_stream(self, island: str) -> SshStream:
        """A raw byte stream to a ``sshd -i`` started in the island for this connection (key
        authentication only, as the agent user): ``GET /v1/islands/{name}/ssh`` with
        ``Connection: Upgrade`` / ``Upgrade: dejima-ssh``, answered ``101``; from then on the
        connection carries the SSH protocol both ways (the island's banner comes first). Over
        the Unix socket or TCP (with the token). A refusal raises DejimaError (404 no such
        island, 409 not running, 403 the token may not). Operator, or the island's own token."""
        return open_ssh_stream(
            path=self._isl(island, "ssh"),
            socket_path=self.socket_path,
            http_base=self.base_url,
            token=self.token,
            user_agent=self._headers["User-Agent"],
            timeout=self.timeout,
        )

    def list_account_keys(self) -> List[JSON]:
        """The SSH keys let into every island: ``[{fingerprint, type, public_key, comment,
        added_at}]``. Owner."""
        return self._call("GET", "/v1/ssh/account-keys")  # type: ignore[no-any-return]

    def add_account_key(self, public_key: str) -> JSON:
        """Let a public key (one OpenSSH line, ``ssh-ed25519 AAAA… comment``) into every island
        from the next connection on; the key's record (a 201, or a 200 with the record it had
        when it was there already). A malformed key is 400 or 422. Owner."""
        return self._call("POST", "/v1/ssh/account-keys", json={"public_key": public_key.strip()})  # type: ignore[no-any-return]

    def remove_account_key(self, fingerprint: str) -> None:
        """Stop letting an account key in, by its fingerprint (``SHA256:…``, with or without
        the prefix); 404 when there is none. Owner."""
        self._call("DELETE", "/v1/ssh/account-keys/" + _seg(fingerprint))

    def list_island_ssh_keys(self, island: str) -> List[JSON]:
        """The SSH keys let into this island only (account keys not included). Viewer."""
        return self._call("GET", self._isl(island, "ssh", "keys"))  # type: ignore[no-any-return]

    def add_island_ssh_key(self, island: str, public_key: str) -> JSON:
        """Let a public key into this island only; the key's record (201 new, 200 when it was
        there already). A malformed key is 400 or 422. Operator."""
        return self._call("POST", self._isl(island, "ssh", "keys"), json={"public_key": public_key.strip()})  # type: ignore[no-any-return]

    def remove_island_ssh_key(self, island: str, fingerprint: str) -> None:
        """Stop letting an island key in (``SHA256:…``, with or without the prefix); 404 when
        the island has no such key. Operator."""
        self._call("DELETE", self._isl(island, "ssh", "keys", _seg(fingerprint)))

    # -- credentials ------------------------------------------------------------------------

    def claude_status(self) -> JSON:
        """Whether Claude Code's login is stored: ``{present, source?, updated_at?}``."""
        return self._call("GET", "/v1/credentials/claude")  # type: ignore[no-any-return]

    def set_claude_credentials(
        self, credentials_json: Union[str, Mapping[str, Any]], source: Optional[str] = None
    ) -> JSON:
        """Store Claude Code's login (~/.claude/.credentials.json, as an object or its JSON
        text, which is parsed here and sent as the object)."""
        creds = dict(credentials_json) if isinstance(credentials_json, Mapping) else _json.loads(credentials_json)
        body = _compact({"credentials_json": creds, "source": source})
        return self._call("PUT", "/v1/credentials/claude", json=body)  # type: ignore[no-any-return]

    def delete_claude_credentials(self) -> None:
        """Forget the stored Claude login."""
        self._call("DELETE", "/v1/credentials/claude")

    def list_github_identities(self) -> List[JSON]:
        """GitHub identities (token hints only) and their islands."""
        return self._call("GET", "/v1/credentials/github")  # type: ignore[no-any-return]

    def put_github_identity(
        self,
        name: str,
        login: str,
        token: str,
        id: Optional[int] = None,
        host: Optional[str] = None,
        api_url: Optional[str] = None,
        default: Optional[bool] = None,
    ) -> JSON:
        """Add or replace a GitHub identity."""
        body = _compact(
            {"login": login, "token": token, "id": id, "host": host, "api_url": api_url, "default": default}
        )
        return self._call("PUT", "/v1/credentials/github/" + _seg(name), json=body)  # type: ignore[no-any-return]

    def delete_github_identity(self, name: str) -> JSON:
        """Remove an identity: ``{removed, still_bound}``."""
        return self._call("DELETE", "/v1/credentials/github/" + _seg(name))  # type: ignore[no-any-return]

    def github_repos(self, name: str, page: Optional[int] = None, per_page: Optional[int] = None) -> JSON:
        """One page of the identity's repositories: ``{repos, page, per_page, next_page?}``."""
        return self._call(  # type: ignore[no-any-return]
            "GET",
            "/v1/credentials/github/" + _seg(name) + "/repos",
            params={"page": page, "per_page": per_page},
            timeout=self._slow(120),
        )

    def create_github_repo(
        self, identity: str, name: str, private: bool, description: Optional[str] = None
    ) -> JSON:
        """Create a repository owned by the identity (``private`` is required)."""
        body = _compact({"name": name, "private": private, "description": description})
        return self._call(  # type: ignore[no-any-return]
            "POST", "/v1/credentials/github/" + _seg(identity) + "/repos", json=body, timeout=self._slow(120)
        )

    def list_providers(self) -> List[JSON]:
        """Provider keys (masked hints) and the islands using each."""
        return self._call("GET", "/v1/credentials/providers")  # type: ignore[no-any-return]

    def get_provider(self, name: str) -> JSON:
        """One provider (masked)."""
        return self._call("GET", "/v1/credentials/providers/" + _seg(name))  # type: ignore[no-any-return]

    def set_provider(
        self,
        name: str,
        api_key: str,
        base_url: Optional[str] = None,
        env_var: Optional[str] = None,
        base_url_env: Optional[str] = None,
        default: Optional[bool] = None,
    ) -> JSON:
        """Set a provider's key (write-only) and where agents get it."""
        body = _compact(
            {
                "api_key": api_key,
                "base_url": base_url,
                "env_var": env_var,
                "base_url_env": base_url_env,
                "default": default,
            }
        )
        return self._call("PUT", "/v1/credentials/providers/" + _seg(name), json=body)  # type: ignore[no-any-return]

    def delete_provider(self, name: str) -> JSON:
        """Remove a provider: ``{removed, still_bound}``."""
        return self._call("DELETE", "/v1/credentials/providers/" + _seg(name))  # type: ignore[no-any-return]
