"""Brokers: Port (host folders), capabilities, MCP servers and the spawn grant.

The daemon runs on this host with DEJIMA_HOME as its home: the tests make host folders the
daemon can read, a capability in $DEJIMA_HOME/capabilities/ and an MCP server entry in
$DEJIMA_HOME/mcp/servers.json (both removed or restored after).
"""

import hashlib
import json
import os
import shutil
from typing import Iterator

import pytest
from conftest import RUN, SOCKET_HOME, SOCKET_PATH, TCP, marker

import dejima

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
EVERYTHING = os.path.join(
    REPO, "tests", "mcp", "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js"
)


def need_home() -> str:
    if not SOCKET_HOME or not os.path.isdir(SOCKET_HOME):
        pytest.skip("set DEJIMA_HOME to the daemon's home (on this host) to test the brokers")
    return SOCKET_HOME


def status_of(call) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(dejima.DejimaError) as e:
        call()
    assert e.value.status is not None
    return e.value.status


def island_client(client: dejima.Client, island: str) -> dejima.Client:
    """A client holding the island's own token (its agents' DEJIMA_TOKEN), pinned to it."""
    tok = client.exec(island, ["cat", "/run/secrets/dejima/token"])["stdout"].strip()
    assert tok, "the island has no token"
    if TCP:
        return dejima.Client(host=TCP, token=tok)
    return dejima.Client(socket=SOCKET_PATH, token=tok)


@pytest.fixture
def capability() -> Iterator[str]:
    """``$DEJIMA_HOME/capabilities/echo-args``: prints the JSON of its args (its stdin)."""
    home = need_home()
    folder = os.path.join(home, "capabilities")
    os.makedirs(folder, exist_ok=True)
    target = "echo-args"
    path = os.path.join(folder, target)
    with open(path, "w", encoding="utf-8") as f:
        f.write("#!/bin/sh\ncat\n")
    os.chmod(path, 0o700)
    try:
        yield target
    finally:
        os.remove(path)


@pytest.fixture
def mcp_server() -> Iterator[str]:
    """``everything`` (the reference MCP server, over stdio) registered in servers.json; the
    file is restored (or removed) after."""
    home = need_home()
    node = shutil.which("node")
    if node is None or not os.path.exists(EVERYTHING):
        pytest.skip(f"needs node and {EVERYTHING} (scripts/setup runs npm ci in tests/mcp)")
    folder = os.path.join(home, "mcp")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "servers.json")
    before = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            before = f.read()
    doc = json.loads(before) if before else {"servers": {}}
    doc["servers"]["everything"] = {"command": os.path.abspath(node), "args": [EVERYTHING, "stdio"]}
    tmp = path + f".{RUN}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(tmp, path)
    try:
        yield "everything"
    finally:
        if before is None:
            os.remove(path)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(before)
            os.replace(tmp, path)


