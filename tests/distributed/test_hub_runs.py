"""The websocket hub with several prompts running at once (prompts on a pool of workers)."""

from __future__ import annotations

import json

from server.hub import Client, Hub


def drain(client: Client) -> list[dict]:
    """JSON frames queued for a client."""
    frames = []
    while not client.outbox.empty():
        frames.append(json.loads(client.outbox.get_nowait()))
    return frames


def test_hub_resyncs_each_client_with_its_own_running_prompt():
    hub = Hub({})
    hub.start("p1", "alice")
    hub.start("p2", "bob")
    hub.emit("executing", {"node": "3", "display_node": "3", "prompt_id": "p1"}, "alice")
    hub.emit("executing", {"node": "7", "display_node": "7", "prompt_id": "p2"}, "bob")
    alice, bob = Client("alice", ws=None), Client("bob", ws=None)  # type: ignore[arg-type]
    hub._resync(alice)
    hub._resync(bob)
    assert [f["data"]["prompt_id"] for f in drain(alice)] == ["p1"]
    assert [f["data"]["node"] for f in drain(bob)] == ["7"]
    hub.stop("p2")
    assert hub.running is not None and hub.running.prompt_id == "p1"
    hub.stop("p1")
    assert hub.running is None and not hub.runs
