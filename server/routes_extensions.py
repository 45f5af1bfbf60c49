"""Web-client extensions: the JS files the client imports (its own and custom-node packs'), and the pack list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request

from engine.registry import Registry
from server.frontend import FrontendFiles
from server.routes_templates import EXTENSION_URLS
from server.state import server_state

router = APIRouter()


def pack_web_dirs(registry: Registry) -> dict[str, Path]:
    """URL name -> web folder of each loaded pack that declares a WEB_DIRECTORY."""
    return {
        info.name: info.web_dir for info in registry.packs if info.error is None and info.web_dir is not None
    }


def mount_pack_files(app: FastAPI, registry: Registry) -> None:
    """Serve each pack's web folder under /extensions/<pack>/, as ComfyUI does (before the client's files).

    A pack's HTTP routes are served at their path and under /api, as ComfyUI serves them; routes of
    diffgraph's own with the same path were added first and win.
    """
    for name, folder in pack_web_dirs(registry).items():
        app.mount(f"/extensions/{name}", FrontendFiles(directory=folder), name=f"extension-{name}")
    for info in registry.packs:
        for method, path, endpoint in info.routes:
            for prefix in ("", "/api"):
                app.add_route(prefix + path, endpoint, methods=[method])


def _scripts(root: Path, prefix: str) -> list[str]:
    return sorted(f"{prefix}/{p.relative_to(root).as_posix()}" for p in root.rglob("*.js"))


@router.get("/extensions")
def extensions(request: Request) -> list[str]:
    """JS files the client imports: its own extensions/ and every pack's web folder, as URLs."""
    state = server_state(request)
    root = state.frontend_root
    found = []
    if root is not None and (root / "extensions").is_dir():
        found = _scripts(root / "extensions", "/extensions")
    for name, folder in pack_web_dirs(state.registry).items():
        found.extend(_scripts(folder, f"/extensions/{name}"))
    # diffgraph's own client extension (first-run workflow) comes last.
    return found + list(EXTENSION_URLS)


@router.get("/custom_node_packs")
def custom_node_packs(request: Request) -> list[dict[str, Any]]:
    """Every custom-node pack the server tried to load: folder, protocol, nodes, or the error."""
    return [info.as_dict() for info in server_state(request).registry.packs]
