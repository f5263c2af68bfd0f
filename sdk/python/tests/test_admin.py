"""Owner surfaces: audit, activity, credentials, host terminals, image builds."""

import json
import time
from typing import Any, Dict

import pytest
from conftest import RUN, Sink, type_and_wait

import dejima


def test_audit_and_activity(client: dejima.Client, island: str) -> None:
    client.set_title(island, "audited")
    a = client.audit(limit=20)
    assert isinstance(a, dict) and a["verify"]["ok"] is True
    assert any(e.get("route") == "/v1/islands/{name}" and e.get("method") == "PATCH" for e in a["entries"])
    jl = client.audit(format="jsonl", limit=3, island=island)
    assert isinstance(jl, str)
    rows = [json.loads(line) for line in jl.splitlines() if line]
    assert 1 <= len(rows) <= 3 and all(r["island"] == island for r in rows)
    csv = client.audit(format="csv", limit=2, decision="allowed")
    assert isinstance(csv, str) and csv.splitlines()[0].startswith("seq,")
    act = client.activity(limit=5, island=island)
    assert 1 <= len(act) <= 5 and all("text" in x for x in act)
    with pytest.raises(dejima.DejimaError) as e:
        client.audit(format="xml")
    assert e.value.status == 400


def test_providers(client: dejima.Client) -> None:
    name = f"{RUN}-prov"[:40]
    p = client.set_provider(name, api_key="sk-sdk-test-0000000000000000", env_var="SDK_TEST_KEY", base_url="http://127.0.0.1:9/v1", base_url_env="SDK_TEST_BASE_URL")
    try:
        assert p["name"] == name and p["env_var"] == "SDK_TEST_KEY"
        assert "sk-sdk-test-0000000000000000" not in json.dumps(p)
        assert client.get_provider(name)["base_url"] == "http://127.0.0.1:9/v1"
        assert name in [x["name"] for x in client.list_providers()]
    finally:
        removed = client.delete_provider(name)
    assert removed["removed"] == name and removed["still_bound"] == []
    with pytest.raises(dejima.DejimaError) as e:
        client.get_provider(name)
    assert e.value.status == 404


def test_github_identity_against_a_stand_in(client: dejima.Client, http_sink: Sink) -> None:
    repo: Dict[str, Any] = {"name": "r1", "full_name": "sdk/r1", "private": True, "clone_url": "https://x/sdk/r1.git"}
    http_sink.routes[("GET", "/user/repos")] = (200, [repo], {"Link": f'<{http_sink.url}/user/repos?page=2>; rel="next"'})
    http_sink.routes[("POST", "/user/repos")] = lambda r: (201, {**repo, **json.loads(r["body"]), "full_name": "sdk/made"}, {})
    name = f"{RUN}-gh"[:40]
    g = client.put_github_identity(name, login="sdk", token="ghp_sdktest0000", api_url=http_sink.url)
    try:
        assert g["name"] == name and g["login"] == "sdk" and "ghp_sdktest0000" not in json.dumps(g)
        assert name in [x["name"] for x in client.list_github_identities()]
        page = client.github_repos(name, page=1, per_page=5)
        assert page["repos"][0]["full_name"] == "sdk/r1" and page["next_page"] == 2
        seen = http_sink.wait_for(lambda r: r["method"] == "GET")
        assert "per_page=5" in seen["path"] and seen["headers"]["Authorization"] == "Bearer ghp_sdktest0000"
        made = client.create_github_repo(name, "made", private=False, description="by the SDK tests")
        assert made["full_name"] == "sdk/made"
        sent = json.loads(http_sink.wait_for(lambda r: r["method"] == "POST")["body"])
        assert sent == {"name": "made", "private": False, "description": "by the SDK tests"}
    finally:
        removed = client.delete_github_identity(name)
    assert removed["removed"] == name
    with pytest.raises(dejima.DejimaError) as e:
        client.delete_github_identity(name)
    assert e.value.status == 404


def test_claude_credentials(client: dejima.Client, private_daemon: None) -> None:
    before = client.claude_status()
    if before["present"]:
        pytest.skip("a Claude login is stored on this daemon; not replacing it")
    st = client.set_claude_credentials({"claudeAiOauth": {"accessToken": "sdk-test"}})
    assert st["present"] is True and st.get("source") == "api"
    assert client.claude_status()["present"] is True
    client.delete_claude_credentials()
    assert client.claude_status()["present"] is False
    assert client.set_claude_credentials('{"claudeAiOauth": {"accessToken": "sdk-text"}}')["present"] is True
    client.delete_claude_credentials()
    assert client.claude_status()["present"] is False


def test_host_terminals(client: dejima.Client) -> None:
    try:
        terms = client.list_terminals()
    except dejima.DejimaError as e:
        # The daemon runs without --host-terminals: every terminal route is a 404.
        assert e.status == 404, e
        for call in (
            lambda: client.create_terminal(label="x"),
            lambda: client.relabel_terminal("t1", "x"),
            lambda: client.close_terminal("t1"),
            lambda: client.attach_terminal("t1"),
        ):
            with pytest.raises(dejima.DejimaError) as err:
                call()
            assert err.value.status == 404
        return
    assert isinstance(terms, list)
    t = client.create_terminal(label="sdk-term", command="bash", args=["--norc"], cwd="/tmp", rows=24, cols=80)
    try:
        assert t["label"] == "sdk-term" and t["id"] in [x["id"] for x in client.list_terminals()]
        assert client.relabel_terminal(t["id"], "sdk-term-2")["label"] == "sdk-term-2"
        with client.attach_terminal(t["id"], label="sdk-host") as s:
            assert "sdk-host" in [c["label"] for c in s.attached]
            type_and_wait(s)
            s.send("exit\r")  # the terminal's program ends: an exit frame, then None
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and s.recv(timeout=1) is not None:
                pass
            assert s.exited and s.recv() is None
        assert next(x for x in client.list_terminals() if x["id"] == t["id"])["status"] == "exited"
    finally:
        client.close_terminal(t["id"])
    assert t["id"] not in [x["id"] for x in client.list_terminals()]


def test_image_build_streams_its_output(client: dejima.Client) -> None:
    # A base that is not a valid image reference fails at once, without the network, and
    # touches no image: the build's output and its last line still stream back.
    lines = list(client.image_build(tag=f"dejima/{RUN}:never", base="pysdk/INVALID::base", slim=True))
    assert len(lines) >= 2
    assert lines[-1].startswith("error:")
