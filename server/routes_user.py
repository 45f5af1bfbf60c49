"""Single-user data: /users, /settings, /userdata (one URL-encoded file segment) and /v2/userdata."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from engine.atomic_files import atomic_write_bytes, is_partial
from engine.strict_json import loads_strict
from server.inputs import read_json
from server.paths import PathRefused, resolve_inside, resolve_relative
from server.state import ServerState, error_response, server_state

router = APIRouter()
SETTINGS_FILE = "comfy.settings.json"
MAX_SETTING_ID = 256


def _flag(request: Request, name: str, default: bool) -> bool:
    value = request.query_params.get(name)
    return default if value is None else value.lower() not in ("false", "0", "")


def _write_atomic(target: Path, data: bytes) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)
    except (FileExistsError, NotADirectoryError):
        raise PathRefused(f"{target.parent.name!r} is a file, not a folder", status=409) from None


@router.get("/users")
def get_users() -> dict[str, Any]:
    """Single-user mode, as ComfyUI without --multi-user answers."""
    return {"storage": "server", "migrated": True}


@router.post("/users")
def post_users() -> Response:
    """Creating users needs multi-user mode, which diffgraph does not have."""
    return error_response(400, "multi_user_disabled", "this server runs in single-user mode")


def _read_settings(state: ServerState) -> dict[str, Any]:
    path = state.user_root / SETTINGS_FILE
    if not path.is_file():
        return {}
    data = loads_strict(path.read_bytes(), f"the settings file {path}")
    return data if isinstance(data, dict) else {}


def _update_settings(state: ServerState, changes: dict[str, Any]) -> None:
    with state.user_lock:
        settings = _read_settings(state)
        settings.update(changes)
        _write_atomic(state.user_root / SETTINGS_FILE, json.dumps(settings, indent=4).encode())


@router.get("/settings")
def get_settings(request: Request) -> dict[str, Any]:
    """Every stored setting."""
    return _read_settings(server_state(request))


@router.get("/settings/{setting_id}")
def get_setting(request: Request, setting_id: str) -> Response:
    """One setting's value, or null."""
    return JSONResponse(_read_settings(server_state(request)).get(setting_id))


async def _json(request: Request) -> Any:
    return await read_json(request)


@router.post("/settings")
async def post_settings(request: Request) -> Response:
    """Merge a dict of settings."""
    changes = await _json(request)
    if not isinstance(changes, dict):
        return error_response(400, "invalid_request", "the body must be a JSON object of settings")
    await run_in_threadpool(_update_settings, server_state(request), changes)
    return Response(status_code=200)


@router.post("/settings/{setting_id}")
async def post_setting(request: Request, setting_id: str) -> Response:
    """Set one setting; the body is a raw JSON value (the frontend sends no Content-Type)."""
    if len(setting_id) > MAX_SETTING_ID:
        return error_response(400, "invalid_request", f"setting ids stop at {MAX_SETTING_ID} characters")
    value = await _json(request)
    await run_in_threadpool(_update_settings, server_state(request), {setting_id: value})
    return Response(status_code=200)


def file_info(path: Path, relative: str) -> dict[str, Any]:
    """{path, size, modified, created} as the frontend's userdata listing reads it."""
    stat = path.stat()
    return {"path": relative, "size": stat.st_size, "modified": stat.st_mtime, "created": stat.st_ctime}


def _user_path(state: ServerState, relative: str) -> Path:
    return resolve_relative(state.user_root, relative)


def _not_a_folder(path: Path, relative: str) -> None:
    if path.is_dir():
        raise PathRefused(f"{relative!r} is a folder; name a file inside it", status=409)


@router.get("/userdata")
def list_userdata(request: Request) -> Response:
    """`?dir=D&recurse=&full_info=&split=`: files under D, paths relative to D with '/'."""
    state = server_state(request)
    folder = request.query_params.get("dir")
    if not folder:
        return error_response(400, "invalid_request", "dir is required")
    try:
        root = resolve_inside(state.user_root, folder)
    except PathRefused as exc:
        return error_response(exc.status, exc.code, exc.message)
    if not root.is_dir():
        return error_response(404, "not_found", f"{folder!r} does not exist")
    pattern = root.rglob("*") if _flag(request, "recurse", False) else root.glob("*")
    files = sorted(p for p in pattern if p.is_file() and not p.is_symlink() and not is_partial(p.name))
    relatives = [p.relative_to(root).as_posix() for p in files]
    if _flag(request, "full_info", False):
        return JSONResponse([file_info(p, r) for p, r in zip(files, relatives, strict=True)])
    if _flag(request, "split", False):
        return JSONResponse([[r, *r.split("/")] for r in relatives])
    return JSONResponse(relatives)


