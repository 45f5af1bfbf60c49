"""ComfyUI's execution routes: /prompt, /queue, /history, /interrupt, /free."""

from __future__ import annotations

import math
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from engine.precision import PrecisionError, requested_precision
from engine.strict_json import loads_strict
from engine.validation import validate_prompt
from server.inputs import InputRejected, oversized_texts, query_int, read_json
from server.jobs import UnstorableValue
from server.state import ServerState, error_response, server_state
from server.store import FINISHED

router = APIRouter()
# Credentials for ComfyUI's paid API nodes; diffgraph never uses them and must not store them.
SENSITIVE_EXTRA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
MAX_ID_LENGTH = 256
# Bodies up to this size are parsed, validated and queued on the event loop (see post_prompt).
INLINE_PROMPT_SIZE = 256 * 1024
# GET /queue is answered on the event loop up to this many queued prompts, in a thread beyond.
INLINE_QUEUE_ITEMS = 1000


async def json_body(request: Request) -> Any:
    """The request body as strict JSON ({} when empty); raises InputRejected (a 400) otherwise."""
    return await read_json(request, empty={})


def prompt_error(
    status: int, code: str, message: str, details: str = "", node_errors: Any = None
) -> JSONResponse:
    """A /prompt error body: ComfyUI always sends node_errors beside error."""
    body = {
        "error": {"type": code, "message": message, "details": details, "extra_info": {}},
        "node_errors": node_errors or {},
    }
    return JSONResponse(body, status_code=status)


@router.get("/prompt")
def get_prompt(request: Request) -> dict[str, Any]:
    """Queue size, for clients polling without a websocket."""
    return {"exec_info": {"queue_remaining": server_state(request).store.queue_remaining()}}


@router.post("/prompt")
async def post_prompt(request: Request) -> Response:
    """Validate a prompt and queue it; 400 with node_errors when nothing in it can run."""
    state = server_state(request)
    raw = await request.body()
    limit = state.settings.max_prompt_size
    if len(raw) > limit:
        return prompt_error(413, "prompt_too_large", f"The prompt is larger than {limit} bytes.")
    if len(raw) > INLINE_PROMPT_SIZE:
        # A large body takes milliseconds to parse and check: a thread keeps the event loop free.
        return await run_in_threadpool(parse_and_enqueue, state, raw)
    # An ordinary prompt costs a fraction of a millisecond to parse, check and insert, less than
    # the two thread hand-overs a pool would add, each of which waits for the GIL and, on a busy
    # machine, for a core: done here, a burst of submissions answers in a few milliseconds each.
    return parse_and_enqueue(state, raw)


def parse_and_enqueue(state: ServerState, raw: bytes) -> JSONResponse:
    """Strict-parse a POST /prompt body, then validate and queue it; every refusal is a 400."""
    try:
        body = loads_strict(raw, "the request body")
        return enqueue_prompt(state, body)
    except (InputRejected, UnstorableValue) as exc:
        message = exc.message if isinstance(exc, InputRejected) else str(exc)
        return prompt_error(400, "invalid_prompt", message)


def _parse_number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"number must be a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"number must be a number, not {str(value)[:40]!r}") from None
    if not math.isfinite(number) or abs(number) > 2**53:
        raise ValueError(f"number must be a finite number within +-2**53, not {value!r}")
    return number


def enqueue_prompt(state: ServerState, body: Any) -> JSONResponse:
    """The parsed body of POST /prompt: validate and queue (may stat model and input files)."""
    if not isinstance(body, dict):
        return prompt_error(400, "invalid_prompt", "The request body must be a JSON object.")
    if "prompt" not in body:
        return prompt_error(400, "no_prompt", "No prompt provided", "")
    prompt_id = body.get("prompt_id") or uuid.uuid4().hex
    if not isinstance(prompt_id, str) or len(prompt_id) > MAX_ID_LENGTH:
        return prompt_error(
            400, "invalid_prompt", f"prompt_id must be a string of at most {MAX_ID_LENGTH} characters."
        )
    if state.store.exists(prompt_id):
        return prompt_error(400, "duplicate_prompt_id", f"A prompt with id {prompt_id!r} already exists.")
    try:
        number = _parse_number(body.get("number"))
    except ValueError as exc:
        return prompt_error(400, "invalid_prompt", str(exc))
    targets = body.get("partial_execution_targets")
    if targets is not None and not isinstance(targets, list):
        return prompt_error(400, "invalid_prompt", "partial_execution_targets must be a list of node ids.")
    try:
        # A prompt's own precision (extra_data.diffgraph_precision) is checked now, not when it runs.
        requested_precision(body.get("extra_data") if isinstance(body.get("extra_data"), dict) else None)
    except PrecisionError as exc:
        return prompt_error(400, exc.code, exc.message)
    too_long = oversized_texts(body["prompt"], state.settings.max_text_length)
    if too_long:
        message = "Prompt has text inputs over the length limit"
        return prompt_error(400, "prompt_outputs_failed_validation", message, "", too_long)
    result = validate_prompt(body["prompt"], state.registry, targets=targets, env=state.env)
    if not result.ok and (result.error or {}).get("type") == "invalid_prompt":
        return _unreadable_prompt(state, body["prompt"], result.error or {})
    if not result.ok:
        error = result.error or {}
        return prompt_error(
            400,
            error.get("type", "invalid_prompt"),
            error.get("message", "The prompt is invalid."),
            error.get("details", ""),
            result.node_errors,
        )
    raw_extra = body.get("extra_data")
    extra = (
        {k: v for k, v in raw_extra.items() if k not in SENSITIVE_EXTRA_KEYS}
        if isinstance(raw_extra, dict)
        else {}
    )
    client_id = (
        body.get("client_id") if isinstance(body.get("client_id"), str) and body["client_id"] else None
    )
    if client_id is not None and len(client_id) > MAX_ID_LENGTH:
        return prompt_error(400, "invalid_prompt", f"client_id is longer than {MAX_ID_LENGTH} characters.")
    if client_id:
        extra["client_id"] = client_id
    number = state.store.enqueue(
        prompt_id,
        result.prompt,
        extra,
        result.outputs,
        client_id,
        number=number,
        front=bool(body.get("front")),
    )
    return JSONResponse({"prompt_id": prompt_id, "number": number, "node_errors": result.node_errors})


