"""Agents: add, list, get, relabel, configure, restart, remove, headless logs."""

import pytest
from conftest import type_and_wait, wait_until

import dejima


def test_agent_lifecycle(client: dejima.Client, island: str) -> None:
    a = client.add_agent(island, type="custom", label="helper")
    aid = a["id"]
    assert aid != "a1" and a["label"] == "helper" and a["branch"] == f"agent/{aid}"
    assert aid in [x["id"] for x in client.list_agents(island)]
    assert client.get_agent(island, aid)["label"] == "helper"

    assert client.relabel_agent(island, aid, "renamed")["label"] == "renamed"
    assert client.get_agent(island, aid)["label"] == "renamed"

    cfg = client.configure_agent(island, aid, model="sdk-model")
    assert cfg["model"] == "sdk-model" and cfg.get("restart_required") is True
    r = client.restart_agent(island, aid)
    assert r["id"] == aid and r["model"] == "sdk-model"
    with pytest.raises(dejima.DejimaError) as e:
        client.restart_agent(island, aid, resume=True)  # a custom agent cannot resume
    assert e.value.status == 422
    assert client.configure_agent(island, aid, model="").get("model") in (None, "")

    with client.attach(island, agent=aid, label="agent-attach") as s:
        assert "agent-attach" in [c["label"] for c in s.attached]
        type_and_wait(s)

    client.remove_agent(island, aid)
    assert aid not in [x["id"] for x in client.list_agents(island)]
    with pytest.raises(dejima.DejimaError) as e:
        client.get_agent(island, aid)
    assert e.value.status == 404
    with pytest.raises(dejima.DejimaError) as e:
        client.remove_agent(island, "a1")  # the primary stays
    assert e.value.status == 409


def test_headless_agent_logs(client: dejima.Client, island: str) -> None:
    a = client.add_agent(island, type="headless", cmd="while true; do echo tick-$((40+2)); sleep 0.2; done")
    aid = a["id"]
    try:
        assert a["attachable"] is False
        wait_until(lambda: "tick-42" in client.logs(island, agent=aid), what="the headless agent's log")
        with client.logs(island, follow=True, agent=aid, tail=1) as lines:
            for line in lines:
                if line == "tick-42":
                    break
        with pytest.raises(dejima.DejimaError) as e:
            client.attach(island, agent=aid)
        assert e.value.status == 409
        with pytest.raises(dejima.DejimaError) as e:
            client.logs(island, agent="a1")  # interactive: attach instead
        assert e.value.status == 409
    finally:
        client.remove_agent(island, aid)
