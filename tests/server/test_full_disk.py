"""Full and read-only folders: writes fail with a message naming the path, nothing torn is left, the server goes on.

These need a small tmpfs (mounting one needs root); without it they skip and the same failures are
covered by injected ENOSPC errors in tests/engine/test_atomic_files.py.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
import torch

from engine import FileWriteError
from nodes.media.save_paths import save_target
from tests.server.conftest import Folders, wait_history

SHOW = {
    "1": {"class_type": "StubConstant", "inputs": {"value": 3}},
    "2": {"class_type": "StubShow", "inputs": {"number": ["1", 0]}},
}


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MB tmpfs at tmp_path/disk (unmounted afterwards)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    """Fill the file system holding folder; returns the filler file (delete it to free the space)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def _remount(mount: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], check=True)


def test_save_on_a_full_disk_names_the_file_and_leaves_no_empty_png(small_disk):
    target = save_target(small_disk, "ComfyUI", 8, 8)
    _fill(small_disk)
    with pytest.raises(FileWriteError) as info:
        target.write(".png", 0, lambda handle: handle.write(b"\x89PNG" + b"x" * 200_000))
    assert str(small_disk / "ComfyUI_00001_.png") in info.value.message
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_save_into_a_read_only_folder_names_the_file(small_disk):
    target = save_target(small_disk, "ComfyUI", 8, 8)
    _remount(small_disk, "ro")
    try:
        with pytest.raises(FileWriteError, match="read-only"):
            target.write(".latent", 0, lambda handle: handle.write(torch.zeros(4).numpy().tobytes()))
    finally:
        _remount(small_disk, "rw")


def test_full_user_folder_refuses_prompts_then_recovers(small_disk, make_server, tmp_path):
    folders = Folders(tmp_path)
    server = make_server(env=folders.env, user_dir=small_disk)
    with server.client() as http:
        assert wait_history(http, http.post("/prompt", json={"prompt": SHOW}).json()["prompt_id"])
        filler = _fill(small_disk)
        big = {"prompt": SHOW, "extra_data": {"pad": "x" * 200_000}}
        response = http.post("/prompt", json=big)
        assert response.status_code in (400, 503) and "error" in response.json()
        saved = http.post("/userdata/w.json", content=b"{" + b" " * 300_000 + b"}")
        assert saved.status_code == 507 and "w.json" in saved.json()["error"]["message"]
        assert http.get("/history").status_code == 200
        filler.unlink()
        prompt_id = http.post("/prompt", json={"prompt": SHOW}).json()["prompt_id"]
        assert wait_history(http, prompt_id)["status"]["completed"] is True
    assert not [p for p in small_disk.rglob("*") if p.name.endswith(".partial")]


def test_read_only_input_folder_upload_is_507_naming_the_file(small_disk, make_server, tmp_path):
    folders = Folders(tmp_path)
    env = folders.env
    env.input_dir = small_disk
    server = make_server(env=env)
    _remount(small_disk, "ro")
    try:
        with server.client() as http:
            response = http.post("/upload/image", files={"image": ("a.png", b"x", "image/png")})
            assert response.status_code == 507 and "a.png" in response.json()["error"]["message"]
            assert http.get("/prompt").status_code == 200
    finally:
        _remount(small_disk, "rw")
