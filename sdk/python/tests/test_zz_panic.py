"""The panic switch (daemon-wide: stops every island), so it runs last and on a private daemon."""

import pytest
from conftest import RUN, wait_until

import dejima


def test_panic(client: dejima.Client, island: str, private_daemon: None) -> None:
    assert client.panic_status()["panicked"] is False
    p = client.engage_panic(reason="sdk test")
    try:
        assert p["panicked"] is True and p["reason"] == "sdk test" and p["stopped"] >= 1
        assert client.panic_status()["panicked"] is True
        with pytest.raises(dejima.DejimaError) as e:
            client.create_island(name=f"{RUN}-during-panic", no_repo=True, agent="custom", cmd="bash")
        assert e.value.status == 409 and "panic" in e.value.message
    finally:
        cleared = client.clear_panic()
    assert cleared["panicked"] is False
    # The island meant to be running comes back.
    wait_until(lambda: client.exec(island, ["true"])["exit_code"] == 0, timeout=60, what="the island to wake")
