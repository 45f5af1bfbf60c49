"""HTTP routes: prompt errors, queue order, history paging, jobs API, files, user data, info."""

from __future__ import annotations

import io
import urllib.parse

import pytest
from PIL import Image

from tests.server.conftest import wait_for, wait_history
from tests.stub_pack.server_nodes import render_prompt

SHOW_PROMPT = {
    "1": {"class_type": "StubConstant", "inputs": {"value": 3}},
    "2": {"class_type": "StubShow", "inputs": {"number": ["1", 0]}},
}


@pytest.mark.parametrize(
    "path",
    ["/object_info", "/api/object_info", "/system_stats", "/api/system_stats", "/api/features", "/features"],
)
def test_routes_answer_bare_and_under_api(server, path):
    with server.client() as http:
        assert http.get(path).status_code == 200


def test_object_info_lists_stub_nodes(server):
    with server.client() as http:
        info = http.get("/api/object_info").json()
        one = http.get("/object_info/StubRender").json()
        missing = http.get("/object_info/Nope").json()
    assert set(info) == {"StubConstant", "StubRender", "StubSave", "StubShow", "StubFail"}
    assert one["StubRender"]["input"]["required"]["seed"][0] == "INT"
    assert missing == {}


def test_prompt_without_prompt_is_no_prompt(server):
    with server.client() as http:
        response = http.post("/prompt", json={"client_id": "x"})
    assert response.status_code == 400
    assert response.json() == {
        "error": {"type": "no_prompt", "message": "No prompt provided", "details": "", "extra_info": {}},
        "node_errors": {},
    }


def test_prompt_unknown_node_is_invalid_prompt(server):
    with server.client() as http:
        body = http.post("/api/prompt", json={"prompt": {"5": {"class_type": "Nope", "inputs": {}}}}).json()
    assert body["error"]["type"] == "invalid_prompt"
    assert body["error"]["message"] == "Cannot execute because node Nope does not exist."
    assert body["error"]["details"] == "Node ID '#5'"


def test_prompt_bad_values_report_node_errors(server):
    prompt = render_prompt()
    prompt["1"]["inputs"]["steps"] = 0
    with server.client() as http:
        response = http.post("/prompt", json={"prompt": prompt})
    body = response.json()
    assert response.status_code == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    entry = body["node_errors"]["1"]
    assert entry["class_type"] == "StubRender"
    assert entry["dependent_outputs"] == ["2"]
    assert entry["errors"][0]["type"] == "value_smaller_than_min"
    assert entry["errors"][0]["extra_info"]["input_name"] == "steps"


def test_prompt_without_outputs_is_refused(server):
    with server.client() as http:
        body = http.post(
            "/prompt", json={"prompt": {"1": {"class_type": "StubConstant", "inputs": {}}}}
        ).json()
    assert body["error"]["type"] == "prompt_no_outputs"


def test_prompt_not_json_is_400_json(server):
    with server.client() as http:
        response = http.post("/prompt", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_prompt"


def test_prompt_too_large_is_413(make_server):
    live = make_server(max_prompt_size=1000)
    with live.client() as http:
        response = http.post(
            "/prompt", json={"prompt": {"1": {"class_type": "StubShow", "inputs": {"x": "a" * 2000}}}}
        )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "prompt_too_large"


def test_prompt_runs_and_view_serves_output(server):
    with server.client() as http:
        answer = http.post(
            "/prompt",
            json={
                "prompt": render_prompt(),
                "prompt_id": "p-1",
                "extra_data": {"api_key_comfy_org": "secret"},
            },
        ).json()
        entry = wait_history(http, "p-1")
        image = entry["outputs"]["2"]["images"][0]
        view = http.get(
            "/view", params={"filename": image["filename"], "subfolder": "", "type": "output", "rand": "0.3"}
        )
        webp = http.get("/api/view", params={"filename": image["filename"], "preview": "webp;80"})
    assert answer == {"prompt_id": "p-1", "number": answer["number"], "node_errors": {}}
    assert entry["prompt"][1] == "p-1" and entry["prompt"][4] == ["2"]
    assert "api_key_comfy_org" not in entry["prompt"][3]
    assert entry["meta"]["2"]["node_id"] == "2"
    assert view.status_code == 200 and view.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(view.content)).size == (32, 32)
    assert webp.headers["content-type"] == "image/webp"


