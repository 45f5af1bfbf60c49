"""Atomic writes: a file appears complete under its final name or not at all, and errors name the path."""

from __future__ import annotations

import errno
import os

import pytest

from engine.atomic_files import FileWriteError, atomic_write, atomic_write_bytes, is_partial


def test_atomic_write_puts_the_whole_file_in_place(tmp_path):
    target = atomic_write_bytes(tmp_path / "a.png", b"complete")
    assert target.read_bytes() == b"complete"
    assert os.listdir(tmp_path) == ["a.png"]


def test_atomic_write_failing_writer_leaves_nothing(tmp_path):
    def torn(handle):
        handle.write(b"half")
        raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "a.png", torn)
    assert os.listdir(tmp_path) == []


def test_atomic_write_full_disk_names_the_path_and_removes_the_temporary(tmp_path):
    def full(handle):
        handle.write(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(FileWriteError) as info:
        atomic_write(tmp_path / "out.png", full)
    assert str(tmp_path / "out.png") in info.value.message and "disk is full" in info.value.message
    assert os.listdir(tmp_path) == []


def test_atomic_write_exclusive_never_replaces(tmp_path):
    (tmp_path / "a.png").write_bytes(b"first")
    with pytest.raises(FileExistsError):
        atomic_write_bytes(tmp_path / "a.png", b"second", replace=False)
    assert (tmp_path / "a.png").read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["a.png"]


def test_atomic_write_replaces_by_default(tmp_path):
    (tmp_path / "s.json").write_bytes(b"old")
    atomic_write_bytes(tmp_path / "s.json", b"new")
    assert (tmp_path / "s.json").read_bytes() == b"new"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_atomic_write_read_only_folder_names_the_path(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(FileWriteError, match="read-only"):
            atomic_write_bytes(folder / "a.png", b"x")
    finally:
        folder.chmod(0o700)


def test_partial_names_are_recognised(tmp_path):
    seen = []
    atomic_write(tmp_path / "a.png", lambda handle: seen.extend(os.listdir(tmp_path)))
    assert len(seen) == 1 and is_partial(seen[0]) and not is_partial("a.png")
