"""The queue store: nothing unreadable gets in, bad rows are quarantined, bad files moved aside, crashes re-queued."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest

from server.jobs import UnstorableValue
from server.store import JobStore
from server.store_file import SCHEMA_VERSION, DatabaseRefused

PROMPT = {"1": {"class_type": "StubConstant", "inputs": {"value": 1}}}


def _store(tmp_path, **kwargs) -> JobStore:
    return JobStore(tmp_path / "queue.sqlite3", **kwargs)


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan, 1e300])
def test_store_refuses_a_priority_it_could_not_read_back(tmp_path, number):
    store = _store(tmp_path)
    with pytest.raises(UnstorableValue):
        store.enqueue("a", PROMPT, {}, ["1"], None, number=number)
    assert store.queue_remaining() == 0
    store.close()
    _store(tmp_path).close()  # and the next start is fine


@pytest.mark.parametrize(
    "extra", [{"x": math.nan}, {"extra_pnginfo": {"workflow": {"v": math.inf}}}, {"t": "\ud800"}]
)
def test_store_refuses_values_json_cannot_carry(tmp_path, extra):
    store = _store(tmp_path)
    with pytest.raises(UnstorableValue):
        store.enqueue("a", PROMPT, extra, ["1"], None)
    assert store.history() == [] and store.queue() == ([], [])


def _poison(path, job_id: str, column: str, value: object) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (value, job_id))
    conn.commit()
    conn.close()


def test_store_quarantines_an_unreadable_pending_row_and_serves_the_rest(tmp_path, caplog):
    store = _store(tmp_path)
    store.enqueue("bad", PROMPT, {}, ["1"], None)
    store.enqueue("good", PROMPT, {}, ["1"], None)
    _poison(store.path, "bad", "prompt", "{not json")
    with caplog.at_level("WARNING"):
        job = store.wait_next(0.1)
    assert job is not None and job.id == "good"
    assert [q["id"] for q in store.quarantined()] == ["bad"]
    assert "quarantined unreadable job 'bad'" in caplog.text
    store.close()


def test_store_with_an_infinite_number_row_still_starts(tmp_path):
    store = _store(tmp_path)
    store.enqueue("ok", PROMPT, {}, ["1"], None)
    store.close()
    _poison(tmp_path / "queue.sqlite3", "ok", "number", math.inf)  # what older versions let in
    reopened = _store(tmp_path)
    assert reopened.queue_remaining() == 0
    assert [q["id"] for q in reopened.quarantined()] == ["ok"]
    reopened.enqueue("next", PROMPT, {}, ["1"], None)
    assert reopened.wait_next(0.1).id == "next"


def test_store_history_skips_rows_that_do_not_decode(tmp_path):
    store = _store(tmp_path)
    for job_id in ("a", "b"):
        store.enqueue(job_id, PROMPT, {}, ["1"], None)
        store.wait_next(0.1)
        store.finish(job_id, "success", {}, [], None)
    _poison(store.path, "a", "messages", "[NaN]")
    assert [j.id for j in store.history()] == ["b"]
    assert [j.id for j in store.jobs(["success"], None, 0)[0]] == ["b"]


def test_store_moves_a_corrupt_database_aside_and_names_it(tmp_path):
    path = tmp_path / "queue.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    store = JobStore(path)
    assert store.moved_note is not None and str(path) in store.moved_note
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("queue.sqlite3.bad-")]
    assert len(moved) == 1 and moved[0].name in store.moved_note
    assert moved[0].read_bytes().startswith(b"this is not sqlite")
    store.enqueue("a", PROMPT, {}, ["1"], None)
    assert store.queue_remaining() == 1


def test_store_moves_a_newer_version_database_aside(tmp_path):
    path = tmp_path / "queue.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    store = JobStore(path)
    assert "newer diffgraph" in (store.moved_note or "")


def test_store_refuses_a_corrupt_database_when_asked(tmp_path):
    path = tmp_path / "queue.sqlite3"
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(DatabaseRefused, match="--bad-database move") as info:
        JobStore(path, on_bad="refuse")
    assert str(path) in info.value.message
    assert path.read_bytes() == b"garbage" * 100  # untouched


def _crash_while_running(tmp_path, job_id: str, **kwargs) -> JobStore:
    """Open, claim job_id, and drop the store without finishing (what kill -9 leaves behind)."""
    store = _store(tmp_path, **kwargs)
    claimed = store.wait_next(0.1)
    assert claimed is not None and claimed.id == job_id
    store.set_current_node(job_id, "1")
    store.close()
    return _store(tmp_path, **kwargs)


def test_store_requeues_the_crashed_prompt_at_the_front_once(tmp_path):
    store = _store(tmp_path)
    store.enqueue("crashy", PROMPT, {}, ["1"], None)
    store.enqueue("later", PROMPT, {}, ["1"], None)
    store.close()
    after_first = _crash_while_running(tmp_path, "crashy")
    assert after_first.requeued == ["crashy"] and after_first.recovered == []
    assert [j.id for j in after_first.queue()[1]] == ["crashy", "later"]
    after_first.close()
    after_second = _crash_while_running(tmp_path, "crashy")
    assert after_second.recovered == ["crashy"]
    job = after_second.get("crashy")
    assert job is not None and job.state == "error"
    assert "stopped twice" in job.error["exception_message"]
    assert after_second.wait_next(0.1).id == "later"


def test_store_no_requeue_marks_the_crashed_prompt_failed(tmp_path):
    store = _store(tmp_path, requeue=False)
    store.enqueue("crashy", PROMPT, {}, ["1"], None)
    store.close()
    reopened = _crash_while_running(tmp_path, "crashy", requeue=False)
    assert reopened.recovered == ["crashy"] and reopened.requeued == []
    job = reopened.get("crashy")
    assert job.state == "error" and job.error["node_type"] == "StubConstant"
    assert json.loads(json.dumps(job.history_entry()))  # the history entry stays serialisable


def test_serve_with_refuse_flag_exits_2_naming_the_database(tmp_path, capsys):
    import argparse

    from server.main import add_serve_arguments, run_serve
    from tests.server.stub_serve import build

    database = tmp_path / "user" / "diffgraph.sqlite3"
    database.parent.mkdir()
    database.write_bytes(b"junk" * 100)
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--base-dir", str(tmp_path), "--port", "0", "--bad-database", "refuse"])
    assert run_serve(args, build, make_models=lambda: None) == 2
    assert str(database) in capsys.readouterr().err


def test_store_queue_json_matches_the_decoded_queue(tmp_path):
    store = _store(tmp_path)
    for job_id, number in (("b", 2.0), ("a", 1.5), ("c", None)):
        store.enqueue(
            job_id,
            {"1": {"class_type": "é", "inputs": {"v": [1, 2.5]}}},
            {"x": "y"},
            ["1"],
            None,
            number=number,
        )
    store.wait_next(0.1)
    running, pending = store.queue()
    expected = {
        "queue_running": [j.queue_item() for j in running],
        "queue_pending": [j.queue_item() for j in pending],
    }
    assert json.loads(store.queue_json()) == expected
    assert [item[1] for item in expected["queue_pending"]] == ["a", "b"]
    assert expected["queue_running"][0][:2] == [1, "c"]


def test_store_queue_json_follows_every_queue_change(tmp_path):
    store = _store(tmp_path)

    def listing_is_current() -> None:
        running, pending = store.queue()
        expected = {
            "queue_running": [j.queue_item() for j in running],
            "queue_pending": [j.queue_item() for j in pending],
        }
        assert json.loads(store.queue_json()) == expected
        assert store.queue_json() == store.queue_json()  # asked twice without a change: same body

    prompt = {"1": {"class_type": "X", "inputs": {}}}
    for job_id in ("a", "b"):
        store.enqueue(job_id, prompt, {}, ["1"], None)
        listing_is_current()
    job = store.wait_next(0.1)
    assert job is not None and job.id == "a"
    listing_is_current()
    store.enqueue("c", prompt, {}, ["1"], None, front=True)
    listing_is_current()
    store.delete_pending(["b"])
    listing_is_current()
    store.finish("a", "success", {}, [], None)
    listing_is_current()
    assert [item[1] for item in json.loads(store.queue_json())["queue_pending"]] == ["c"]
