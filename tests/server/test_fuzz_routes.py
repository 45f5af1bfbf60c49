"""Hypothesis fuzz over every HTTP route, in-process: no generated request gets a 5xx, and the server keeps working.

The quick variant runs a few hundred requests; the slow one (CI) runs 10,000. Requests go through the
whole ASGI stack (guard middleware, routing, handlers, store, worker) without sockets.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.app import ROUTERS, create_app
from tests.server.conftest import Folders
from tests.stub_pack.server_nodes import render_prompt, stub_registry

ROUTES = [(route.path, method) for router in ROUTERS for route in router.routes for method in route.methods]
SHOW = {
    "1": {"class_type": "StubConstant", "inputs": {"value": 3}},
    "2": {"class_type": "StubShow", "inputs": {"number": ["1", 0]}},
}
HOSTILE_TEXT = st.sampled_from(
    [
        "",
        ".",
        "..",
        "../x",
        "/etc/passwd",
        "a\\b",
        "%2e%2e",
        "\x00",
        "x" * 300,
        "C:x",
        "é",
        "\ud800",
        "-1",
        "1e999",
    ]
    + [
        "NaN",
        "9" * 50,
        "true",
        "input",
        "output",
        "temp",
        "workflows",
        "a.png",
        "StubShow",
        "clipspace/x.png",
    ]
)
TEXT = HOSTILE_TEXT | st.text(max_size=20)
QUERY_NAMES = st.sampled_from(
    ["filename", "subfolder", "type", "max_items", "offset", "limit", "status", "dir", "recurse", "full_info"]
    + ["split", "path", "preview", "channel", "overwrite", "clientId", "token", "prompt_id"]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=16,
)
RAW_BODIES = st.sampled_from(
    [b"", b"NaN", b"[" * 3000, b'{"prompt": {"1": 5}, "number": "inf"}', b"\xff\xfe\x00", b'{"a": 1e999}']
    + [b'{"prompt": ' + json.dumps(SHOW).encode() + b', "number": Infinity}', b'"\\udc00"', b"9" * 5000]
)


def _prompt_bodies() -> st.SearchStrategy[Any]:
    node = st.fixed_dictionaries(
        {"class_type": st.sampled_from(["StubConstant", "StubShow", "StubRender", "Nope"]) | TEXT},
        optional={"inputs": st.dictionaries(TEXT, JSON_VALUES, max_size=3), "_meta": JSON_VALUES},
    )
    prompt = st.dictionaries(TEXT, node | JSON_VALUES, max_size=3) | st.just(SHOW) | JSON_VALUES
    return st.fixed_dictionaries(
        {"prompt": prompt},
        optional={
            "number": JSON_VALUES,
            "front": JSON_VALUES,
            "client_id": JSON_VALUES,
            "prompt_id": JSON_VALUES,
            "extra_data": JSON_VALUES,
            "partial_execution_targets": JSON_VALUES,
        },
    )


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """One generated request: route, filled path, query, headers and a body of some kind."""
    path, method = draw(st.sampled_from(ROUTES))
    path = re.sub(r"\{[^}]+\}", lambda _: quote(draw(TEXT).encode("utf-8", "surrogatepass"), safe=""), path)
    if draw(st.booleans()):
        path = "/api" + path
    query = draw(st.dictionaries(QUERY_NAMES, TEXT, max_size=4))
    query = {k: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for k, v in query.items()}
    request: dict[str, Any] = {"method": method, "url": path, "params": query}
    if method != "GET":
        kind = draw(st.sampled_from(["json", "raw", "prompt", "multipart"]))
        if kind == "json":
            request["content"] = json.dumps(draw(JSON_VALUES)).encode()
        elif kind == "raw":
            request["content"] = draw(RAW_BODIES | st.binary(max_size=64))
        elif kind == "prompt":
            request["content"] = json.dumps(draw(_prompt_bodies())).encode()
        else:
            name = draw(TEXT).encode("utf-8", "replace").decode("utf-8")
            fields = draw(
                st.dictionaries(st.sampled_from(["type", "subfolder", "overwrite", "original_ref"]), TEXT)
            )
            request["files"] = {"image": (name or "x", draw(st.binary(max_size=32)), "image/png")}
            request["data"] = {k: v.encode("utf-8", "replace").decode("utf-8") for k, v in fields.items()}
    return request


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    """The stub server's app behind an in-process client (lifespan, worker and all)."""
    folders = Folders(tmp_path)
    app = create_app(stub_registry(), folders.env, settings=folders.settings(max_text_length=10_000))
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as test_client:
        yield test_client


def _fuzz(client: TestClient, examples: int) -> None:
    failures: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests())
    def one(request: dict[str, Any]) -> None:
        response = client.request(**request)
        if response.status_code >= 500:
            failures.append(
                f"{request['method']} {request['url']} -> {response.status_code}: {response.text[:200]}"
            )
        assert response.status_code < 500, failures[-1]

    one()
    assert not failures
    _still_runs(client)


def _still_runs(client: TestClient) -> None:
    assert client.post("/queue", json={"clear": True}).status_code == 200
    client.post("/interrupt")
    prompt_id = client.post("/prompt", json={"prompt": render_prompt(steps=1)}).json()["prompt_id"]
    deadline = time.monotonic() + 60
    while not client.get(f"/history/{prompt_id}").json():
        assert time.monotonic() < deadline, "a valid prompt did not finish after the fuzz"
        time.sleep(0.05)
    assert client.get(f"/history/{prompt_id}").json()[prompt_id]["status"]["completed"] is True
    assert client.get("/history").status_code == 200 and client.get("/api/jobs").status_code == 200


def test_fuzz_routes_never_answer_5xx(client):
    _fuzz(client, 300)


@pytest.mark.slow
def test_fuzz_routes_ten_thousand_requests(client):
    _fuzz(client, 10_000)
