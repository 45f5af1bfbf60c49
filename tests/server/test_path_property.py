"""Uploads and user files under generated hostile names: nothing is ever created outside the folders."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Environment, ModelPaths
from engine.safe_paths import PathRefused
from server.routes_files import save_upload
from server.routes_user import _user_path
from server.settings import ServerSettings
from server.state import ServerState
from server.store import JobStore
from tests.stub_pack.server_nodes import stub_registry

PIECES = st.sampled_from(
    ["..", ".", "", "/", "\\", "a", "x.png", "%2f", "%2e", "\x00", "C:", "link", "input", " "]
)
NAMES = st.lists(PIECES, max_size=5).map("".join)


def _snapshot(root: Path, skip: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if skip not in p.parents and p != skip and "user" not in p.relative_to(root).parts[:1]
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["input", "output", "temp", "x"]), subfolder=NAMES, filename=NAMES)
def test_upload_never_writes_outside_its_folder(tmp_path, kind, subfolder, filename):
    env = Environment(
        output_dir=tmp_path / "output",
        temp_dir=tmp_path / "temp",
        input_dir=tmp_path / "input",
        models=None,
        model_paths=ModelPaths(tmp_path / "models"),
    )
    for folder in (env.output_dir, env.temp_dir, env.input_dir, tmp_path / "outside"):
        folder.mkdir(exist_ok=True)
    if not (env.input_dir / "link").exists():
        os.symlink(tmp_path / "outside", env.input_dir / "link")
    settings_ = ServerSettings(user_dir=tmp_path / "user", serve_frontend=False)
    state = ServerState(stub_registry(), env, settings_, _store(tmp_path), None, None)  # type: ignore[arg-type]
    before = _snapshot(tmp_path, tmp_path / kind)
    try:
        info = save_upload(state, b"data", filename, kind, subfolder, overwrite=True)
    except PathRefused:
        info = None
    assert _snapshot(tmp_path, tmp_path / kind) == before
    if info is not None:
        assert info["type"] in ("input", "output", "temp")


_STORES: dict[Path, JobStore] = {}


def _store(tmp_path: Path) -> JobStore:
    if tmp_path not in _STORES:
        _STORES[tmp_path] = JobStore(tmp_path / "user" / "db.sqlite3")
    return _STORES[tmp_path]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(relative=NAMES)
def test_user_paths_stay_inside_the_user_folder(tmp_path, relative):
    settings_ = ServerSettings(user_dir=tmp_path / "user", serve_frontend=False)
    env = Environment(
        tmp_path / "out", tmp_path / "temp", tmp_path / "in", model_paths=ModelPaths(tmp_path / "models")
    )
    state = ServerState(stub_registry(), env, settings_, None, None, None)  # type: ignore[arg-type]
    root = state.user_root.resolve()
    try:
        path = _user_path(state, relative)
    except PathRefused:
        return
    assert root in path.parents
