"""Read-only info routes: node schemas, models, system stats, feature flags, extensions and friends."""

from __future__ import annotations

import json
import logging
import os
import platform
import struct
import sys
from importlib import metadata
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from engine.model_paths import FOLDERS, MODEL_EXTENSIONS, ModelPathError
from server.state import ServerState, error_response, server_state

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/object_info")
def object_info(request: Request) -> Response:
    """Every node's ComfyUI schema; a node whose schema fails is logged and left out."""
    registry = server_state(request).registry
    info: dict[str, Any] = {}
    for class_type in registry:
        try:
            info[class_type] = registry.node_info(class_type)
        except Exception:  # one broken node must not empty the whole library in the client
            log.exception("object_info of %s failed; it is left out", class_type)
    return JSONResponse(info)


@router.get("/object_info/{class_type}")
def object_info_one(request: Request, class_type: str) -> Response:
    """{class_type: schema}, or {} for an unknown node (as ComfyUI answers)."""
    registry = server_state(request).registry
    if class_type not in registry:
        return JSONResponse({})
    return JSONResponse({class_type: registry.node_info(class_type)})


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _ram() -> tuple[int, int]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0, 0


def _devices() -> list[dict[str, Any]]:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        index = torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        return [
            {
                "name": f"cuda:{index} {torch.cuda.get_device_name(index)}",
                "type": "cuda",
                "index": index,
                "vram_total": total,
                "vram_free": free,
                "torch_vram_total": torch.cuda.memory_reserved(index),
                "torch_vram_free": torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index),
            }
        ]
    total, free = _ram()
    return [
        {
            "name": "cpu",
            "type": "cpu",
            "index": None,
            "vram_total": total,
            "vram_free": free,
            "torch_vram_total": 0,
            "torch_vram_free": 0,
        }
    ]


@router.get("/system_stats")
def system_stats(request: Request) -> dict[str, Any]:
    """Versions, RAM and devices, in ComfyUI's shape."""
    state = server_state(request)
    total, free = _ram()
    frontend = _version("comfyui-frontend-package")
    return {
        "system": {
            "os": platform.system().lower() if os.name != "nt" else "nt",
            "ram_total": total,
            "ram_free": free,
            "comfyui_version": f"diffgraph {_version('diffgraph')}",
            "required_frontend_version": frontend,
            "installed_templates_version": None,
            "required_templates_version": None,
            "python_version": sys.version,
            "pytorch_version": _version("torch"),
            "embedded_python": False,
            # diffgraph has no paid API nodes; the flag also stops the client's update check online.
            "argv": [*state.settings.argv, "--disable-api-nodes"],
        },
        "devices": _devices(),
    }


@router.get("/features")
def features(request: Request) -> dict[str, Any]:
    """The server's feature flags (the same the websocket sends)."""
    return server_state(request).server_flags()


def _model_names(state: ServerState, folder: str) -> list[str]:
    paths = state.env.model_paths
    return paths.list(folder) if paths is not None else []


@router.get("/embeddings")
def embeddings(request: Request) -> list[str]:
    """Embedding names without extension."""
    names = _model_names(server_state(request), "embeddings")
    return [name.rsplit(".", 1)[0] if name.lower().endswith(MODEL_EXTENSIONS) else name for name in names]


@router.get("/models")
def model_folders() -> list[str]:
    """Model folder kinds."""
    return list(FOLDERS)


@router.get("/models/{folder}")
def model_list(request: Request, folder: str) -> Response:
    """Model names in one folder; 404 for an unknown folder."""
    if folder not in FOLDERS:
        return error_response(404, "unknown_model_folder", f"{folder!r} is not one of {list(FOLDERS)}")
    return JSONResponse(_model_names(server_state(request), folder))


@router.get("/experiment/models")
def experiment_models(request: Request) -> list[dict[str, Any]]:
    """[{name, folders}] for the model library panel."""
    paths = server_state(request).env.model_paths
    return [{"name": f, "folders": [str(paths.folder(f).resolve())] if paths else []} for f in FOLDERS]


@router.get("/experiment/models/{folder}")
def experiment_model_list(request: Request, folder: str) -> Response:
    """[{name, pathIndex, modified, size}] for one folder."""
    state = server_state(request)
    if folder not in FOLDERS or state.env.model_paths is None:
        return error_response(404, "unknown_model_folder", f"{folder!r} is not a model folder")
    base = state.env.model_paths.folder(folder)
    items = []
    for name in _model_names(state, folder):
        stat = (base / name).stat()
        items.append(
            {
                "name": name,
                "pathIndex": 0,
                "modified": stat.st_mtime,
                "created": stat.st_ctime,
                "size": stat.st_size,
            }
        )
    return JSONResponse(items)


@router.get("/view_metadata/{folder}")
def view_metadata(request: Request, folder: str) -> Response:
    """The `__metadata__` of a safetensors file, or 404."""
    state = server_state(request)
    name = request.query_params.get("filename", "")
    if state.env.model_paths is None or not name.endswith(".safetensors"):
        return error_response(404, "not_found", "no safetensors file given")
    try:
        path = state.env.model_paths.resolve(folder, name)
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(min(length, 100 * 1024 * 1024)))
    except ModelPathError as exc:
        return error_response(404, exc.code, exc.message)
    except (OSError, ValueError, struct.error) as exc:
        return error_response(400, "invalid_safetensors", f"{name!r}: {exc}")
    return JSONResponse(header.get("__metadata__") or {})


@router.get("/i18n")
def i18n() -> dict[str, Any]:
    """No extra translations: the client's own ones apply."""
    return {}


@router.get("/workflow_templates")
def workflow_templates() -> dict[str, Any]:
    """No node pack ships templates."""
    return {}


@router.get("/global_subgraphs")
def global_subgraphs() -> dict[str, Any]:
    """No shared subgraph blueprints."""
    return {}
