"""The /internal routes the web client calls: logs and their stream, file lists, model folders."""

from __future__ import annotations

import json
import logging
import os
import time


def test_internal_logs_raw_lists_recent_lines(server):
    logging.getLogger("diffgraph.test").warning("a line the logs panel shows")
    with server.client() as http:
        raw = http.get("/internal/logs/raw").json()
        text = http.get("/internal/logs").json()
    assert set(raw) == {"entries", "size"} and set(raw["size"]) == {"cols", "rows"}
    assert any("a line the logs panel shows" in e["m"] for e in raw["entries"])
    assert "a line the logs panel shows" in text


def test_internal_logs_subscribe_streams_new_lines(server):
    with server.ws("logclient") as conn, server.client() as http:
        conn.recv(timeout=10)
        assert (
            http.patch(
                "/internal/logs/subscribe", json={"clientId": "logclient", "enabled": True}
            ).status_code
            == 200
        )
        logging.getLogger("diffgraph.test").warning("streamed line")
        frame = json.loads(conn.recv(timeout=10))
        assert frame["type"] == "logs"
        assert "streamed line" in frame["data"]["entries"][0]["m"] and "cols" in frame["data"]["size"]
        http.patch("/internal/logs/subscribe", json={"clientId": "logclient", "enabled": False})
        logging.getLogger("diffgraph.test").warning("not streamed")
        bad = http.patch("/internal/logs/subscribe", json={"clientId": 3})
    assert bad.status_code == 400
    assert server.state.hub.log_subscribers == set()


def test_internal_files_newest_first(server, folders):
    inputs = folders.base / "input"
    for i, name in enumerate(["old.png", "new.png"]):
        (inputs / name).write_bytes(b"x")
        os.utime(inputs / name, (time.time() - 100 + i * 50,) * 2)
    (inputs / "sub").mkdir()
    with server.client() as http:
        listed = http.get("/internal/files/input").json()
        temp = http.get("/internal/files/temp").json()
        bad = http.get("/internal/files/models")
        paths = http.get("/internal/folder_paths").json()
    assert listed == ["example.png", "new.png", "old.png"]  # example.png: put there for a first run
    assert temp == []  # the temp marker file is diffgraph's, not the user's
    assert bad.status_code == 400
    assert paths["checkpoints"][0].endswith("checkpoints")
