"""File routes: /view, /upload/image, /upload/mask, and reading a workflow out of an uploaded image."""

from __future__ import annotations

import io
import json
import mimetypes
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from PIL import Image, PngImagePlugin
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from engine.atomic_files import atomic_write_bytes
from engine.errors import DiffgraphError
from engine.formats.media_metadata import read_embedded_workflow
from server.paths import PathRefused, resolve_inside
from server.state import ServerState, error_response, server_state

router = APIRouter()
ANNOTATIONS = {" [output]": "output", " [input]": "input", " [temp]": "temp"}
# Served as downloads, never rendered: a file in output/ must not run script in our origin.
ACTIVE_TYPES = (
    "text/html",
    "application/javascript",
    "text/javascript",
    "text/css",
    "image/svg+xml",
    "application/xml",
    "text/xml",
)


def base_dir(state: ServerState, kind: str) -> Path:
    """The folder of a file type: output, input or temp."""
    folders = {"output": state.env.output_dir, "input": state.env.input_dir, "temp": state.env.temp_dir}
    if kind not in folders:
        raise PathRefused(f"type {kind!r} is not one of output, input, temp")
    return folders[kind]


def _refused(exc: PathRefused) -> Response:
    return error_response(exc.status, exc.code, exc.message)


def _reencoded(path: Path, preview: str | None, channel: str) -> Response:
    with Image.open(path) as img:
        img.load()
        if preview:
            fmt, _, quality = preview.partition(";")
            fmt = "jpeg" if fmt == "jpeg" and "a" not in channel else "webp"
            out = img.convert("RGB" if fmt == "jpeg" else "RGBA")
            params: dict[str, Any] = {
                "quality": int(quality) if quality.isascii() and quality.isdigit() else 90
            }
        elif channel == "rgb":
            fmt, out, params = "png", img.convert("RGB"), {}
        else:  # channel == "a": the alpha channel alone, on black
            fmt, params = "png", {}
            rgba = img.convert("RGBA")
            out = Image.new("RGBA", img.size)
            out.putalpha(rgba.getchannel("A"))
    buffer = io.BytesIO()
    out.save(buffer, format=fmt.upper(), **params)
    return Response(buffer.getvalue(), media_type=f"image/{fmt}")


