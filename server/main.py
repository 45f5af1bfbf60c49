"""Running the server: command-line options for `diffgraph serve`, and uvicorn startup."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from engine.context import Environment, default_model_store
from engine.errors import DiffgraphError
from engine.model_paths import MODELS_DIR_ENV, ModelPaths, models_dir_default
from engine.registry import Registry, RegistryFactory
from server.app import create_app
from server.security import install_log_redaction
from server.settings import MB, ServerSettings
from server.store_file import BAD_DATABASE_CHOICES

log = logging.getLogger(__name__)
TOKEN_ENV = "DIFFGRAPH_TOKEN"
SWITCH_INTERVAL_S = 0.0005


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `diffgraph serve` to an argparse (sub)parser."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8188, help="port (default 8188; 0 picks a free one)")
    parser.add_argument(
        "--base-dir", type=Path, default=Path("."), help="default parent of the folders below"
    )
    parser.add_argument(
        "--models-dir", type=Path, help=f"models folder (default ${MODELS_DIR_ENV} or BASE/models)"
    )
    parser.add_argument("--input-dir", type=Path, help="uploads and LoadImage files (default BASE/input)")
    parser.add_argument("--output-dir", type=Path, help="saved outputs (default BASE/output)")
    parser.add_argument("--temp-dir", type=Path, help="preview files, wiped at start (default BASE/temp)")
    parser.add_argument(
        "--user-dir", type=Path, help="settings, workflows, queue database (default BASE/user)"
    )
    parser.add_argument("--front-end-root", type=Path, help="serve the web client from this folder instead")
    parser.add_argument("--token", help=f"require this token from every client (or set ${TOKEN_ENV})")
    parser.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without a token")
    parser.add_argument("--allow-origin", action="append", default=[], help="extra origin allowed cross-site")
    parser.add_argument("--max-upload-size", type=float, default=100, help="request body limit in MB (100)")
    parser.add_argument("--max-prompt-size", type=float, default=16, help="prompt body limit in MB (16)")
    parser.add_argument(
        "--max-text-length",
        type=int,
        default=20_000,
        help="longest text one prompt input may hold, in characters (20000)",
    )
    parser.add_argument(
        "--no-requeue",
        action="store_true",
        help="mark the prompt running at a crash failed instead of re-queueing it once",
    )
    parser.add_argument(
        "--bad-database",
        choices=BAD_DATABASE_CHOICES,
        default="move",
        help="a corrupt or newer-version queue database is renamed and kept (move) or stops the start (refuse)",
    )
    parser.add_argument("--preview-size", type=int, default=512, help="largest side of live previews (512)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """ServerSettings from parsed `serve` options."""
    base: Path = args.base_dir
    return ServerSettings(
        user_dir=args.user_dir or base / "user",
        host=args.host,
        port=args.port,
        front_end_root=args.front_end_root,
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        insecure=args.insecure,
        max_upload_size=int(args.max_upload_size * MB),
        max_prompt_size=int(args.max_prompt_size * MB),
        allowed_origins=tuple(args.allow_origin),
        max_text_length=args.max_text_length,
        requeue=not args.no_requeue,
        bad_database=args.bad_database,
        argv=list(sys.argv),
    )


def environment_from_args(args: argparse.Namespace, models: Any = None) -> Environment:
    """Folders from parsed `serve` options, with a model store."""
    base: Path = args.base_dir
    models_dir = args.models_dir or models_dir_default(base)
    return Environment(
        output_dir=args.output_dir or base / "output",
        temp_dir=args.temp_dir or base / "temp",
        input_dir=args.input_dir or base / "input",
        models=models,
        model_paths=ModelPaths(models_dir),
        preview_size=args.preview_size,
    )


def run_serve(
    args: argparse.Namespace,
    build_registry: RegistryFactory,
    *,
    make_models: Callable[[], Any] = default_model_store,
    make_slots: Callable[[Environment], list[Any]] | None = None,
) -> int:
    """`diffgraph serve`: build everything from parsed options and serve until stopped; exit status.

    `make_slots` builds executors that run prompts elsewhere (a Ray pool) for the environment.
    """
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = settings_from_args(args)
    try:
        settings.check_bind()
        env = environment_from_args(args, None if make_slots else make_models())
        registry = build_registry(env.model_paths, env.input_dir)
        slots = make_slots(env) if make_slots else None
        serve(registry, env, settings, log_level=args.log_level, slots=slots)
    except DiffgraphError as exc:
        print(f"diffgraph serve: {exc.message}", file=sys.stderr)
        return 2
    return 0


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (so port 0 is known before uvicorn starts)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    registry: Registry,
    env: Environment,
    settings: ServerSettings,
    *,
    log_level: str = "info",
    slots: list[Any] | None = None,
) -> None:
    """Serve until interrupted; prints `diffgraph server listening on URL` once the port is bound."""
    settings.check_bind()
    app = create_app(registry, env, settings=settings, slots=slots)
    sock = bind_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        app, ws="websockets-sansio", lifespan="on", log_level=log_level, timeout_graceful_shutdown=5
    )
    # Hand the GIL over every 0.5 ms instead of 5: request threads waiting behind the worker's Python
    # code answer in a few milliseconds rather than tens.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    install_log_redaction()  # after uvicorn.Config, which (re)configures its loggers
    print(f"diffgraph server listening on http://{shown}:{port}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