def test_queue_orders_by_number_and_front(server):
    with server.client() as http:
        blocker = http.post("/prompt", json={"prompt": render_prompt(steps=500, delay=0.02)}).json()[
            "prompt_id"
        ]
        wait_for(lambda: http.get("/queue").json()["queue_running"], what="running prompt")
        a = http.post("/prompt", json={"prompt": SHOW_PROMPT}).json()
        b = http.post("/prompt", json={"prompt": SHOW_PROMPT, "front": True}).json()
        c = http.post("/prompt", json={"prompt": SHOW_PROMPT, "number": -1000}).json()
        queue = http.get("/api/queue").json()
        remaining = http.get("/prompt").json()
        http.post("/queue", json={"delete": [a["prompt_id"]]})
        after_delete = [item[1] for item in http.get("/queue").json()["queue_pending"]]
        http.post("/api/queue", json={"clear": True})
        http.post("/interrupt")
        cleared = http.get("/queue").json()["queue_pending"]
        wait_history(http, blocker)
    assert [item[1] for item in queue["queue_running"]] == [blocker]
    assert [item[1] for item in queue["queue_pending"]] == [c["prompt_id"], b["prompt_id"], a["prompt_id"]]
    assert b["number"] < 0 < a["number"] and c["number"] == -1000
    assert remaining == {"exec_info": {"queue_remaining": 4}}
    assert after_delete == [c["prompt_id"], b["prompt_id"]]
    assert cleared == []


def test_history_paging_matches_comfyui(server):
    with server.client() as http:
        ids = [
            http.post("/prompt", json={"prompt": SHOW_PROMPT, "prompt_id": f"h{i}"}).json()["prompt_id"]
            for i in range(5)
        ]
        wait_history(http, "h4")
        full = list(http.get("/history").json())
        newest_two = list(http.get("/history", params={"max_items": 2}).json())
        page = list(http.get("/api/history", params={"max_items": 2, "offset": 1}).json())
        beyond = http.get("/history", params={"offset": 10}).json()
        http.post("/history", json={"delete": ["h0"]})
        after_delete = list(http.get("/history").json())
        http.post("/history", json={"clear": True})
        after_clear = http.get("/history").json()
    assert full == ids
    assert newest_two == ["h3", "h4"]
    assert page == ["h1", "h2"]
    assert beyond == {}
    assert after_delete == ids[1:]
    assert after_clear == {}


def test_history_unknown_id_is_empty(server):
    with server.client() as http:
        assert http.get("/history/nope").json() == {}


def test_jobs_api_lists_queue_and_history(server):
    with server.client() as http:
        http.post(
            "/prompt",
            json={
                "prompt": render_prompt(),
                "prompt_id": "j1",
                "extra_data": {"extra_pnginfo": {"workflow": {"id": "wf-9"}}},
            },
        )
        wait_history(http, "j1")
        history = http.get(
            "/api/jobs", params={"status": "completed,failed,cancelled", "limit": 64, "offset": 0}
        ).json()
        queue = http.get(
            "/api/jobs", params={"status": "in_progress,pending", "limit": 200, "offset": 0}
        ).json()
        job = http.get("/api/jobs/j1").json()
        missing = http.get("/api/jobs/nope")
        cancel = http.post("/api/jobs/j1/cancel")
        cancel_many = http.post("/api/jobs/cancel", json={"job_ids": ["j1", "nope"]})
    item = history["jobs"][0]
    assert history["pagination"] == {"offset": 0, "limit": 64, "total": 1, "has_more": False}
    assert item["id"] == "j1" and item["status"] == "completed"
    assert item["execution_end_time"] >= item["execution_start_time"] >= item["create_time"] - 1000
    assert item["preview_output"]["nodeId"] == "2" and item["preview_output"]["mediaType"] == "images"
    assert item["workflow_id"] == "wf-9"
    assert queue["jobs"] == []
    assert job["outputs"]["2"]["images"][0]["type"] == "output"
    assert job["workflow"]["extra_data"]["extra_pnginfo"]["workflow"]["id"] == "wf-9"
    assert missing.status_code == 404
    assert cancel.status_code == 200 and cancel_many.status_code == 200


