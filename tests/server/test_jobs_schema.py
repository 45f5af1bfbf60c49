"""The jobs API checked against the schemas of the installed web client, for every state a job reaches."""

from __future__ import annotations

import sqlite3

import pytest

from server.store import JobStore
from tests.server import client_schema
from tests.server.conftest import wait_for, wait_history
from tests.stub_pack.server_nodes import render_prompt

pytestmark = pytest.mark.skipif(
    client_schema.static_root() is None, reason="comfyui-frontend-package is not installed"
)

FAIL_PROMPT = {
    "1": {"class_type": "StubConstant", "inputs": {"value": 1}},
    "2": {"class_type": "StubFail", "inputs": {"number": ["1", 0]}},
    "3": {"class_type": "StubShow", "inputs": {"number": ["2", 0]}},
}
ALL = "pending,in_progress,completed,failed,cancelled"


def _conforms(http, statuses: str = ALL) -> dict[str, dict]:
    """Every job of the list and detail routes, asserted to parse with the client's own schemas."""
    listing = http.get("/api/jobs", params={"status": statuses, "limit": 200, "offset": 0}).json()
    bare = http.get("/api/jobs").json()  # no limit given: the pagination still carries numbers
    for body in (listing, bare):
        assert client_schema.problems(body, client_schema.resolve("zJobsListResponse")) == []
    detail_spec = client_schema.resolve("zJobDetail")
    for job in listing["jobs"]:
        detail = http.get(f"/api/jobs/{job['id']}").json()
        assert client_schema.problems(detail, detail_spec) == [], job["id"]
    return {job["id"]: job for job in listing["jobs"]}


def test_client_schema_reader_finds_required_fields():
    spec = client_schema.resolve("zJobsListResponse")
    item = spec.fields["jobs"].items
    assert item is not None
    required = {name for name, child in item.fields.items() if not child.optional}
    assert {"id", "status", "create_time"} <= required
    error = item.fields["execution_error"]
    assert {"exception_message", "exception_type", "traceback"} <= {
        name for name, child in error.fields.items() if not child.optional
    }
    # the checker can fail: an error without exception fields is what emptied the history panel
    bad = {
        "jobs": [{"id": "x", "status": "cancelled", "create_time": 1, "execution_error": {"node_id": "1"}}]
    }
    assert client_schema.problems({**bad, "pagination": {}}, spec)


@pytest.mark.slow
def test_jobs_every_state_parses_with_client_schema(server):
    with server.client() as http:
        http.post("/prompt", json={"prompt": render_prompt(), "prompt_id": "done"})
        wait_history(http, "done")
        http.post("/prompt", json={"prompt": FAIL_PROMPT, "prompt_id": "failed"})
        wait_history(http, "failed")
        http.post(
            "/prompt", json={"prompt": render_prompt(seed=2, steps=500, delay=0.02), "prompt_id": "run"}
        )
        wait_for(lambda: http.get("/queue").json()["queue_running"], what="running prompt")
        http.post("/prompt", json={"prompt": render_prompt(seed=3), "prompt_id": "waiting"})
        live = _conforms(http)
        assert live["run"]["status"] == "in_progress" and live["waiting"]["status"] == "pending"
        http.post("/api/jobs/run/cancel")
        wait_history(http, "run")
        wait_history(http, "waiting")
        done = _conforms(http)
    assert done["done"]["status"] == "completed"
    assert done["failed"]["status"] == "failed"
    assert "always fails" in done["failed"]["execution_error"]["exception_message"]
    cancelled = done["run"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["execution_error"]["node_id"] == "1"
    assert cancelled["execution_error"]["exception_type"] == "InterruptProcessingException"


def test_jobs_stopped_by_restart_or_engine_failure_parse(make_server, folders):
    settings = folders.settings()
    store = JobStore(settings.database)
    store.enqueue("crashed", render_prompt(), {}, ["2"], None)
    store.enqueue("broken", render_prompt(seed=5), {}, ["2"], None)
    store.close()
    with sqlite3.connect(settings.database) as conn:  # as a kill -9 mid-run leaves it
        conn.execute("UPDATE jobs SET state = 'running' WHERE id = 'crashed'")
    # Without re-queueing (--no-requeue) a prompt running at a crash ends failed at the next start.
    store = JobStore(settings.database, requeue=False)
    assert store.recovered == ["crashed"]
    job = store.wait_next(1.0)
    assert job is not None and job.id == "broken"
    engine_error = {"prompt_id": "broken", "node_id": None, "node_type": None, "exception_message": "boom"}
    store.finish("broken", "error", {}, [["execution_error", engine_error]], engine_error)
    store.close()
    server = make_server()
    with server.client() as http:
        jobs = _conforms(http)
    assert jobs["crashed"]["status"] == "failed"
    assert "server stopped" in jobs["crashed"]["execution_error"]["exception_message"]
    assert jobs["broken"]["execution_error"]["node_id"] == ""
