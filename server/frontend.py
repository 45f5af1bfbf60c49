"""Serving the installed ComfyUI web client (`comfyui_frontend_package`, GPL: served, never copied)."""

from __future__ import annotations

import importlib.resources
import logging
import mimetypes
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from engine.errors import DiffgraphError

log = logging.getLogger(__name__)
FRONTEND_PACKAGE = "comfyui_frontend_package"
NO_CACHE = "no-cache"
MISSING_PAGE = (
    "<!doctype html><title>diffgraph</title><p>The web client is not installed. Install it with "
    "<code>pip install comfyui-frontend-package==1.58.1</code>, or start the server with "
    "<code>--front-end-root DIR</code>. The HTTP and websocket API work without it.</p>"
)

# Browsers refuse module scripts served as text/plain, which some systems' mime tables give for .js.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/css", ".css")


class FrontendMissing(DiffgraphError):
    """--front-end-root points at a folder without index.html."""

    code = "frontend_missing"


def find_frontend(front_end_root: Path | None) -> Path | None:
    """The static folder to serve: --front-end-root if given, else the installed package's static/."""
    if front_end_root is not None:
        root = Path(front_end_root).resolve()
        if not (root / "index.html").is_file():
            raise FrontendMissing(
                f"--front-end-root {root} has no index.html; point it at the client's static folder"
            )
        return root
    try:
        static = importlib.resources.files(FRONTEND_PACKAGE) / "static"
    except ModuleNotFoundError:
        log.warning("%s is not installed; serving the API without the web client", FRONTEND_PACKAGE)
        return None
    root = Path(str(static))
    return root if (root / "index.html").is_file() else None


def needs_no_cache(path: str) -> bool:
    """ComfyUI's rule: scripts, styles and index*.json must be revalidated (they change between versions)."""
    name = path.rsplit("/", 1)[-1]
    return name.endswith((".js", ".css")) or (name.startswith("index") and name.endswith(".json"))


class FrontendFiles(StaticFiles):
    """StaticFiles with ComfyUI's cache headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """Serve a file, adding Cache-Control: no-cache where ComfyUI does."""
        response = await super().get_response(path, scope)
        if needs_no_cache(path):
            response.headers["Cache-Control"] = NO_CACHE
        return response
