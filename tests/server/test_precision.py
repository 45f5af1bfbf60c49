"""Precision per prompt through the HTTP API: extra_data picks it, the cache keeps precisions apart."""

from __future__ import annotations

from typing import Any

import pytest

from engine import Input, Node, NodeInputs, NodeOutputs, Output, Registry
from tests.server.conftest import is_done, receive_until
from tests.stub_pack.server_nodes import NODES
from tests.stub_pack.types import Number


class StubPrecision(Node):
    """Shows the precision its run was asked for (as a model loader would pass it on)."""

    class_type = "StubPrecision"
    category = "stub/math"
    output_node = True

    class Inputs(NodeInputs):
        number: Number = Input(description="anything upstream")

    class Outputs(NodeOutputs):
        number: Number = Output()

    def run(self, ctx: Any, inputs: Any) -> Any:
        ctx.set_ui({"text": [ctx.precision]})
        return self.Outputs(number=inputs.number)


PROMPT = {
    "1": {"class_type": "StubConstant", "inputs": {"value": 2}},
    "2": {"class_type": "StubPrecision", "inputs": {"number": ["1", 0]}},
}


@pytest.fixture
def precision_server(make_server):
    return make_server(Registry([*NODES, StubPrecision]))


def _run(live, extra: dict[str, Any] | None = None) -> tuple[list[str], list[list[str]]]:
    """Submit PROMPT; returns (the precision node's UI text, execution_cached node lists)."""
    body: dict[str, Any] = {"prompt": PROMPT, "client_id": "prec"}
    if extra is not None:
        body["extra_data"] = extra
    with live.ws("prec") as conn, live.client() as http:
        conn.recv(timeout=10)
        reply = http.post("/prompt", json=body)
        assert reply.status_code == 200, reply.text
        pid = reply.json()["prompt_id"]
        frames = receive_until(conn, is_done(pid))
        history = http.get(f"/history/{pid}").json()[pid]
    cached = [f["data"]["nodes"] for f in frames if isinstance(f, dict) and f["type"] == "execution_cached"]
    return history["outputs"]["2"]["text"], cached


def test_prompt_without_precision_runs_at_the_server_default(precision_server, monkeypatch):
    monkeypatch.delenv("DIFFGRAPH_PRECISION", raising=False)
    assert _run(precision_server)[0] == ["exact"]


def test_prompt_extra_data_asks_for_fast_and_never_reuses_exact_results(precision_server, monkeypatch):
    monkeypatch.delenv("DIFFGRAPH_PRECISION", raising=False)
    assert _run(precision_server) == (["exact"], [[]])
    # Same graph, other precision: nothing may come from the exact run's cache.
    assert _run(precision_server, {"diffgraph_precision": "fast"}) == (["fast"], [[]])
    # Each precision reuses its own results.
    assert _run(precision_server, {"diffgraph_precision": "fast"}) == (["fast"], [["1", "2"]])
    assert _run(precision_server, {"diffgraph_precision": "exact"}) == (["exact"], [["1", "2"]])


def test_server_default_fast_applies_to_comfyui_clients(precision_server, monkeypatch):
    # `diffgraph serve --precision fast` sets this variable for the process.
    monkeypatch.setenv("DIFFGRAPH_PRECISION", "fast")
    assert _run(precision_server)[0] == ["fast"]
    assert _run(precision_server, {"diffgraph_precision": "exact"}) == (["exact"], [[]])


@pytest.mark.parametrize("value", ["turbo", 3])
def test_prompt_unknown_precision_is_refused_before_queueing(precision_server, value):
    with precision_server.client() as http:
        reply = http.post("/prompt", json={"prompt": PROMPT, "extra_data": {"diffgraph_precision": value}})
        queue = http.get("/queue").json()
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_precision"
    assert "exact, fast" in reply.json()["error"]["message"]
    assert queue["queue_pending"] == [] and queue["queue_running"] == []
