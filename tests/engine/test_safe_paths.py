"""The path resolver: generated hostile names never lead outside the base folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.safe_paths import PathRefused, resolve_inside, resolve_relative

PIECES = st.sampled_from(
    [
        "..",
        ".",
        "",
        "/",
        "\\",
        "a",
        "b.png",
        "%2f",
        "%2e%2e",
        "%5c",
        "\x00",
        "C:",
        "c:\\",
        "link",
        "~",
        " ",
        "\n",
    ]
)
NAMES = st.lists(PIECES | st.text(max_size=6), max_size=6).map("".join) | st.just("x" * 300)


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """tmp_path/base (with a symlink `link` leading out to tmp_path/outside) and a secret beside it."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "secret.txt").write_text("s")
    base = tmp_path / "base"
    base.mkdir()
    os.symlink(tmp_path / "outside", base / "link")
    return base


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subfolder=NAMES, filename=NAMES)
def test_resolve_inside_never_leaves_the_base(sandbox, subfolder, filename):
    root = sandbox.resolve()
    try:
        path = resolve_inside(sandbox, subfolder, filename)
    except PathRefused:
        return
    assert path == root or root in path.parents
    assert ".." not in Path(subfolder).parts and ".." not in Path(filename).parts


@pytest.mark.parametrize(
    ("subfolder", "filename"),
    [("", "."), ("", ".."), ("a/./b", "x"), ("", "x" * 256), ("ok", "a\x07b"), ("", "C:x"), ("", "a/b")],
)
def test_resolve_inside_refuses_dot_long_and_control_names(tmp_path, subfolder, filename):
    with pytest.raises(PathRefused):
        resolve_inside(tmp_path, subfolder, filename)


def test_resolve_inside_needs_a_name_when_asked(tmp_path):
    with pytest.raises(PathRefused, match="empty"):
        resolve_inside(tmp_path, "sub", "", need_name=True)
    assert resolve_inside(tmp_path, "sub") == (tmp_path / "sub").resolve()


def test_resolve_relative_splits_folders(tmp_path):
    assert resolve_relative(tmp_path, "workflows/a.json") == (tmp_path / "workflows" / "a.json").resolve()
    with pytest.raises(PathRefused):
        resolve_relative(tmp_path, "workflows/")