def test_jobs_cancel_removes_pending(server):
    with server.client() as http:
        http.post("/prompt", json={"prompt": render_prompt(steps=500, delay=0.02), "prompt_id": "run"})
        wait_for(lambda: http.get("/queue").json()["queue_running"], what="running prompt")
        http.post("/prompt", json={"prompt": SHOW_PROMPT, "prompt_id": "wait"})
        http.post("/api/jobs/cancel", json={"job_ids": ["wait", "run"]})
        entry = wait_history(http, "run")
        pending = http.get("/api/jobs", params={"status": "pending"}).json()["jobs"]
        cancelled = http.get("/api/jobs", params={"status": "cancelled"}).json()["jobs"]
    assert pending == []
    assert entry["status"]["status_str"] == "error"
    assert [j["id"] for j in cancelled] == ["run"]


def test_upload_image_then_view_it(server):
    png = io.BytesIO()
    Image.new("RGBA", (4, 4), (1, 2, 3, 128)).save(png, format="PNG")
    with server.client() as http:
        first = http.post(
            "/upload/image",
            files={"image": ("a.png", png.getvalue(), "image/png")},
            data={"subfolder": "sub"},
        ).json()
        same = http.post(
            "/api/upload/image",
            files={"image": ("a.png", png.getvalue(), "image/png")},
            data={"subfolder": "sub"},
        ).json()
        other = http.post(
            "/upload/image", files={"image": ("a.png", b"different", "image/png")}, data={"subfolder": "sub"}
        ).json()
        view = http.get("/view", params={"filename": "a.png", "subfolder": "sub", "type": "input"})
        alpha = http.get("/view", params={"filename": "a.png [input]", "subfolder": "sub", "channel": "a"})
    assert first == {"name": "a.png", "subfolder": "sub", "type": "input"}
    assert same["name"] == "a.png"
    assert other["name"] == "a (1).png"
    assert view.content == png.getvalue()
    assert Image.open(io.BytesIO(alpha.content)).getpixel((0, 0)) == (0, 0, 0, 128)


def test_upload_mask_puts_alpha_on_original(server, folders):
    original = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(original, format="PNG")
    mask = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 40)).save(mask, format="PNG")
    with server.client() as http:
        http.post("/upload/image", files={"image": ("orig.png", original.getvalue(), "image/png")})
        ref = '{"filename": "orig.png", "subfolder": "", "type": "input"}'
        info = http.post(
            "/upload/mask",
            files={"image": ("masked.png", mask.getvalue(), "image/png")},
            data={"original_ref": ref, "subfolder": "clipspace"},
        ).json()
    merged = Image.open(folders.base / "input" / "clipspace" / info["name"])
    assert merged.getpixel((1, 1)) == (200, 10, 10, 40)


def test_userdata_file_name_is_one_encoded_segment(server):
    name = urllib.parse.quote("workflows/My flow.json", safe="")
    moved = urllib.parse.quote("workflows/sub/Renamed.json", safe="")
    with server.client() as http:
        saved = http.post(f"/api/userdata/{name}?overwrite=true&full_info=true", content=b'{"a": 1}')
        conflict = http.post(f"/api/userdata/{name}?overwrite=false", content=b"{}")
        listing = http.get(
            "/api/userdata",
            params={"dir": "workflows", "recurse": "true", "split": "false", "full_info": "true"},
        ).json()
        read = http.get(f"/api/userdata/{name}")
        move = http.post(f"/api/userdata/{name}/move/{moved}?full_info=true")
        v2 = http.get("/api/v2/userdata", params={"path": "workflows"}).json()
        delete = http.delete(f"/userdata/{moved}")
        gone = http.get(f"/userdata/{moved}")
        missing_dir = http.get("/userdata", params={"dir": "nothing"})
    assert saved.status_code == 200 and saved.json()["path"] == "workflows/My flow.json"
    assert conflict.status_code == 409
    assert [item["path"] for item in listing] == ["My flow.json"]
    assert read.content == b'{"a": 1}'
    assert move.status_code == 200 and move.json()["path"] == "workflows/sub/Renamed.json"
    assert v2 == [{"name": "sub", "path": "workflows/sub", "type": "directory"}]
    assert delete.status_code == 204
    assert gone.status_code == 404
    assert missing_dir.status_code == 404


