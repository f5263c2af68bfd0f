"""Transports and tokens: the Unix socket, TCP, operator and viewer tokens, the environment."""

import os
from typing import Callable, Iterator, List

import pytest
from conftest import SOCKET_PATH, TCP, type_and_wait

import dejima


@pytest.fixture
def token_for(client: dejima.Client) -> Iterator[Callable[[str], str]]:
    """A token secret of a role: $DEJIMA_TEST_TOKEN_<ROLE>, else one minted (and revoked after)."""
    minted: List[str] = []

    def get(role: str) -> str:
        env = os.environ.get(f"DEJIMA_TEST_TOKEN_{role.upper()}")
        if env:
            return env
        tok = client.create_token(role, label=f"sdk-test-{role}")
        secret = tok.pop("secret")  # never shown by an assertion
        assert secret.startswith("djo_") and tok["role"] == role
        minted.append(tok["id"])
        return str(secret)

    yield get
    for tid in minted:
        try:
            client.revoke_token(tid)
        except dejima.DejimaError as e:
            if e.status != 404:
                raise


def test_host_forms(unix_client: dejima.Client, tcp_client: dejima.Client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert dejima.Client(host="unix:" + SOCKET_PATH, token="").healthz()["ok"]
    assert dejima.Client(host="http://" + TCP + "/", token=tcp_client.token or "").healthz()["ok"]
    if tcp_client.token:
        monkeypatch.setenv("DEJIMA_TOKEN", tcp_client.token)
    else:
        monkeypatch.delenv("DEJIMA_TOKEN", raising=False)
    monkeypatch.setenv("DEJIMA_HOST", "unix:" + SOCKET_PATH)
    c = dejima.Client(token="")
    assert c.socket_path == SOCKET_PATH and c.healthz()["ok"]
    monkeypatch.delenv("DEJIMA_HOST")
    monkeypatch.setenv("DEJIMA_HOME", os.path.dirname(SOCKET_PATH))
    c = dejima.Client(token="")
    assert c.socket_path == SOCKET_PATH and c.list_islands() is not None
    monkeypatch.setenv("DEJIMA_HOST", TCP)
    c = dejima.Client()
    assert c.socket_path is None and c.base_url == "http://" + TCP and c.list_islands() is not None


def test_tokens(client: dejima.Client) -> None:
    tok = client.create_token("viewer", label="sdk-list-test")
    tok.pop("secret")
    try:
        listed = [t for t in client.list_tokens() if t["id"] == tok["id"]]
        assert listed and listed[0]["role"] == "viewer" and listed[0]["label"] == "sdk-list-test"
        assert all("secret" not in t for t in client.list_tokens())
    finally:
        client.revoke_token(tok["id"])
    assert tok["id"] not in [t["id"] for t in client.list_tokens()]
    with pytest.raises(dejima.DejimaError) as e:
        client.revoke_token(tok["id"])
    assert e.value.status == 404
    with pytest.raises(dejima.DejimaError) as e:
        client.create_token("superuser")
    assert e.value.status == 400


def test_operator_token_over_tcp(tcp_client: dejima.Client, island: str, token_for) -> None:  # type: ignore[no-untyped-def]
    op = dejima.Client(host=TCP, token=token_for("operator"))
    assert "(token)" in repr(op) and "djo_" not in repr(op)
    assert op.exec(island, ["echo", "as-operator"])["stdout"] == "as-operator\n"
    op.write_file(island, "/workspace/op.txt", b"op")
    assert op.read_file(island, "/workspace/op.txt") == b"op"
    with op.attach(island, label="sdk-operator") as s:  # the token goes on the websocket too
        type_and_wait(s)
    with pytest.raises(dejima.DejimaError) as e:
        op.list_tokens()  # owner only
    assert e.value.status == 403


def test_viewer_token_is_read_only(tcp_client: dejima.Client, island: str, token_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DEJIMA_HOST", TCP)
    monkeypatch.setenv("DEJIMA_TOKEN", token_for("viewer"))
    v = dejima.Client()  # both from the environment
    assert island in [i["name"] for i in v.list_islands()]
    assert v.get_island(island)["name"] == island
    for call in (
        lambda: v.set_title(island, "nope"),
        lambda: v.exec(island, ["true"]),
        lambda: v.write_file(island, "/workspace/v.txt", b"v"),
    ):
        with pytest.raises(dejima.DejimaError) as e:
            call()
        assert e.value.status == 403, e.value
    # A viewer may watch: its session is an observer's (read-only in presence).
    with v.attach(island, label="sdk-viewer") as s:
        assert any(c["label"] == "sdk-viewer" and c["read_only"] for c in s.attached)
    with pytest.raises(dejima.DejimaError) as e:
        v.metrics()  # operator
    assert e.value.status == 403
    assert v.readyz()["ready"] is True  # any role


def test_revoked_token_is_refused(client: dejima.Client, tcp_client: dejima.Client) -> None:
    tok = client.create_token("viewer", label="sdk-revoke")
    secret = tok.pop("secret")
    c = dejima.Client(host=TCP, token=secret)
    assert c.list_islands() is not None
    client.revoke_token(tok["id"])
    with pytest.raises(dejima.DejimaError) as e:
        c.list_islands()
    assert e.value.status == 401