def _unreadable_prompt(state: ServerState, prompt: Any, error: dict[str, Any]) -> JSONResponse:
    """A prompt-level error as ComfyUI sends it (top-level error, empty node_errors), in our words.

    The client shows a top-level error as it is; an unknown node inside node_errors would instead be
    shown as a validation error it does not recognise.
    """
    missing: dict[str, list[str]] = {}
    if isinstance(prompt, dict):
        for node_id, node in prompt.items():
            class_type = node.get("class_type") if isinstance(node, dict) else None
            if isinstance(class_type, str) and class_type not in state.registry:
                missing.setdefault(class_type, []).append(f"#{node_id}")
    if not missing:
        return prompt_error(400, "invalid_prompt", error.get("message", ""), error.get("details", ""))
    names = ", ".join(missing)
    where = "; ".join(f"{name}: node {', '.join(ids)}" for name, ids in missing.items())
    message = (
        f"This workflow uses node types diffgraph does not have: {names}. Replace or remove those nodes, "
        "or install a node pack that provides them."
    )
    return prompt_error(400, "invalid_prompt", message, where)


@router.get("/queue")
async def get_queue(request: Request) -> Response:
    """Running and pending prompts as ComfyUI's queue items."""
    state = server_state(request)
    if state.hub.queue_remaining <= INLINE_QUEUE_ITEMS:
        # Kept between queue changes and cheap to rebuild: cheaper here than a thread hand-over.
        return Response(state.store.queue_json(), media_type="application/json")
    return Response(await run_in_threadpool(state.store.queue_json), media_type="application/json")


def _ids(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError("delete must be a list of prompt ids")
    return [str(v) for v in value]


@router.post("/queue")
async def post_queue(request: Request) -> Response:
    """{"clear": true} and/or {"delete": [ids]} on pending prompts."""
    state = server_state(request)
    try:
        body = await json_body(request)
        if body.get("clear"):
            await run_in_threadpool(state.store.delete_pending)
        if "delete" in body:
            await run_in_threadpool(state.store.delete_pending, _ids(body["delete"]))
    except (ValueError, AttributeError) as exc:
        return error_response(400, "invalid_request", str(exc))
    return Response(status_code=200)


@router.get("/history")
def get_history(request: Request) -> Response:
    """Finished prompts, oldest first; `max_items` alone gives the newest N, `offset` pages."""
    max_items = query_int(request, "max_items", low=-(2**31))
    offset = query_int(request, "offset", low=-(2**31))
    if max_items is not None and max_items < 0:
        max_items = None  # ComfyUI treats a negative window as "everything"
    jobs = server_state(request).store.history(max_items, -1 if offset is None else offset)
    return JSONResponse({j.id: j.history_entry() for j in jobs})


@router.get("/history/{prompt_id}")
def get_history_item(request: Request, prompt_id: str) -> dict[str, Any]:
    """One finished prompt as {id: entry}, or {}."""
    job = server_state(request).store.get(prompt_id)
    if job is None or job.state not in FINISHED:
        return {}
    return {job.id: job.history_entry()}


@router.post("/history")
async def post_history(request: Request) -> Response:
    """{"clear": true} and/or {"delete": [ids]} on finished prompts."""
    state = server_state(request)
    try:
        body = await json_body(request)
        if body.get("clear"):
            await run_in_threadpool(state.store.delete_history)
        if "delete" in body:
            await run_in_threadpool(state.store.delete_history, _ids(body["delete"]))
    except (ValueError, AttributeError) as exc:
        return error_response(400, "invalid_request", str(exc))
    return Response(status_code=200)


@router.post("/interrupt")
async def post_interrupt(request: Request) -> Response:
    """Stop the running prompt; with {"prompt_id"}, only if that one is running."""
    state = server_state(request)
    body = await json_body(request)
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    if state.worker is not None:
        state.worker.interrupt(str(prompt_id) if prompt_id else None)
    return Response(status_code=200)


@router.post("/free")
async def post_free(request: Request) -> Response:
    """{"unload_models", "free_memory"}: applied by the worker between prompts."""
    state = server_state(request)
    body = await json_body(request)
    if state.worker is not None and isinstance(body, dict):
        state.worker.request_free(bool(body.get("unload_models")), bool(body.get("free_memory")))
    return Response(status_code=200)
