"""Events: per-island history, the SSE stream, agent events, webhooks."""

import json
import threading
import time

import pytest
from conftest import Sink, wait_until

import dejima


def test_island_events(client: dejima.Client, island: str) -> None:
    evs = client.events(island)
    assert evs and all(e["island"] == island for e in evs)
    assert "island.created" in {e["type"] for e in evs} or len(evs) >= 50


def test_event_stream_and_agent_event(client: dejima.Client, island: str) -> None:
    with client.event_stream(islands=[island], types="agent.task-complete,agent.error") as st:
        client.post_agent_event("agent.task-complete", island=island, agent="a1", payload={"n": 42})
        timer = threading.Timer(20, st.close)  # a deadline, not a synchronisation
        timer.start()
        try:
            ev = next(st)
        finally:
            timer.cancel()
        assert ev["type"] == "agent.task-complete" and ev["island"] == island
        assert ev["payload"]["n"] == 42 and ev["id"]
    assert st.closed
    state = client.get_agent(island, "a1")["agent_state"]
    assert state["latest"] in ("agent.task-complete", "task-complete")

    # replay: the same event again, from the bus's memory
    with client.event_stream(islands=island, types=["agent.task-complete"], replay=5) as st:
        ev2 = next(st)
        assert ev2["type"] == "agent.task-complete" and ev2["island"] == island

    with pytest.raises(dejima.DejimaError) as e:
        client.post_agent_event("agent.not-a-type", island=island)
    assert e.value.status == 400


def test_close_unblocks_a_waiting_stream(client: dejima.Client, island: str) -> None:
    st = client.event_stream(islands=[island], types=["daemon.panic-cleared"])
    threading.Timer(0.3, st.close).start()
    t0 = time.monotonic()
    with pytest.raises(StopIteration):
        next(st)
    assert time.monotonic() - t0 < 10


def test_webhook(client: dejima.Client, island: str, http_sink: Sink) -> None:
    sub = client.subscribe(
        http_sink.url + "/hook", secret="sdk-test-secret", events=["agent.waiting-for-input"], islands=[island]
    )
    try:
        assert sub["url"] == http_sink.url + "/hook" and sub["id"]
        assert sub["id"] in [s["id"] for s in client.subscriptions()]
        client.post_agent_event("waiting-for-input", island=island, agent="a1")
        req = http_sink.wait_for(lambda r: r["path"] == "/hook")
        assert req["headers"]["X-Dejima-Event"] == "agent.waiting-for-input"
        assert req["headers"]["X-Dejima-Signature"].startswith("sha256=")
        body = json.loads(req["body"])
        assert body["type"] == "agent.waiting-for-input" and body["island"] == island
        wait_until(
            lambda: next(s for s in client.subscriptions() if s["id"] == sub["id"]).get("delivered", 0) >= 1,
            what="the delivery count",
        )
    finally:
        client.unsubscribe(sub["id"])
    assert sub["id"] not in [s["id"] for s in client.subscriptions()]
    with pytest.raises(dejima.DejimaError) as e:
        client.unsubscribe(sub["id"])
    assert e.value.status == 404
