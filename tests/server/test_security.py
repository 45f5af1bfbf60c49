"""Security: hostile paths, cross-site origins, DNS rebinding, tokens, bind policy, size limits."""

from __future__ import annotations

import json
import os

import pytest
from websockets.exceptions import InvalidStatus

from server.paths import PathRefused, resolve_inside
from server.settings import InsecureBindError, ServerSettings


@pytest.mark.parametrize(
    ("subfolder", "filename"),
    [
        ("", "../secret.txt"),
        ("..", "secret.txt"),
        ("a/../..", "x"),
        ("", "/etc/passwd"),
        ("/etc", "passwd"),
        ("", "..\\secret.txt"),
        ("a\\b", "x"),
        ("", "a%2F..%2Fb"),
        ("%2e%2e", "x"),
        ("", "sub/x.png"),
        ("", "C:secret"),
        ("", "x\x00.png"),
    ],
)
def test_resolve_inside_refuses_hostile_names(tmp_path, subfolder, filename):
    with pytest.raises(PathRefused):
        resolve_inside(tmp_path, subfolder, filename)


def test_resolve_inside_refuses_symlink_leading_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    base = tmp_path / "base"
    base.mkdir()
    os.symlink(outside, base / "link")
    with pytest.raises(PathRefused) as info:
        resolve_inside(base, "link", "secret.txt")
    assert info.value.status == 403


def test_resolve_inside_allows_nested_names(tmp_path):
    assert resolve_inside(tmp_path, "a/b", "c.png") == (tmp_path / "a" / "b" / "c.png").resolve()


@pytest.mark.parametrize(
    "params",
    [
        {"filename": "../user/diffgraph.sqlite3"},
        {"filename": "x.png", "subfolder": "../../"},
        {"filename": "/etc/passwd"},
        {"filename": "..\\x"},
        {"filename": "a%2F..%2F..%2Fx"},
        {"filename": "x", "type": "models"},
        {"filename": ""},
    ],
)
def test_view_refuses_hostile_paths(server, params):
    with server.client() as http:
        response = http.get("/view", params=params)
    assert response.status_code in (400, 403)
    assert response.json()["error"]["type"] == "path_refused"


def test_view_refuses_symlink_out_of_output(server, folders):
    (folders.base / "output").mkdir(exist_ok=True)
    (folders.base / "secret.txt").write_text("secret")
    os.symlink(folders.base / "secret.txt", folders.base / "output" / "leak.png")
    with server.client() as http:
        response = http.get("/view", params={"filename": "leak.png"})
    assert response.status_code == 403
    assert b"secret" not in response.content


def test_view_serves_html_as_download(server, folders):
    (folders.base / "output" / "page.html").write_text("<script>alert(1)</script>")
    with server.client() as http:
        response = http.get("/view", params={"filename": "page.html"})
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("filename", "subfolder"),
    [("../evil.png", ""), ("evil.png", "../.."), ("a\\evil.png", ""), ("evil.png", "/tmp")],
)
def test_upload_refuses_hostile_names(server, folders, filename, subfolder):
    with server.client() as http:
        response = http.post(
            "/upload/image", files={"image": (filename, b"x", "image/png")}, data={"subfolder": subfolder}
        )
    assert response.status_code == 400
    assert not (folders.base / "evil.png").exists()


def test_userdata_refuses_escape(server):
    with server.client() as http:
        write = http.post("/userdata/..%2F..%2Fevil.json", content=b"{}")
        listing = http.get("/userdata", params={"dir": "../.."})
    assert write.status_code == 400 and listing.status_code == 400


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1", "file://"])
def test_cross_site_origin_is_refused(server, origin):
    with server.client() as http:
        response = http.post("/prompt", json={"prompt": {}}, headers={"Origin": origin})
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "origin_refused"


def test_same_origin_and_no_origin_are_allowed(server):
    with server.client() as http:
        same = http.get("/api/settings", headers={"Origin": server.url})
        none = http.get("/api/settings")
    assert same.status_code == 200 and none.status_code == 200


def test_allowed_origin_setting_admits_that_origin(make_server):
    live = make_server(allowed_origins=("http://studio.local:3000",))
    with live.client() as http:
        assert http.get("/api/settings", headers={"Origin": "http://studio.local:3000"}).status_code == 200


def test_rebinding_host_is_refused(server):
    with server.client() as http:
        response = http.get("/api/settings", headers={"Host": f"evil.example:{server.port}"})
    assert response.status_code == 403


@pytest.mark.parametrize("origin", ["http://evil.example", "null"])
def test_ws_cross_site_origin_is_refused(server, origin):
    with pytest.raises(InvalidStatus) as info:
        server.ws(origin=origin).close()
    assert info.value.response.status_code == 403


def test_token_is_required_when_set(make_server):
    live = make_server(token="s3cret")
    with live.client() as http:
        missing = http.get("/api/settings")
        wrong = http.get("/api/settings", headers={"Authorization": "Bearer nope"})
        bearer = http.get("/api/settings", headers={"Authorization": "Bearer s3cret"})
        query = http.get("/api/settings", params={"token": "s3cret"})
        login = http.get("/", params={"token": "s3cret"})
    assert missing.status_code == 401 and wrong.status_code == 401
    assert bearer.status_code == 200 and query.status_code == 200
    assert login.status_code == 303 and "diffgraph_token=s3cret" in login.headers["set-cookie"]
    with live.client(cookies={"diffgraph_token": "s3cret"}) as browser:
        assert browser.get("/api/settings").status_code == 200
    with pytest.raises(InvalidStatus):
        live.ws().close()
    conn = live.ws(additional_headers={"Authorization": "Bearer s3cret"})
    assert json.loads(conn.recv(timeout=5))["type"] == "status"
    conn.close()


def test_bind_beyond_loopback_needs_token_or_insecure(tmp_path):
    with pytest.raises(InsecureBindError):
        ServerSettings(user_dir=tmp_path, host="0.0.0.0").check_bind()
    ServerSettings(user_dir=tmp_path, host="0.0.0.0", token="t").check_bind()
    ServerSettings(user_dir=tmp_path, host="0.0.0.0", insecure=True).check_bind()
    ServerSettings(user_dir=tmp_path, host="::1").check_bind()


def test_upload_over_limit_is_413(make_server, folders):
    live = make_server(max_upload_size=10_000)
    with live.client() as http:
        response = http.post("/upload/image", files={"image": ("big.png", b"x" * 20_000, "image/png")})
    assert response.status_code == 413
    assert not (folders.base / "input" / "big.png").exists()


def test_chunked_body_over_limit_is_413(make_server):
    live = make_server(max_upload_size=10_000)

    def chunks():
        for _ in range(10):
            yield b"x" * 2000

    with live.client() as http:
        response = http.post("/userdata/big.json", content=chunks())
    assert response.status_code == 413
