"""Websocket behaviour: sid, clientId reuse, feature flags, message order, preview frames, resync."""

from __future__ import annotations

import json
import struct
import time

import pytest

from tests.server.conftest import is_done, receive_until, wait_for, wait_history
from tests.stub_pack.server_nodes import render_prompt

METADATA_FLAGS = {
    "supports_preview_metadata": True,
    "supports_manager_v4_ui": True,
    "supports_progress_text_metadata": True,
}


def _json_types(frames: list) -> list[str]:
    return [f["type"] if isinstance(f, dict) else f"binary{struct.unpack('>I', f[:4])[0]}" for f in frames]


def test_ws_first_frame_is_status_with_sid(server):
    with server.ws() as conn:
        first = json.loads(conn.recv(timeout=5))
    assert first["type"] == "status"
    assert first["data"]["status"] == {"exec_info": {"queue_remaining": 0}}
    assert len(first["data"]["sid"]) >= 16


def test_ws_client_id_is_reused_on_reconnect(server):
    with server.ws(client_id="tab-123") as conn:
        first = json.loads(conn.recv(timeout=5))
    assert first["data"]["sid"] == "tab-123"


def test_ws_feature_flags_get_server_flags(server):
    with server.ws(flags=METADATA_FLAGS) as conn:
        frames = receive_until(conn, lambda f: f["type"] == "feature_flags", timeout=5)
    flags = frames[-1]["data"]
    assert flags["supports_preview_metadata"] is True
    assert flags["max_upload_size"] > 0
    assert "supports_progress_text_metadata" not in flags  # not implemented, so never advertised


def test_ws_events_follow_comfyui_order(server):
    with server.ws(client_id="c1", flags=METADATA_FLAGS) as conn, server.client() as http:
        receive_until(conn, lambda f: isinstance(f, dict) and f["type"] == "feature_flags")
        prompt_id = http.post(
            "/prompt", json={"prompt": render_prompt(steps=2, delay=0.1), "client_id": "c1"}
        ).json()["prompt_id"]
        frames = receive_until(conn, is_done(prompt_id))
    types = [t for t in _json_types(frames) if t != "progress_state"]
    # Previews are encoded off the sampler's thread, so one may land just after the next JSON frame;
    # they still all come after the node's first progress and before the prompt's success.
    binary = [i for i, t in enumerate(types) if t == "binary4"]
    assert len(binary) == 2
    assert types.index("progress") < binary[0] and binary[-1] < types.index("execution_success")
    assert [t for t in types if t != "binary4"] == [
        "status",  # queued
        "status",  # dequeued
        "execution_start",
        "execution_cached",
        "executing",
        "progress",
        "progress",
        "executing",
        "executed",
        "execution_success",
        "status",
        "executing",
    ]
    executed = next(f for f in frames if isinstance(f, dict) and f["type"] == "executed")
    assert executed["data"]["node"] == "2"
    assert executed["data"]["output"]["images"][0]["type"] == "output"
    states = [f["data"]["nodes"] for f in frames if isinstance(f, dict) and f["type"] == "progress_state"]
    assert states[-1]["1"]["state"] == "finished" and states[-1]["2"]["state"] == "finished"


def test_ws_preview_type4_carries_metadata_and_jpeg(server):
    with server.ws(client_id="c4", flags=METADATA_FLAGS) as conn, server.client() as http:
        receive_until(conn, lambda f: isinstance(f, dict) and f["type"] == "feature_flags")
        prompt_id = http.post("/prompt", json={"prompt": render_prompt(steps=1), "client_id": "c4"}).json()[
            "prompt_id"
        ]
        frames = receive_until(conn, is_done(prompt_id))
    frame = next(f for f in frames if isinstance(f, bytes))
    kind, length = struct.unpack(">II", frame[:8])
    meta = json.loads(frame[8 : 8 + length])
    assert kind == 4
    assert meta == {
        "node_id": "1",
        "prompt_id": prompt_id,
        "display_node_id": "1",
        "parent_node_id": None,
        "real_node_id": "1",
        "image_type": "image/jpeg",
    }
    assert frame[8 + length : 8 + length + 2] == b"\xff\xd8"


def test_ws_preview_type1_for_clients_without_metadata(server):
    with server.ws(client_id="legacy") as conn, server.client() as http:
        prompt_id = http.post(
            "/prompt",
            json={
                "prompt": render_prompt(steps=1),
                "client_id": "legacy",
                "extra_data": {"preview_method": "auto"},
            },
        ).json()["prompt_id"]
        frames = receive_until(conn, is_done(prompt_id))
    frame = next(f for f in frames if isinstance(f, bytes))
    assert struct.unpack(">II", frame[:8]) == (1, 1)
    assert frame[8:10] == b"\xff\xd8"


def test_ws_other_clients_get_only_status(server):
    with (
        server.ws(client_id="owner") as owner,
        server.ws(client_id="other") as other,
        server.client() as http,
    ):
        prompt_id = http.post(
            "/prompt", json={"prompt": render_prompt(steps=1), "client_id": "owner"}
        ).json()["prompt_id"]
        receive_until(owner, is_done(prompt_id))
        wait_history(http, prompt_id)
        frames = []
        while True:
            try:
                frames.append(json.loads(other.recv(timeout=0.5)))
            except TimeoutError:
                break
    assert {f["type"] for f in frames} == {"status"}