def test_port_scopes_intake_export_write(client: dejima.Client, island: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    need_home()
    host = tmp_path / "port-src"
    (host / "sub").mkdir(parents=True)
    content = f"from the host {marker()}\n".encode()
    (host / "hello.txt").write_bytes(content)
    (host / "sub" / "b.txt").write_bytes(b"bee")
    real = os.path.realpath(str(host))
    rw_name = f"{RUN}-rw"

    rw = client.grant_port_scope(island, str(host), mode="rw", name=rw_name)
    ro = client.grant_port_scope(island, str(host))
    try:
        assert rw["name"] == rw_name and rw["mode"] == "rw" and rw["host_path"] == real and rw["granted_at"]
        assert ro["name"] == "port-src" and ro["mode"] == "ro"
        assert status_of(lambda: client.grant_port_scope(island, str(host), name=rw_name)) == 409
        listed = {s["name"]: s for s in client.list_port_scopes(island)}
        assert listed[rw_name]["mode"] == "rw" and listed["port-src"]["host_path"] == real

        # Intake of one file, to the default place.
        got = client.port_intake(island, rw_name, src_rel="hello.txt")
        assert got["dest"] == f"/home/agent/intake/{rw_name}/hello.txt"
        assert got["files"] == 1 and got["bytes"] == len(content) and got["skipped"] == []
        assert got["sha256"] == hashlib.sha256(content).hexdigest() and got["ledger_seq"] > 0
        assert client.exec(island, ["cat", got["dest"]])["stdout"] == content.decode()
        # The whole scope (a folder), to a chosen place.
        got = client.port_intake(island, "port-src", dest="/workspace/port-in")
        assert got["dest"] == "/workspace/port-in" and got["files"] == 2
        assert client.exec(island, ["cat", "/workspace/port-in/sub/b.txt"])["stdout"] == "bee"

        # Export: an island file lands in the island's export area on the host.
        nonce = marker()
        client.exec(island, f"mkdir -p /workspace/out && printf 'export {nonce}' > /workspace/out/x.txt")
        ex = client.port_export(island, "/workspace/out/x.txt")
        assert ex["src"] == "/workspace/out/x.txt" and ex["files"] == 1
        assert ex["host_path"].startswith(os.path.join(os.path.realpath(SOCKET_HOME), "port", island, "exports") + "/")
        with open(ex["host_path"], "rb") as f:
            assert f.read() == f"export {nonce}".encode()

        # Write: an island file into the rw scope (folders made); an ro scope is 403.
        client.exec(island, f"printf 'written {nonce}' > /workspace/out/w.txt")
        w = client.port_write(island, rw_name, "/workspace/out/w.txt", "deep/er/w.txt")
        assert w["scope"] == rw_name and w["dest_rel"] == "deep/er/w.txt"
        assert w["host_path"] == os.path.join(real, "deep", "er", "w.txt")
        assert (host / "deep" / "er" / "w.txt").read_bytes() == f"written {nonce}".encode()
        assert w["sha256"] == hashlib.sha256(f"written {nonce}".encode()).hexdigest()
        assert status_of(lambda: client.port_write(island, "port-src", "/workspace/out/w.txt", "no.txt")) == 403
        assert not (host / "no.txt").exists()

        # An unknown scope is refused.
        assert status_of(lambda: client.port_intake(island, f"{RUN}-nope")) == 403
    finally:
        client.revoke_port_scope(island, rw_name)
        client.revoke_port_scope(island, "port-src")
    assert client.list_port_scopes(island) == []
    assert status_of(lambda: client.revoke_port_scope(island, rw_name)) == 404
    assert status_of(lambda: client.port_intake(island, rw_name, src_rel="hello.txt")) == 403


def test_capabilities(client: dejima.Client, island: str, capability: str) -> None:
    listed = {c["target"]: c for c in client.list_capabilities()}
    assert listed[capability]["usable"] is True and "problem" not in listed[capability]
    assert status_of(lambda: client.execute_capability(capability, island=island, args={"x": "1"})) == 403

    g = client.grant_capability(island, capability)
    try:
        assert g["target"] == capability and g["granted_at"]
        assert [x["target"] for x in client.list_capability_grants(island)] == [capability]
        r = client.execute_capability(capability, island=island, agent="a1", args={"x": "1"})
        assert r["ok"] is True and r["exit_code"] == 0, r
        assert '"x":"1"' in r["stdout"]
        assert r["timed_out"] is False and r["truncated"] is False and r["ledger_seq"] > 0
        assert status_of(lambda: client.execute_capability(capability, island=island, args={"x": 1})) == 400  # type: ignore[dict-item]
        assert status_of(lambda: client.execute_capability(capability, args={"x": "1"})) == 422  # an operator names it
        # The island's own token: the island is implied.
        with island_client(client, island) as own:
            assert [x["target"] for x in own.list_capability_grants(island)] == [capability]
            r = own.execute_capability(capability, args={"y": "2"})
            assert r["ok"] is True and '"y":"2"' in r["stdout"]
            assert status_of(lambda: own.execute_capability(capability, island=f"{RUN}-other")) == 403
            assert status_of(lambda: own.grant_capability(island, "other-target")) == 403
    finally:
        client.revoke_capability(island, capability)
    assert client.list_capability_grants(island) == []
    assert status_of(lambda: client.execute_capability(capability, island=island, args={"x": "1"})) == 403
    assert status_of(lambda: client.revoke_capability(island, capability)) == 404


def test_mcp(client: dejima.Client, island: str, mcp_server: str) -> None:
    servers = {s["name"]: s for s in client.list_mcp_servers()}
    ev = servers[mcp_server]
    assert ev["command"] == os.path.abspath(shutil.which("node") or "") and ev["args"] == [EVERYTHING, "stdio"]
    assert ev["env_keys"] == [] and isinstance(ev["keep_alive_secs"], int)
    assert status_of(lambda: client.mcp_call(island, mcp_server, "tools/list")) == 403
    assert status_of(lambda: client.grant_mcp(island, f"{RUN}-unregistered")) == 422

    g = client.grant_mcp(island, mcp_server)
    try:
        assert g["server"] == mcp_server and g["granted_at"]
        assert [x["server"] for x in client.list_mcp_grants(island)] == [mcp_server]
        r = client.mcp_call(island, mcp_server, "tools/call", {"name": "echo", "arguments": {"message": "hi"}})
        assert r["ok"] is True and r["is_error"] is False, r
        assert r["result"]["content"][0]["text"] == "Echo: hi"
        tools = client.mcp_call(island, mcp_server, "tools/list")
        assert "echo" in [t["name"] for t in tools["result"]["tools"]]
        assert status_of(lambda: client.mcp_call(island, mcp_server, "sampling/createMessage", {})) == 400
    finally:
        client.revoke_mcp(island, mcp_server)
    assert client.list_mcp_grants(island) == []
    assert status_of(lambda: client.mcp_call(island, mcp_server, "tools/list")) == 403
    assert status_of(lambda: client.revoke_mcp(island, mcp_server)) == 404


def test_spawn_grant(client: dejima.Client, island: str) -> None:
    assert client.spawn_info(island)["granted"] is False
    g = client.grant_spawn(island, max_children=1)
    try:
        assert g["max_children"] == 1 and g["children"] == [] and g["granted_at"]
        assert client.spawn_info(island)["max_children"] == 1
        g = client.grant_spawn(island, 2, cpus="1.5", memory="1G")
        assert (g["max_children"], g["cpus"], g["memory"]) == (2, "1.5", "1G")
        assert status_of(lambda: client.grant_spawn(island, 65)) == 400
    finally:
        client.revoke_spawn(island)
    info = client.spawn_info(island)
    assert (info["granted"], info["max_children"], info["granted_at"]) == (False, 0, None)
    assert client.revoke_spawn(island)["granted"] is False  # again: still none
