"""Islands, exec, files and logs."""

import gc
import io
import os

import pytest
from conftest import RUN, marker, wait_until

import dejima


def test_daemon_basics(client: dejima.Client) -> None:
    h = client.healthz()
    assert h["ok"] is True and h["status"] == "ok"
    assert client.version() == h["version"] == dejima.__version__
    ov = client.overview()
    assert isinstance(ov["total_islands"], int) and "docker_reachable" in ov
    assert ov["runtime"] == {"kind": "docker", "unsupported": []}
    r = client.readyz()
    assert r["ready"] is True and r["image"]
    text = client.metrics()
    assert "# TYPE dejima_http_requests_total counter" in text
    assert 'dejima_http_requests_total{route="/v1/readyz",method="GET",status="200"}' in text
    doc = client.doctor()
    assert doc["ok"] is True and any(c["name"] == "engine" and c["status"] == "ok" for c in doc["checks"])
    assert client.doctor_fix()["fixed"] == []
    with pytest.raises(dejima.DejimaError) as e:
        client.update()  # this test daemon has no update source
    assert e.value.status == 409 and "update source" in str(e.value)
    types = {t["type"] for t in client.agent_types()}
    assert {"claude-code", "codex", "custom", "headless"} <= types


def test_list_and_get(client: dejima.Client, island: str) -> None:
    names = [i["name"] for i in client.list_islands()]
    assert island in names
    info = client.get_island(island)
    assert info["name"] == island and info["agent"] == "custom"
    assert info["state"] == "running"
    assert info["agents"][0]["id"] == "a1"
    assert client.workspace_ready(island)["ready"] is True


def test_title_and_resources(client: dejima.Client, island: str) -> None:
    assert client.set_title(island, "SDK test island")["title"] == "SDK test island"
    assert client.get_island(island)["title"] == "SDK test island"
    r = client.set_resources(island, memory="1G", oom_priority=3)
    assert r["resources"]["memory"] == "1G" and r["resources"]["oom_priority"] == 3
    assert client.get_island(island)["resources"]["memory"] == "1G"


