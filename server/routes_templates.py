"""/templates: the index and files of the client's Templates dialog (see server.templates)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from server.frontend import NO_CACHE
from server.state import error_response, server_state

router = APIRouter()
WEB_DIR = Path(__file__).parent / "web"
# Our own client extension (server/web), imported by the client from the /extensions list.
EXTENSION_URLS = ("/extensions/diffgraph/first_run.js",)
_INDEX = re.compile(r"^index(\.[A-Za-z\-]+)?\.json$")


@router.get("/extensions/diffgraph/{name}")
def extension_file(name: str) -> Response:
    """diffgraph's own client extension scripts."""
    path = WEB_DIR / name
    if "/" in name or not name.endswith(".js") or not path.is_file():
        return error_response(404, "not_found", f"no diffgraph extension {name!r}")
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": NO_CACHE})


@router.get("/templates/first_run.json")
def first_run(request: Request) -> Response:
    """The workflow a new user's client opens (see server/web/first_run.js)."""
    workflow = server_state(request).templates.first_run()
    if workflow is None:
        return error_response(404, "template_not_found", "diffgraph's ready workflows are not installed")
    return JSONResponse(workflow)


@router.get("/templates/index_logo.json")
def index_logo(request: Request) -> Response:
    """Provider logos of the official templates (none without the package)."""
    official = server_state(request).templates.official_dir
    path = official / "index_logo.json" if official is not None else None
    body = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    return JSONResponse(body, headers={"Cache-Control": NO_CACHE})


@router.get("/templates/{name}")
async def template_file(request: Request, name: str) -> Response:
    """`index.json` (and its localised names: ours are English), or one template file."""
    library = server_state(request).templates
    if _INDEX.match(name):
        index = await run_in_threadpool(library.index)
        return JSONResponse(index, headers={"Cache-Control": NO_CACHE})
    path = library.file(name)
    if path is None:
        return error_response(404, "template_not_found", f"no template file {name!r}")
    return FileResponse(path)