@router.get("/v2/userdata")
def list_userdata_v2(request: Request) -> Response:
    """`?path=P`: entries of one folder, directories first."""
    state = server_state(request)
    relative = request.query_params.get("path", "")
    try:
        root = resolve_inside(state.user_root, relative)
    except PathRefused as exc:
        return error_response(exc.status, exc.code, exc.message)
    if not root.is_dir():
        return error_response(404, "not_found", f"{relative!r} is not a folder")
    entries: list[dict[str, Any]] = []
    for child in sorted(root.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower())):
        if child.is_symlink():
            continue
        rel = child.relative_to(state.user_root.resolve()).as_posix()
        if child.is_dir():
            entries.append({"name": child.name, "path": rel, "type": "directory"})
        else:
            stat = child.stat()
            entries.append(
                {
                    "name": child.name,
                    "path": rel,
                    "type": "file",
                    "size": stat.st_size,
                    "modified": stat.st_mtime,
                }
            )
    return JSONResponse(entries)


def _raw_segments(request: Request) -> list[str]:
    """The path after /userdata/, split on raw '/': Starlette decodes %2F before routing, so the file
    name (one URL-encoded segment, e.g. workflows%2Fa.json) is recovered from the undecoded path.
    """
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    tail = raw.decode("latin-1").split("/userdata/", 1)[1]
    return [unquote(segment, errors="strict") for segment in tail.split("/")]


@router.api_route("/userdata/{rest:path}", methods=["GET", "POST", "DELETE"])
async def userdata_file(request: Request, rest: str) -> Response:
    """GET/POST/DELETE one user file, or POST {file}/move/{dest}."""
    state = server_state(request)
    try:
        segments = _raw_segments(request)
        if len(segments) == 1 and segments[0]:
            return await _file_op(request, state, segments[0])
        if len(segments) == 3 and segments[1] == "move" and request.method == "POST":
            return await run_in_threadpool(_move, request, state, segments[0], segments[2])
    except PathRefused as exc:
        return error_response(exc.status, exc.code, exc.message)
    except UnicodeDecodeError:
        return error_response(400, "path_refused", "the file name is not valid UTF-8")
    return error_response(404, "not_found", "encode the file path as one segment, e.g. workflows%2Fa.json")


async def _file_op(request: Request, state: ServerState, relative: str) -> Response:
    path = _user_path(state, relative)
    if request.method == "GET":
        if not path.is_file():
            return error_response(404, "not_found", f"{relative!r} does not exist")
        return FileResponse(path)
    if request.method == "DELETE":
        if not path.is_file():
            return error_response(404, "not_found", f"{relative!r} does not exist")
        await run_in_threadpool(path.unlink)
        return Response(status_code=204)
    _not_a_folder(path, relative)
    data = await request.body()
    if path.exists() and not _flag(request, "overwrite", True):
        return error_response(409, "file_exists", f"{relative!r} exists; pass overwrite=true to replace it")
    await run_in_threadpool(_write_atomic, path, data)
    return _saved(request, path, relative)


def _saved(request: Request, path: Path, relative: str) -> Response:
    if _flag(request, "full_info", False):
        return JSONResponse(file_info(path, relative))
    return JSONResponse(relative)


def _move(request: Request, state: ServerState, source_rel: str, dest_rel: str) -> Response:
    source, dest = _user_path(state, source_rel), _user_path(state, dest_rel)
    with state.user_lock:
        if not source.is_file():
            return error_response(404, "not_found", f"{source_rel!r} does not exist")
        _not_a_folder(dest, dest_rel)
        if dest.exists() and not _flag(request, "overwrite", True):
            return error_response(
                409, "file_exists", f"{dest_rel!r} exists; pass overwrite=true to replace it"
            )
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, dest)
        except (FileExistsError, NotADirectoryError):
            raise PathRefused(f"{dest_rel!r} runs into a file where a folder is needed", 409) from None
    return _saved(request, dest, dest_rel)