def test_ws_prompt_without_client_broadcasts_progress_only(server):
    with server.ws() as conn, server.client() as http:
        body = {"prompt": render_prompt(steps=2, delay=0.1), "extra_data": {"preview_method": "latent2rgb"}}
        prompt_id = http.post("/prompt", json=body).json()["prompt_id"]
        wait_history(http, prompt_id)
        frames = receive_until(
            conn,
            lambda f: (
                isinstance(f, dict)
                and f["type"] == "status"
                and f["data"]["status"]["exec_info"]["queue_remaining"] == 0
                and "sid" not in f["data"]
            ),
        )
    types = set(_json_types(frames))
    assert {"progress", "progress_state", "binary1"} <= types
    assert not types & {"executing", "executed", "execution_start", "execution_success"}


def test_ws_error_event_names_node(server):
    prompt = {
        "1": {"class_type": "StubConstant", "inputs": {"value": 2}},
        "2": {"class_type": "StubFail", "inputs": {"number": ["1", 0]}},
        "3": {"class_type": "StubShow", "inputs": {"number": ["2", 0]}},
    }
    with server.ws(client_id="e1") as conn, server.client() as http:
        prompt_id = http.post("/prompt", json={"prompt": prompt, "client_id": "e1"}).json()["prompt_id"]
        frames = receive_until(conn, is_done(prompt_id))
        entry = wait_history(http, prompt_id)
    error = next(f["data"] for f in frames if isinstance(f, dict) and f["type"] == "execution_error")
    assert error["node_id"] == "2" and error["node_type"] == "StubFail"
    assert "always fails" in error["exception_message"]
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert [m[0] for m in entry["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_error",
    ]


def test_ws_interrupt_stops_running_prompt(server):
    with server.ws(client_id="i1") as conn, server.client() as http:
        prompt_id = http.post(
            "/prompt", json={"prompt": render_prompt(steps=200, delay=0.05), "client_id": "i1"}
        ).json()["prompt_id"]
        receive_until(conn, lambda f: isinstance(f, dict) and f["type"] == "progress")
        assert http.post("/interrupt", json={"prompt_id": "someone-else"}).status_code == 200
        assert http.post("/api/interrupt").status_code == 200
        frames = receive_until(conn, is_done(prompt_id))
    assert "execution_interrupted" in _json_types(frames)


def test_ws_reconnect_resyncs_running_prompt(server):
    with server.client() as http:
        with server.ws(client_id="r1") as conn:
            prompt_id = http.post(
                "/prompt", json={"prompt": render_prompt(steps=100, delay=0.05), "client_id": "r1"}
            ).json()["prompt_id"]
            receive_until(conn, lambda f: isinstance(f, dict) and f["type"] == "progress")
        with server.ws(client_id="r1") as again:
            frames = receive_until(again, lambda f: isinstance(f, dict) and f["type"] == "progress_state")
            http.post("/interrupt")
            receive_until(again, is_done(prompt_id))
    assert frames[0]["type"] == "status" and frames[0]["data"]["sid"] == "r1"
    assert frames[1] == {
        "type": "executing",
        "data": {"node": "1", "display_node": "1", "prompt_id": prompt_id},
    }
    wait_for(lambda: server.state.worker.current is None, what="worker idle")


def test_ws_client_that_never_asked_gets_no_binary_frames(server):
    """Like ComfyUI's websocket image-save example: every binary frame would be taken for an output."""
    with server.ws(client_id="api") as conn, server.client() as http:
        body = {"prompt": render_prompt(steps=4, delay=0.05), "client_id": "api"}
        prompt_id = http.post("/prompt", json=body).json()["prompt_id"]
        frames = receive_until(conn, is_done(prompt_id))
    assert [f for f in frames if isinstance(f, bytes)] == []
    assert sum(1 for f in frames if isinstance(f, dict) and f["type"] == "progress") == 4


@pytest.mark.parametrize("how", ["flag", "query"])
def test_ws_latents_only_for_clients_that_opted_in(server, how):
    from diffgraph.stream_client import parse_latent_frame

    flags = {**METADATA_FLAGS, "diffgraph_latents": True} if how == "flag" else None
    url_id = "lat&latents=1" if how == "query" else "lat"
    with server.ws(client_id=url_id, flags=flags) as conn, server.client() as http:
        sid = json.loads(conn.recv(timeout=5))["data"]["sid"]
        body = {"prompt": render_prompt(steps=5, delay=0.02), "client_id": sid}
        prompt_id = http.post("/prompt", json=body).json()["prompt_id"]
        frames = receive_until(conn, is_done(prompt_id))
    latents = [parse_latent_frame(f) for f in frames if isinstance(f, bytes)]
    latents = [f for f in latents if f is not None]
    assert [f.step for f in latents] == [0, 1, 2, 3, 4]
    assert all(f.prompt_id == prompt_id and f.node_id == "1" and f.steps == 5 for f in latents)
    assert latents[3].latents.shape == (1, 4, 4, 4) and float(latents[3].latents[0, 0, 0, 0]) == 3.0


def test_ws_frame_sender_drops_instead_of_blocking():
    from PIL import Image

    from engine.events import PreviewImage
    from server.streams import PREVIEW_BACKLOG, FrameSender

    sender = FrameSender(hub=None, bridge=None)  # type: ignore[arg-type]
    started = time.perf_counter()
    for step in range(PREVIEW_BACKLOG + 10):
        event = PreviewImage(prompt_id="p", node_id=str(step), image=Image.new("RGB", (8, 8)))
        sender.preview(None, event, requested=True)  # nobody sends: the queue fills, then frames drop
    assert sender.dropped == 10
    assert time.perf_counter() - started < 0.5
    # Latest wins: the newest pictures wait to be sent, in order.
    waiting = [sender.previews.get_nowait()[1].node_id for _ in range(PREVIEW_BACKLOG)]
    assert waiting == [str(s) for s in range(10, PREVIEW_BACKLOG + 10)]
