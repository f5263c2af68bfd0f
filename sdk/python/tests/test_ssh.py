"""SSH: island keys, account keys and the raw ``dejima-ssh`` byte stream to the island's sshd.

Keys are made with the host's ssh-keygen; the fingerprints the daemon reports are compared
with what ``ssh-keygen -l -E sha256`` prints.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Tuple

import pytest
from conftest import RUN, SOCKET_PATH, TCP

import dejima

Key = Tuple[str, str, str]  # (public key line, SHA256:… fingerprint, private key file)


def make_key(folder: Path, name: str) -> Key:
    """A new ed25519 key pair in ``folder``: its public line, ssh-keygen's fingerprint and the
    private key's file.
    A few are made until one's fingerprint has a "/" (or "+"), so the percent-encoding of the
    fingerprint in a path is exercised too."""
    if shutil.which("ssh-keygen") is None:
        pytest.fail("ssh-keygen is needed (openssh-client)")
    for i in range(16):
        key = folder / f"{name}-{i}"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{RUN}-{name}", "-f", str(key)], check=True
        )
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"], check=True, capture_output=True, text=True
        ).stdout
        fp = out.split()[1]
        if "/" in fp or "+" in fp or i == 15:
            return (Path(f"{key}.pub").read_text().strip(), fp, str(key))
    raise AssertionError("unreachable")


def status_of(call) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(dejima.DejimaError) as e:
        call()
    assert e.value.status is not None, e.value
    return e.value.status


def read_banner(s: dejima.SshStream) -> bytes:
    """What the stream brings until the end of sshd's first line (its banner)."""
    s.settimeout(30)
    got = b""
    while b"\r\n" not in got and len(got) < 4096:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


@pytest.fixture
def operator_token(client: dejima.Client) -> Iterator[str]:
    tok = client.create_token("operator", label=f"{RUN}-ssh-op")
    secret = str(tok.pop("secret"))
    try:
        yield secret
    finally:
        client.revoke_token(tok["id"])


def test_island_ssh_keys(client: dejima.Client, island: str, tmp_path: Path) -> None:
    pub, fp, _ = make_key(tmp_path, "island")
    assert client.list_island_ssh_keys(island) == []
    k = client.add_island_ssh_key(island, pub + "\n")  # a .pub file's text, newline and all
    try:
        assert k["fingerprint"] == fp, (k, fp)
        assert k["type"] == "ssh-ed25519" and k["comment"] == f"{RUN}-island" and k["added_at"]
        assert k["public_key"] == " ".join(pub.split()[:2])
        assert client.list_island_ssh_keys(island) == [k]
        # Again: the same record, answered 200 (not 201), and ledgered once.
        assert client.add_island_ssh_key(island, pub) == k
        again = client._request("POST", client._isl(island, "ssh", "keys"), json={"public_key": pub})
        assert again.status_code == 200 and again.json() == k
        added = client.audit(type="ssh.key.added", island=island)["entries"]  # type: ignore[index]
        assert [e["detail"]["fingerprint"] for e in added] == [fp]
        # Malformed keys.
        for bad in ("not a key", "ssh-ed25519 !!!notbase64", "ssh-ed25519 AAAA", "ssh-dss AAAAB3NzaC1kc3M="):
            assert status_of(lambda: client.add_island_ssh_key(island, bad)) in (400, 422), bad
        assert status_of(lambda: client.list_island_ssh_keys(f"{RUN}-missing")) == 404
        assert status_of(lambda: client.add_island_ssh_key(f"{RUN}-missing", pub)) == 404
    finally:
        client.remove_island_ssh_key(island, fp)
    assert client.list_island_ssh_keys(island) == []
    assert status_of(lambda: client.remove_island_ssh_key(island, fp)) == 404
    # Without the SHA256: prefix it is the same key.
    client.add_island_ssh_key(island, pub)
    client.remove_island_ssh_key(island, fp.split(":", 1)[1])
    assert client.list_island_ssh_keys(island) == []


def test_ssh_stream_unix(unix_client: dejima.Client, island: str, tmp_path: Path) -> None:
    pub, fp, _ = make_key(tmp_path, "stream")
    unix_client.add_island_ssh_key(island, pub)
    try:
        with unix_client.ssh_stream(island) as s:
            assert isinstance(s, dejima.SshStream)
            banner = read_banner(s)  # sshd speaks first
            assert banner.startswith(b"SSH-2.0-OpenSSH"), banner
        assert s.closed
    finally:
        unix_client.remove_island_ssh_key(island, fp)