@router.get("/view")
def view(request: Request) -> Response:
    """A file from output/, input/ or temp/; `preview=webp;90` and `channel=rgb|a` re-encode images."""
    state = server_state(request)
    query = request.query_params
    filename = query.get("filename", "")
    kind = query.get("type") or "output"
    for suffix, annotated in ANNOTATIONS.items():
        if filename.endswith(suffix):
            filename, kind = filename[: -len(suffix)], annotated
    if not filename:
        return error_response(400, "path_refused", "filename is required")
    try:
        path = resolve_inside(base_dir(state, kind), query.get("subfolder", ""), filename, need_name=True)
    except PathRefused as exc:
        return _refused(exc)
    if not path.is_file():
        return error_response(404, "file_not_found", f"{filename!r} is not in {kind}/")
    channel = query.get("channel", "rgba")
    preview = query.get("preview")
    if preview or channel in ("rgb", "a"):
        try:
            return _reencoded(path, preview, channel)
        except (OSError, ValueError) as exc:
            return error_response(400, "not_an_image", f"{filename!r} cannot be re-encoded: {exc}")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if media_type in ACTIVE_TYPES:
        media_type = "application/octet-stream"
    return FileResponse(
        path,
        media_type=media_type,
        filename=path.name,
        content_disposition_type="inline",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def _free_name(target: Path, data: bytes) -> Path:
    """ComfyUI's collision rule: same bytes reuse the name, else `name (1).ext`, `(2)`..."""
    candidate, counter = target, 1
    while candidate.exists():
        if candidate.is_file() and candidate.read_bytes() == data:
            return candidate
        candidate = target.with_name(f"{target.stem} ({counter}){target.suffix}")
        counter += 1
    return candidate


def save_upload(
    state: ServerState, data: bytes, filename: str, kind: str, subfolder: str, overwrite: bool
) -> dict[str, Any]:
    """Store an uploaded file; returns {name, subfolder, type} as the frontend expects."""
    target = resolve_inside(base_dir(state, kind), subfolder, filename, need_name=True)
    if target.is_dir():
        raise PathRefused(f"{filename!r} is a folder in {kind}/; give the file another name", status=409)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not overwrite:
            target = _free_name(target, data)
        atomic_write_bytes(target, data)
    except (FileExistsError, NotADirectoryError):
        raise PathRefused(f"subfolder {subfolder!r} runs into a file in {kind}/, not a folder", 409) from None
    return {"name": target.name, "subfolder": subfolder, "type": kind}


async def _upload_form(request: Request) -> tuple[bytes, str, dict[str, str]]:
    async with request.form(max_files=2, max_fields=20) as form:
        upload = form.get("image")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise ValueError("the form needs a file field 'image' with a file name")
        data = await upload.read()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        return data, upload.filename, fields


def _overwrite(fields: dict[str, str]) -> bool:
    return fields.get("overwrite", "").lower() in ("true", "1")


@router.post("/upload/image")
async def upload_image(request: Request) -> Response:
    """Multipart `image`, `type` (input|temp|output), `subfolder`, `overwrite`."""
    state = server_state(request)
    try:
        data, filename, fields = await _upload_form(request)
        info = await run_in_threadpool(
            save_upload,
            state,
            data,
            filename,
            fields.get("type") or "input",
            fields.get("subfolder", ""),
            _overwrite(fields),
        )
    except PathRefused as exc:
        return _refused(exc)
    except ValueError as exc:
        return error_response(400, "invalid_upload", str(exc))
    return JSONResponse(info)


def merge_mask(state: ServerState, data: bytes, ref: dict[str, Any]) -> bytes:
    """The original image with its alpha replaced by the uploaded mask's alpha; PNG text chunks kept."""
    source = resolve_inside(
        base_dir(state, str(ref.get("type") or "input")),
        str(ref.get("subfolder") or ""),
        str(ref.get("filename") or ""),
        need_name=True,
    )
    if not source.is_file():
        raise ValueError(f"original_ref {ref.get('filename')!r} does not exist")
    with Image.open(source) as original, Image.open(io.BytesIO(data)) as mask:
        info = PngImagePlugin.PngInfo()
        for key, value in (getattr(original, "text", None) or {}).items():
            info.add_text(key, value)
        alpha = mask.convert("RGBA").getchannel("A")
        if alpha.size != original.size:
            alpha = alpha.resize(original.size, Image.Resampling.BILINEAR)
        merged = original.convert("RGBA")
        merged.putalpha(alpha)
    buffer = io.BytesIO()
    merged.save(buffer, format="PNG", pnginfo=info, compress_level=4)
    return buffer.getvalue()


@router.post("/upload/mask")
async def upload_mask(request: Request) -> Response:
    """Like /upload/image, plus `original_ref` JSON: the mask's alpha is put onto that original."""
    state = server_state(request)
    try:
        data, filename, fields = await _upload_form(request)
        ref = json.loads(fields.get("original_ref") or "null")
        if not isinstance(ref, dict):
            raise ValueError("original_ref must be a JSON object {filename, subfolder, type}")
        merged = await run_in_threadpool(merge_mask, state, data, ref)
        info = await run_in_threadpool(
            save_upload,
            state,
            merged,
            filename,
            fields.get("type") or "input",
            fields.get("subfolder", ""),
            _overwrite(fields),
        )
    except PathRefused as exc:
        return _refused(exc)
    except (ValueError, OSError) as exc:
        return error_response(400, "invalid_upload", str(exc))
    return JSONResponse(info)


@router.post("/workflow/from_media")
async def workflow_from_media(request: Request) -> Response:
    """diffgraph extension: the API prompt and UI workflow embedded in an uploaded PNG/WebP/video."""
    try:
        async with request.form(max_files=1, max_fields=5) as form:
            upload = form.get("image") or form.get("file")
            if not isinstance(upload, UploadFile):
                raise ValueError("the form needs a file field 'image' (or 'file')")
            data = await upload.read()
        embedded = await run_in_threadpool(read_embedded_workflow, data)
    except ValueError as exc:
        return error_response(400, "invalid_upload", str(exc))
    except DiffgraphError as exc:
        return error_response(400, exc.code, exc.message)
    if not embedded.found:
        return error_response(404, "no_workflow_metadata", "the file carries no workflow")
    return JSONResponse({"prompt": embedded.prompt, "workflow": embedded.workflow})
