"""The `status` broadcast under a burst: few frames, the latest queue size, never after a prompt's frames."""

from __future__ import annotations

import asyncio
import json

from server.hub import STATUS_BURST, STATUS_INTERVAL_S, Client, Hub


def _frames(client: Client) -> list[dict]:
    frames = []
    while not client.outbox.empty():
        frames.append(json.loads(client.outbox.get_nowait()))
    return frames


def _hub_with(*names: str) -> tuple[Hub, list[Client]]:
    hub = Hub({})
    clients = [Client(name, ws=None) for name in names]  # type: ignore[arg-type]
    for client in clients:
        hub.clients[client.sid] = client
    return hub, clients


def test_hub_status_burst_sends_few_frames_and_ends_on_the_latest_size():
    async def burst() -> list[dict]:
        hub, (watcher,) = _hub_with("watcher")
        for size in range(1, 201):
            hub.status(size)
        await asyncio.sleep(STATUS_INTERVAL_S * 3)
        return _frames(watcher)

    frames = asyncio.run(burst())
    sizes = [f["data"]["status"]["exec_info"]["queue_remaining"] for f in frames]
    assert len(sizes) <= STATUS_BURST + 1  # 200 changes, not 200 frames
    assert sizes[-1] == 200


def test_hub_status_changes_one_at_a_time_each_get_a_frame():
    async def quiet() -> list[int]:
        hub, (watcher,) = _hub_with("watcher")
        for size in (1, 1, 0):  # queued, started, finished: what ComfyUI sends for one prompt
            hub.status(size)
        await asyncio.sleep(0)
        return [f["data"]["status"]["exec_info"]["queue_remaining"] for f in _frames(watcher)]

    assert asyncio.run(quiet()) == [1, 1, 0]


def test_hub_deferred_status_reaches_the_owner_before_its_prompt_starts():
    async def run() -> tuple[list[dict], list[dict]]:
        hub, (owner, other) = _hub_with("owner", "other")
        for size in range(1, 51):
            hub.status(size)
        _frames(owner), _frames(other)  # the immediate frames; the latest size is still owed
        hub.start("p1", "owner")
        hub.emit("execution_start", {"prompt_id": "p1", "timestamp": 0}, "owner")
        owner_frames = _frames(owner)
        await asyncio.sleep(STATUS_INTERVAL_S * 2)
        return owner_frames + _frames(owner), _frames(other)

    owner_frames, other_frames = asyncio.run(run())
    assert [f["type"] for f in owner_frames] == ["status", "execution_start"]
    assert owner_frames[0]["data"]["status"]["exec_info"]["queue_remaining"] == 50
    assert [f["data"]["status"]["exec_info"]["queue_remaining"] for f in other_frames] == [50]