def test_ssh_stream_tcp_with_a_token(
    client: dejima.Client, tcp_client: dejima.Client, island: str, operator_token: str
) -> None:
    op = dejima.Client(host=TCP, token=operator_token)
    s = op.ssh_stream(island)
    try:
        s.sendall(b"SSH-2.0-dejima_sdk_test\r\n")
        banner = read_banner(s)
        assert banner.startswith(b"SSH-2.0-OpenSSH"), banner
        # Both ways: after our banner, sshd's key exchange offer (SSH_MSG_KEXINIT, 20) follows.
        rest = banner.split(b"\r\n", 1)[1]
        while len(rest) < 6:
            chunk = s.recv(4096)
            assert chunk, f"the stream ended after {rest!r}"
            rest += chunk
        assert rest[5] == 20, rest[:16]
        s.shutdown_write()
    finally:
        s.close()
    op.close()


# A ProxyCommand made of the SDK: stdin to the stream, the stream to stdout (the island from
# argv, the daemon and token from DEJIMA_HOST / DEJIMA_TOKEN).
PIPE = """
import sys, threading, dejima
s = dejima.Client().ssh_stream(sys.argv[1])
def up():
    while True:
        b = sys.stdin.buffer.raw.read(65536)
        if not b:
            break
        s.sendall(b)
    s.shutdown_write()
threading.Thread(target=up, daemon=True).start()
while True:
    b = s.recv(65536)
    if not b:
        break
    sys.stdout.buffer.write(b)
    sys.stdout.buffer.flush()
"""


def test_real_ssh_through_ssh_stream(client: dejima.Client, island: str, tmp_path: Path) -> None:
    """OpenSSH's own client logs in with an island key through ssh_stream as its ProxyCommand,
    and without a key that is let in it is refused."""
    if shutil.which("ssh") is None:
        pytest.fail("ssh is needed (openssh-client)")
    pub, fp, key = make_key(tmp_path, "login")
    pipe = tmp_path / "pipe.py"
    pipe.write_text(PIPE)
    here = os.path.dirname(os.path.abspath(dejima.__file__))
    env = dict(os.environ, DEJIMA_HOST="unix:" + SOCKET_PATH, DEJIMA_TOKEN="")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(here)] + [p for p in [os.environ.get("PYTHONPATH")] if p])

    def ssh(*cmd: str) -> "subprocess.CompletedProcess[str]":
        argv = ["ssh", "-F", "/dev/null", "-o", f"ProxyCommand={sys.executable} {pipe} %h", "-o", "BatchMode=yes"]
        argv += ["-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}"]
        argv += ["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=30", "-i", key, f"agent@{island}", *cmd]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=90)

    refused = ssh("true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused
    client.add_island_ssh_key(island, pub)
    try:
        r = ssh("echo", "SSH-$((6*7))", "&&", "id", "-un")
        assert r.returncode == 0, r
        assert r.stdout == "SSH-42\nagent\n", r
    finally:
        client.remove_island_ssh_key(island, fp)


def test_ssh_stream_refusals(client: dejima.Client, tcp_client: dejima.Client, island: str, tmp_path: Path) -> None:
    assert status_of(lambda: client.ssh_stream(f"{RUN}-missing")) == 404
    # A viewer may not open it.
    tok = client.create_token("viewer", label=f"{RUN}-ssh-viewer")
    try:
        viewer = dejima.Client(host=TCP, token=tok.pop("secret"))
        with pytest.raises(dejima.DejimaError) as e:
            viewer.ssh_stream(island)
        assert e.value.status == 403 and e.value.message and e.value.path == f"/v1/islands/{island}/ssh"
        assert viewer.list_island_ssh_keys(island) == []  # but may list the keys
    finally:
        client.revoke_token(tok["id"])
    # A plain request (no upgrade headers) is a 400 that says what to send.
    with pytest.raises(dejima.DejimaError) as e:
        client._call("GET", client._isl(island, "ssh"))
    assert e.value.status == 400 and "Upgrade" in e.value.message
    # No daemon there.
    with pytest.raises(dejima.DejimaConnectionError):
        dejima.Client(socket=str(tmp_path / "no.sock")).ssh_stream(island)


def test_account_keys(unix_client: dejima.Client, tmp_path: Path) -> None:
    c = unix_client  # the owner
    pub, fp, _ = make_key(tmp_path, "account")
    before = c.list_account_keys()
    k = c.add_account_key(pub)
    try:
        assert k["fingerprint"] == fp and k["type"] == "ssh-ed25519" and k["comment"] == f"{RUN}-account"
        listed = [x for x in c.list_account_keys() if x["fingerprint"] == fp]
        assert listed == [k]
        assert c.add_account_key(pub) == k
        again = c._request("POST", "/v1/ssh/account-keys", json={"public_key": pub})
        assert again.status_code == 200 and again.json() == k
        assert status_of(lambda: c.add_account_key("ssh-ed25519")) in (400, 422)
    finally:
        c.remove_account_key(fp)
    assert c.list_account_keys() == before
    assert status_of(lambda: c.remove_account_key(fp)) == 404
    # Without the prefix.
    c.add_account_key(pub)
    c.remove_account_key(fp.split(":", 1)[1])
    assert fp not in [x["fingerprint"] for x in c.list_account_keys()]
