"""Regression tests for requests that used to brick or crash the server: each must get a 4xx and leave it working."""

from __future__ import annotations

import io
import logging
import sqlite3
import time

import pytest
from PIL import Image

from server.security import TokenRedactor
from tests.server.conftest import is_done, receive_until, wait_for, wait_history
from tests.stub_pack.server_nodes import render_prompt

SHOW = {
    "1": {"class_type": "StubConstant", "inputs": {"value": 3}},
    "2": {"class_type": "StubShow", "inputs": {"number": ["1", 0]}},
}


def _raw_prompt(http, text: str):
    return http.post("/prompt", content=text.encode("utf-8", "surrogatepass"))


def _still_works(http) -> None:
    """History and jobs answer, and a valid prompt still runs to success."""
    assert http.get("/history").status_code == 200
    assert http.get("/api/jobs").status_code == 200
    prompt_id = http.post("/prompt", json={"prompt": SHOW}).json()["prompt_id"]
    assert wait_history(http, prompt_id)["status"]["completed"] is True


@pytest.mark.parametrize(
    "number", ['"inf"', "1e999", "-1e999", "NaN", "Infinity", '"-inf"', '"nan"', "1e300", '"x"']
)
def test_prompt_non_finite_number_is_400_and_server_keeps_working(make_server, number):
    first = make_server()
    with first.client() as http:
        response = _raw_prompt(
            http, f'{{"prompt": {{"1": {{"class_type": "StubConstant"}}}}, "number": {number}}}'
        )
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_prompt"
        assert http.get("/queue").json()["queue_pending"] == []
    first.stop()
    with make_server().client() as http:  # a restart over the same database
        _still_works(http)


@pytest.mark.parametrize(
    "body",
    [
        '{"prompt": %s, "extra_data": {"x": NaN}}',
        '{"prompt": %s, "extra_data": {"extra_pnginfo": {"workflow": {"v": Infinity}}}}',
        '{"prompt": %s, "extra_data": {"t": "\\ud800"}}',
        '{"prompt": %s, "client_id": "\\udfff"}',
    ],
)
def test_prompt_with_nan_or_bad_text_anywhere_is_400(server, body):
    import json

    with server.client() as http:
        response = _raw_prompt(http, body % json.dumps(SHOW))
        assert response.status_code == 400 and "error" in response.json()
        _still_works(http)


