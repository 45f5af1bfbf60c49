"""Custom-node packs through the server: node library, web extensions, pack list, events over the websocket."""

from __future__ import annotations

from tests.nodes.comfy_compat.conftest import PACKS, broken_packs
from tests.server.conftest import is_done, receive_until, wait_history
from tests.stub_pack.server_nodes import stub_registry


def pack_server(make_server, folders):
    from nodes.comfy_compat.loader import load_custom_nodes

    registry = stub_registry()
    load_custom_nodes(registry, [PACKS, broken_packs(folders.base)], folders.env)
    return make_server(registry=registry)


def test_server_lists_pack_nodes_extensions_and_failed_packs(make_server, folders):
    server = pack_server(make_server, folders)
    with server.client() as http:
        info = http.get("/object_info").json()
        assert info["V1Int"]["display_name"] == "V1 Integer" and "V3Countdown" in info
        scripts = http.get("/extensions").json()
        assert "/extensions/dg_test_v1/js/dg_test.js" in scripts
        script = http.get("/extensions/dg_test_v1/js/dg_test.js")
        assert script.status_code == 200 and "dgTestLoaded" in script.text
        packs = {p["name"]: p for p in http.get("/api/custom_node_packs").json()}
        assert packs["dg_test_v1"]["loaded"] and not packs["broken_pack"]["loaded"]
        assert "SyntaxError" in packs["broken_pack"]["error"]


def test_server_runs_lazy_expansion_and_blockers_with_comfyui_events(make_server, folders):
    server = pack_server(make_server, folders)
    prompt = {
        "1": {"class_type": "V1Int", "inputs": {"value": 1}},
        "2": {"class_type": "V1Int", "inputs": {"value": 2}},
        "3": {
            "class_type": "V1LazySwitch",
            "inputs": {"switch": True, "on_true": ["1", 0], "on_false": ["2", 0]},
        },
        "4": {"class_type": "V1Countdown", "inputs": {"n": 2, "acc": ["3", 0]}},
        "5": {"class_type": "V1Show", "inputs": {"value": ["4", 0]}},
        "6": {"class_type": "V1Gate", "inputs": {"value": ["1", 0], "open": False, "message": "closed"}},
        "7": {"class_type": "V1Show", "inputs": {"value": ["6", 0]}},
    }
    with server.ws(client_id="c1") as conn, server.client() as http:
        reply = http.post("/prompt", json={"prompt": prompt, "client_id": "c1"}).json()
        frames = receive_until(conn, is_done(reply["prompt_id"]))
        history = wait_history(http, reply["prompt_id"])
    events = [f for f in frames if isinstance(f, dict)]
    executing = [f["data"] for f in events if f["type"] == "executing" and f["data"]["node"]]
    assert "2" not in {e["node"] for e in executing}
    assert [e["display_node"] for e in executing if e["node"].startswith("4.")] == ["4", "4"]
    executed = [f["data"] for f in events if f["type"] == "executed"]
    assert [e["output"]["text"] for e in executed if e["node"] == "5"] == [["3"]]
    assert any(f["type"] == "dg_test.shown" for f in events)
    errors = [f["data"] for f in events if f["type"] == "execution_error"]
    assert errors[0]["exception_message"] == "Execution Blocked: closed" and errors[0]["node_id"] == "7"
    assert "execution_success" in [f["type"] for f in events]  # a blocker stops its branch, not the prompt
    assert history["outputs"]["5"]["text"] == ["3"] and "7" not in history["outputs"]


def test_server_serves_pack_http_routes_at_their_path_and_under_api(make_server, folders):
    server = pack_server(make_server, folders)
    with server.client() as http:
        for prefix in ("", "/api"):
            reply = http.get(f"{prefix}/dg_test/hello/ada?loud=yes")
            assert reply.status_code == 200 and reply.json() == {"hello": "ada", "loud": "yes"}
        echoed = http.post("/dg_test/echo", json={"a": [1, 2]})
        assert echoed.status_code == 201 and echoed.json() == {"echo": {"a": [1, 2]}}
        gone = http.get("/dg_test/missing")
        assert gone.status_code == 404 and gone.text == "nothing here"
        packs = {p["name"]: p for p in http.get("/api/custom_node_packs").json()}
        assert "GET /dg_test/hello/{name}" in packs["dg_test_v1"]["routes"]