def test_exec(client: dejima.Client, island: str) -> None:
    r = client.exec(island, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert r == {"stdout": "out\n", "stderr": "err\n", "exit_code": 3}
    r = client.exec(
        island, "cat; echo \" $FOO\"; pwd; id -un", stdin="in", env={"FOO": "bar"}, workdir="/tmp", user="root"
    )
    assert r["stdout"] == "in bar\n/tmp\nroot\n" and r["exit_code"] == 0
    r = client.exec(island, ["sleep", "30"], timeout_secs=1)
    assert r["exit_code"] == 124 and r.get("timed_out") is True


def test_files_round_trip(client: dejima.Client, island: str) -> None:
    blob = os.urandom(200_000) + b"\x00end"
    client.write_file(island, "/workspace/sdk dir/blob.bin", blob)
    assert client.read_file(island, "/workspace/sdk dir/blob.bin") == blob
    # a str, a file object, a path without its leading slash
    client.write_file(island, "workspace/t.txt", "héllo\n")
    assert client.read_file(island, "/workspace/t.txt") == "héllo\n".encode()
    client.write_file(island, "/home/agent/f.bin", io.BytesIO(b"from a file object"))
    assert client.exec(island, ["cat", "/home/agent/f.bin"])["stdout"] == "from a file object"
    with pytest.raises(dejima.DejimaError) as e:
        client.read_file(island, "/etc/passwd")
    assert e.value.status == 403
    with pytest.raises(dejima.DejimaError) as e:
        client.read_file(island, "/workspace/no-such-file")
    assert e.value.status == 404


def test_logs(client: dejima.Client, island: str) -> None:
    text = client.logs(island)
    assert f"dejima island {island} up" in text
    assert client.logs(island, tail=1).count("\n") <= 1
    with client.logs(island, follow=True, tail="all") as lines:
        first = next(lines)
        assert isinstance(first, str) and first
    assert lines.closed
    # A dropped stream closes its connection.
    s = client.logs(island, follow=True)
    raw = s.response.raw
    del s
    gc.collect()
    assert raw.closed


def test_lifecycle(client: dejima.Client, make_island) -> None:  # type: ignore[no-untyped-def]
    name = make_island("life")["name"]
    client.write_file(name, "/workspace/keep.txt", b"kept")
    client.write_file(name, "/home/agent/gone.txt", b"gone")

    h = client.hibernate(name)
    assert h["state"] == "hibernated"
    assert client.get_island(name)["state"] == "hibernated"
    with pytest.raises(dejima.DejimaError) as e:
        client.exec(name, ["true"])
    assert e.value.status == 409
    w = client.wake(name)
    assert w["state"] == "running"
    assert client.exec(name, ["cat", "/workspace/keep.txt"])["stdout"] == "kept"

    client.reset(name)
    assert client.exec(name, ["cat", "/workspace/keep.txt"])["stdout"] == "kept"
    assert client.exec(name, ["test", "-e", "/home/agent/gone.txt"])["exit_code"] != 0

    u = client.upgrade(name)
    assert u["name"] == name and u["state"] == "running"
    assert client.exec(name, ["cat", "/workspace/keep.txt"])["stdout"] == "kept"

    with pytest.raises(dejima.DejimaError) as e:
        client.reclone(name)  # not made from a git URL
    assert e.value.status == 409

    copy = f"{RUN}-copy"
    try:
        c = client.clone_island(name, copy)
        assert c["name"] == copy
        assert client.exec(copy, ["cat", "/workspace/keep.txt"])["stdout"] == "kept"
    finally:
        client.purge_island(copy, force=True)

    with pytest.raises(dejima.DejimaError) as e:
        client.purge_island(name)  # an uncommitted file in the workspace
    assert e.value.status == 409
    client.purge_island(name, force=True)
    assert name not in [i["name"] for i in client.list_islands()]
    with pytest.raises(dejima.DejimaError) as e:
        client.get_island(name)
    assert e.value.status == 404


def test_errors(client: dejima.Client, island: str) -> None:
    with pytest.raises(dejima.DejimaError) as e:
        client.get_island(f"{RUN}-missing")
    assert e.value.status == 404 and "not found" in e.value.message
    with pytest.raises(dejima.DejimaError) as e:
        client.exec(f"{RUN}-missing", ["true"])
    assert e.value.status == 404
    with pytest.raises(dejima.DejimaError) as e:
        client.create_island(name="Not A Valid Name", no_repo=True)
    assert e.value.status == 400
    with pytest.raises(dejima.DejimaError) as e:
        client.create_island(name=f"{RUN}-x", no_repo=True, no_such_field=1)
    assert e.value.status == 400 and "unknown field" in e.value.message
    with pytest.raises(dejima.DejimaError) as e:
        client.exec(island, [])
    assert e.value.status == 400
    assert isinstance(e.value, Exception) and str(e.value).startswith("HTTP 400")


def test_unreachable_daemon(tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = dejima.Client(socket=str(tmp_path / "nothing.sock"))
    with pytest.raises(dejima.DejimaConnectionError) as e:
        c.healthz()
    assert e.value.status is None
    assert isinstance(e.value, dejima.DejimaError)


def test_names_cannot_escape_their_route(client: dejima.Client) -> None:
    # "../tokens" is sent as one percent-encoded segment: an invalid island name, not /v1/tokens.
    with pytest.raises(dejima.DejimaError) as e:
        client.get_island("../tokens")
    assert e.value.status in (400, 404)


def test_create_island_sends_given_fields(client: dejima.Client, make_island) -> None:  # type: ignore[no-untyped-def]
    info = make_island("fields", title="Titled", tags={"suite": "sdk"}, owner="sdk-tests", role="test")
    assert info["title"] == "Titled" and info["tags"] == {"suite": "sdk"}
    assert info["owner"] == "sdk-tests" and info["role"] == "test"
    got = wait_until(lambda: client.get_island(info["name"]), what="the new island")
    assert got["tags"]["suite"] == "sdk"
    nonce = marker()
    assert client.exec(info["name"], ["echo", nonce])["stdout"] == nonce + "\n"
