"""ComfyUI's /internal routes the web client calls: logs, log streaming, file lists and model folders."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from engine.model_paths import FOLDERS
from server.routes_prompt import json_body
from server.state import error_response, server_state

router = APIRouter(prefix="/internal")
# Marker files diffgraph keeps in its folders; not the user's files.
HIDDEN_PREFIX = "."


@router.get("/logs")
def logs(request: Request) -> Response:
    """The recent log lines as one string."""
    return JSONResponse(server_state(request).logs.text())


@router.get("/logs/raw")
def logs_raw(request: Request) -> Response:
    """{entries: [{t, m}], size: {cols, rows}} for the logs panel."""
    return JSONResponse(server_state(request).logs.raw())


@router.patch("/logs/subscribe")
async def logs_subscribe(request: Request) -> Response:
    """{clientId, enabled}: new log lines go to that websocket client as `logs` messages."""
    try:
        body = await json_body(request)
        client_id, enabled = body["clientId"], body["enabled"]
        if not isinstance(client_id, str) or not isinstance(enabled, bool):
            raise ValueError("clientId must be a string and enabled a boolean")
    except (ValueError, KeyError, TypeError) as exc:
        return error_response(400, "invalid_request", f"expected {{clientId, enabled}}: {exc}")
    server_state(request).hub.subscribe_logs(client_id, enabled)
    return Response(status_code=200)


@router.get("/folder_paths")
def folder_paths(request: Request) -> dict[str, Any]:
    """{model folder: [absolute paths]}."""
    paths = server_state(request).env.model_paths
    if paths is None:
        return {}
    return {folder: [str(paths.folder(folder).resolve())] for folder in FOLDERS}


@router.get("/files/{directory_type}")
def files(request: Request, directory_type: str) -> Response:
    """File names directly in input/, output/ or temp/, newest first (the assets panel's list)."""
    env = server_state(request).env
    folders = {"input": env.input_dir, "output": env.output_dir, "temp": env.temp_dir}
    if directory_type not in folders:
        return error_response(400, "invalid_directory_type", "directory type must be input, output or temp")
    folder = folders[directory_type]
    if not folder.is_dir():
        return JSONResponse([])
    with os.scandir(folder) as entries:
        found = [
            (entry.stat().st_mtime, entry.name)
            for entry in entries
            if entry.is_file() and not entry.name.startswith(HIDDEN_PREFIX)
        ]
    return JSONResponse([name for _, name in sorted(found, key=lambda item: -item[0])])