def test_prompt_nan_in_meta_and_unreachable_node_is_400(server):
    with server.client() as http:
        text = (
            '{"prompt": {"1": {"class_type": "StubConstant", "inputs": {"value": 3}, "_meta": {"t": NaN}},'
            ' "2": {"class_type": "StubShow", "inputs": {"number": ["1", 0]}},'
            ' "9": {"class_type": "StubConstant", "inputs": {"value": -Infinity}}}}'
        )
        assert _raw_prompt(http, text).status_code == 400
        _still_works(http)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"prompt": {"1": {"class_type": "StubConstant", "inputs": {"value": ' + "9" * 4000 + "}}}}",
        '{"prompt": ' + '{"a":' * 500 + "1" + "}" * 500 + "}",
    ],
    ids=["deep-list", "4000-digit-int", "deep-object"],
)
def test_prompt_hostile_json_is_400_json(server, text):
    with server.client() as http:
        response = _raw_prompt(http, text)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_prompt"


def test_prompt_invalid_utf8_is_400(server):
    with server.client() as http:
        response = http.post("/prompt", content=b'{"prompt": {"1": "\xff\xfe"}}')
        assert response.status_code == 400 and "UTF-8" in response.json()["error"]["message"]


def test_prompt_text_over_the_limit_is_refused_with_the_node(make_server):
    with make_server(max_text_length=1000).client() as http:
        prompt = render_prompt(prefix="x" * 5000)
        response = http.post("/prompt", json={"prompt": prompt})
        assert response.status_code == 400
        error = response.json()["node_errors"]["2"]["errors"][0]
        assert error["type"] == "value_too_long" and error["extra_info"]["input_name"] == "filename_prefix"
        assert http.get("/queue").json()["queue_pending"] == []


def test_worker_survives_a_store_that_fails_to_record_a_result(server, monkeypatch):
    store = server.state.store
    real_finish = store.finish
    calls = []

    def full_disk(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(store, "finish", full_disk)
    with server.client() as http:
        first = http.post("/prompt", json={"prompt": SHOW}).json()["prompt_id"]
        wait_for(lambda: calls, what="the failing finish")
        second = http.post("/prompt", json={"prompt": SHOW}).json()["prompt_id"]
        assert wait_history(http, second)["status"]["completed"] is True
        assert http.get("/queue").json()["queue_running"] == []
    assert first in calls


def test_worker_survives_an_unreadable_pending_row(server):
    store = server.state.store
    with server.client() as http:
        blocker = http.post("/prompt", json={"prompt": render_prompt(steps=20, delay=0.05)}).json()[
            "prompt_id"
        ]
        wait_for(lambda: http.get("/queue").json()["queue_running"], what="blocker running")
        bad = http.post("/prompt", json={"prompt": SHOW}).json()["prompt_id"]
        with store._lock:  # corrupt the pending row the way a torn write or an old bug would
            store._conn.execute("UPDATE jobs SET prompt = '{oops' WHERE id = ?", (bad,))
        good = http.post("/prompt", json={"prompt": SHOW}).json()["prompt_id"]
        assert wait_history(http, good)["status"]["completed"] is True
        assert wait_history(http, blocker)["status"]["completed"] is True
        assert http.get("/history").status_code == 200
    assert [q["id"] for q in store.quarantined()] == [bad]


def test_post_prompt_does_not_wait_for_the_running_prompt(server):
    with server.client() as http:
        http.post("/prompt", json={"prompt": render_prompt(steps=200, delay=0.05)})
        wait_for(lambda: http.get("/queue").json()["queue_running"], what="long prompt running")
        started = time.monotonic()
        for _ in range(10):
            assert http.post("/prompt", json={"prompt": SHOW}).status_code == 200
        assert time.monotonic() - started < 5.0
        http.post("/interrupt")


@pytest.mark.parametrize("value", ["\u00b2", "--5", "\u0665"])
def test_history_integer_parameters_refuse_non_ascii_digits(server, value):
    with server.client() as http:
        response = http.get("/history", params={"max_items": value})
    assert response.status_code == 400
    assert response.json()["error"]["type"]


@pytest.mark.parametrize("filename", [".", "..", "./", "x/.."])
@pytest.mark.parametrize("overwrite", ["false", "true"])
def test_upload_dot_names_write_nothing_outside_input(server, folders, filename, overwrite):
    before = sorted(p.name for p in folders.base.iterdir())
    with server.client() as http:
        response = http.post(
            "/upload/image", files={"image": (filename, b"x", "image/png")}, data={"overwrite": overwrite}
        )
    assert response.status_code in (400, 403)
    assert sorted(p.name for p in folders.base.iterdir()) == before
    assert not [p for p in folders.base.rglob("*") if p.name.startswith((".upload", "input ("))]


LONG = "a" * 300


@pytest.mark.parametrize(
    ("method", "url", "kwargs"),
    [
        ("get", "/view", {"params": {"filename": LONG + ".png"}}),
        ("get", "/view", {"params": {"filename": "x.png", "subfolder": LONG}}),
        ("post", "/upload/image", {"files": {"image": (LONG + ".png", b"x", "image/png")}}),
        ("post", f"/userdata/{LONG}.json", {"content": b"{}"}),
        ("get", f"/userdata/{LONG}.json", {}),
        ("get", "/userdata", {"params": {"dir": LONG}}),
    ],
)
def test_names_over_255_bytes_are_400(server, method, url, kwargs):
    with server.client() as http:
        response = getattr(http, method)(url, **kwargs)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "path_refused"


def test_posting_a_user_file_onto_a_folder_name_is_409(server):
    with server.client() as http:
        assert http.post("/userdata/workflows%2Fa.json", content=b"{}").status_code == 200
        response = http.post("/userdata/workflows", content=b"{}")
        assert response.status_code == 409
        moved = http.post("/userdata/workflows%2Fa.json/move/workflows")
        assert moved.status_code == 409


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "127.0.0.1:99999"},
        {"Host": "127.0.0.1:abc"},
        {"Origin": "http://127.0.0.1:99999"},
        {"Origin": "http://[::1"},
    ],
)
def test_malformed_host_or_origin_is_refused_not_500(server, headers):
    with server.client() as http:
        response = http.get("/prompt", headers=headers)
    assert response.status_code in (400, 403)
    assert "error" in response.json()


def test_query_numbers_out_of_range_are_400(server):
    with server.client() as http:
        assert http.get("/history", params={"max_items": "9" * 4000}).status_code == 400
        assert http.get("/api/jobs", params={"limit": str(2**70)}).status_code == 400
        assert http.get("/api/jobs", params={"offset": "-1"}).status_code == 400
        assert http.get("/history", params={"max_items": "2"}).status_code == 200


def test_settings_refuse_nan_and_keep_the_file_readable(server):
    with server.client() as http:
        assert http.post("/settings/x", content=b"NaN").status_code == 400
        assert http.post("/settings", content=b'{"a": Infinity}').status_code == 400
        assert http.get("/settings").status_code == 200


def test_access_log_redacts_tokens():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/ws?clientId=a&token=s3cret", "1.1", 101),
        None,
    )
    TokenRedactor().filter(record)
    assert "s3cret" not in record.getMessage() and "token=[redacted]" in record.getMessage()


def test_server_installs_token_redaction_on_the_access_log(make_server):
    make_server(token="s3cret")
    assert any(isinstance(f, TokenRedactor) for f in logging.getLogger("uvicorn.access").filters)


def test_view_of_an_image_still_works(server, folders):
    out = folders.base / "output"
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    (out / "ok.png").write_bytes(buffer.getvalue())
    with server.client() as http:
        assert http.get("/view", params={"filename": "ok.png"}).status_code == 200


def test_ws_hostile_first_frame_keeps_the_socket_working(server):
    with server.ws(client_id="fuzzy") as conn, server.client() as http:
        conn.send("[" * 100_000)
        prompt_id = http.post("/prompt", json={"prompt": SHOW, "client_id": "fuzzy"}).json()["prompt_id"]
        frames = receive_until(conn, is_done(prompt_id))
    assert any(f.get("type") == "executed" for f in frames if isinstance(f, dict))


def test_prompt_one_megabyte_text_is_refused_by_default(server):
    with server.client() as http:
        response = http.post("/prompt", json={"prompt": render_prompt(prefix="word " * 200_000)})
    assert response.status_code == 400
    assert response.json()["node_errors"]["2"]["errors"][0]["type"] == "value_too_long"