def test_settings_accept_raw_json_values(server):
    with server.client() as http:
        http.post("/api/settings/Comfy.TutorialCompleted", content=b"true")
        http.post("/api/settings", json={"Comfy.Theme": "dark"})
        settings = http.get("/api/settings").json()
        one = http.get("/settings/Comfy.Theme").json()
        unknown = http.get("/settings/Nope").json()
    assert settings == {"Comfy.TutorialCompleted": True, "Comfy.Theme": "dark"}
    assert one == "dark" and unknown is None


def test_boot_routes_have_the_shapes_the_client_needs(server):
    with server.client() as http:
        users = http.get("/api/users").json()
        extensions = http.get("/api/extensions").json()
        models = http.get("/models").json()
        checkpoints = http.get("/api/models/checkpoints")
        unknown_folder = http.get("/models/nope")
        stats = http.get("/api/system_stats").json()
        embeddings = http.get("/embeddings").json()
    assert users == {"storage": "server", "migrated": True}
    assert extensions == []
    assert "checkpoints" in models and checkpoints.json() == []
    assert unknown_folder.status_code == 404
    assert {"os", "ram_total", "python_version", "pytorch_version", "argv"} <= set(stats["system"])
    assert "--disable-api-nodes" in stats["system"]["argv"]
    assert stats["devices"][0]["type"] in ("cpu", "cuda")
    assert embeddings == []


def test_free_clears_cache_between_prompts(server):
    with server.client() as http:
        http.post("/prompt", json={"prompt": SHOW_PROMPT, "prompt_id": "f1"})
        wait_history(http, "f1")
        assert len(server.state.worker.executor.cache) > 0
        assert http.post("/free", json={"unload_models": True, "free_memory": True}).status_code == 200
        wait_for(lambda: len(server.state.worker.executor.cache) == 0, what="cache cleared")


def test_workflow_from_media_reads_png_metadata(server):
    from engine.formats.media_metadata import png_info

    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(
        png, format="PNG", pnginfo=png_info(SHOW_PROMPT, {"workflow": {"nodes": [], "links": []}})
    )
    with server.client() as http:
        found = http.post(
            "/api/workflow/from_media", files={"image": ("x.png", png.getvalue(), "image/png")}
        ).json()
        plain = io.BytesIO()
        Image.new("RGB", (4, 4)).save(plain, format="PNG")
        missing = http.post("/workflow/from_media", files={"image": ("y.png", plain.getvalue(), "image/png")})
    assert found == {"prompt": SHOW_PROMPT, "workflow": {"nodes": [], "links": []}}
    assert missing.status_code == 404


def test_frontend_root_is_served_with_script_types(make_server, tmp_path):
    root = tmp_path / "web"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><p>client</p>")
    (root / "assets" / "app.js").write_text("export {}")
    (root / "extensions" / "mine").mkdir(parents=True)
    (root / "extensions" / "mine" / "ext.js").write_text("export {}")
    live = make_server(serve_frontend=True, front_end_root=root)
    with live.client() as http:
        index = http.get("/")
        script = http.get("/assets/app.js")
        extensions = http.get("/api/extensions").json()
    assert index.text.endswith("<p>client</p>") and index.headers["cache-control"] == "no-cache"
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cache-control"] == "no-cache"
    assert extensions == ["/extensions/mine/ext.js"]


def test_installed_frontend_package_is_served(make_server):
    live = make_server(serve_frontend=True)
    with live.client() as http:
        index = http.get("/")
    assert index.status_code == 200 and "<script" in index.text
