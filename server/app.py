"""The ASGI application: every route bare and under /api, the websocket, the web client and the worker."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from engine.atomic_files import FileWriteError
from engine.context import Environment
from engine.errors import DiffgraphError
from engine.registry import Registry
from server import (
    routes_extensions,
    routes_files,
    routes_info,
    routes_internal,
    routes_jobs,
    routes_prompt,
    routes_templates,
    routes_user,
)
from server.frontend import MISSING_PAGE, NO_CACHE, FrontendFiles, find_frontend
from server.hub import Bridge, Hub
from server.logs import terminal_size
from server.paths import PathRefused
from server.pool import WorkerPool
from server.security import TOKEN_COOKIE, Guard, install_log_redaction
from server.settings import ServerSettings
from server.state import ServerState, error_response
from server.store import JobStore
from server.templates import ensure_example_input
from server.worker import Worker

log = logging.getLogger(__name__)
TEMP_MARKER = ".diffgraph-temp"
USER_FOLDERS = ("workflows", "subgraphs")
ROUTERS = (
    routes_prompt.router,
    routes_jobs.router,
    routes_files.router,
    routes_info.router,
    routes_user.router,
    routes_extensions.router,
    routes_internal.router,
)


def clear_temp(temp_dir: Path) -> None:
    """Wipe the preview folder at start, as ComfyUI does, but only a folder diffgraph claimed when empty."""
    temp_dir.mkdir(parents=True, exist_ok=True)
    marker = temp_dir / TEMP_MARKER
    if not marker.exists():
        if any(temp_dir.iterdir()):
            log.warning("temp folder %s holds files diffgraph did not create; not clearing it", temp_dir)
            return
        marker.touch()
        return
    for child in temp_dir.iterdir():
        if child.name == TEMP_MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _lifespan(state: ServerState):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(clear_temp, state.env.temp_dir)
        for folder in (state.env.output_dir, state.env.input_dir, state.user_root):
            folder.mkdir(parents=True, exist_ok=True)
        # The client lists these at every start; present and empty, they answer [] instead of a 404.
        for name in USER_FOLDERS:
            (state.user_root / name).mkdir(exist_ok=True)
        await run_in_threadpool(ensure_example_input, state.env.input_dir)
        bridge = state.bridge = Bridge(asyncio.get_running_loop())
        state.store.on_change = lambda remaining: bridge.call(state.hub.status, remaining)
        state.hub.queue_remaining = state.store.queue_remaining()
        state.logs.listener = lambda entries: bridge.call(state.hub.logs, entries, terminal_size())
        logging.getLogger().addHandler(state.logs)
        if state.slots:
            state.worker = WorkerPool(
                state.registry,
                state.env,
                state.store,
                state.hub,
                state.bridge,
                state.slots,
            )
        else:
            state.worker = Worker(
                state.registry,
                state.env,
                state.store,
                state.hub,
                state.bridge,
                tracebacks=state.settings.loopback_only,
            )
        state.worker.start()
        try:
            yield
        finally:
            await run_in_threadpool(state.worker.stop)
            logging.getLogger().removeHandler(state.logs)
            state.logs.listener = None
            state.store.on_change = None
            state.store.close()

    return lifespan


def _index_route(state: ServerState) -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        """The web client's index.html (no-cache); `?token=` is turned into a same-site cookie."""
        token = request.query_params.get("token")
        if state.settings.token and token:
            response: Response = RedirectResponse("./", status_code=303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response
        if state.frontend_root is None:
            return HTMLResponse(MISSING_PAGE)
        return FileResponse(state.frontend_root / "index.html", headers={"Cache-Control": NO_CACHE})

    return router


def create_app(
    registry: Registry, env: Environment, *, settings: ServerSettings, slots: list[Any] | None = None
) -> FastAPI:
    """Build the server for a registry and environment; the worker starts with the app's lifespan.

    `slots`: executors that run prompts elsewhere, one prompt each at a time (a Ray pool).
    """
    install_log_redaction()
    frontend_root = find_frontend(settings.front_end_root) if settings.serve_frontend else None
    store = JobStore(
        settings.database,
        history_limit=settings.history_limit,
        requeue=settings.requeue,
        on_bad=settings.bad_database,
    )
    if store.moved_note:
        log.warning("%s", store.moved_note)
    if store.requeued:
        log.warning("re-queued at the front the prompt running when the server stopped: %s", store.requeued)
    if store.recovered:
        log.warning(
            "marked %d prompt(s) failed that were running when the server stopped", len(store.recovered)
        )
    state = ServerState(registry, env, settings, store, Hub({}), frontend_root, slots=slots)
    state.hub.server_flags = state.server_flags()
    app = FastAPI(
        title="diffgraph", lifespan=_lifespan(state), docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.server = state
    for router in ROUTERS:
        app.include_router(router)
        app.include_router(router, prefix="/api")

    async def websocket(ws: WebSocket) -> None:
        latents = ws.query_params.get("latents", "").lower() in ("1", "true", "yes")
        await state.hub.serve(ws, ws.query_params.get("clientId"), latents)

    app.include_router(routes_templates.router)  # not under /api: the client asks for /templates/...
    app.add_api_websocket_route("/ws", websocket)
    app.add_api_websocket_route("/api/ws", websocket)

    @app.exception_handler(PathRefused)
    async def path_refused(request: Request, exc: PathRefused) -> Response:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(FileWriteError)
    async def write_failed(request: Request, exc: FileWriteError) -> Response:
        log.error("%s", exc.message)
        return error_response(507, exc.code, exc.message)

    @app.exception_handler(sqlite3.OperationalError)
    async def store_failed(request: Request, exc: sqlite3.OperationalError) -> Response:
        log.error("the queue database %s cannot be used: %s", settings.database, exc)
        return error_response(503, "store_unavailable", f"the queue database cannot be used: {exc}")

    @app.exception_handler(DiffgraphError)
    async def diffgraph_error(request: Request, exc: DiffgraphError) -> Response:
        return error_response(400, exc.code, exc.message, exc.details)

    app.include_router(_index_route(state))
    routes_extensions.mount_pack_files(app, registry)
    if frontend_root is not None:
        app.mount("/", FrontendFiles(directory=frontend_root), name="frontend")
    app.add_middleware(Guard, settings=settings)
    return app
