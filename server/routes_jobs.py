"""The jobs API that ComfyUI frontends from 1.3x on read the queue and history from: a view of the store."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from server.inputs import query_int
from server.routes_prompt import json_body
from server.state import ServerState, error_response, server_state
from server.store import Job

router = APIRouter()

# Store state -> jobs API status. An interrupted prompt is "cancelled", as the frontend shows it.
JOB_STATUS = {
    "pending": "pending",
    "running": "in_progress",
    "success": "completed",
    "error": "failed",
    "interrupted": "cancelled",
}
STORE_STATES = {status: state for state, status in JOB_STATUS.items()}
PREVIEWABLE_KEYS = ("images", "gifs", "video", "audio")
# The exception name the client reads as "interrupted" on a failed job; ours are "cancelled" anyway.
INTERRUPTED_TYPE = "InterruptProcessingException"


def _previewables(job: Job) -> list[dict[str, Any]]:
    items = []
    for node_id, ui in job.ui_outputs.items():
        if not isinstance(ui, dict):
            continue
        for key in PREVIEWABLE_KEYS:
            for item in ui.get(key) or []:
                if isinstance(item, dict) and "filename" in item:
                    items.append({**item, "nodeId": node_id, "mediaType": key})
    return items


def _count_outputs(job: Job) -> int:
    return sum(
        len(v)
        for ui in job.ui_outputs.values()
        if isinstance(ui, dict)
        for v in ui.values()
        if isinstance(v, list)
    )


def job_error(job: Job) -> dict[str, Any] | None:
    """The stored error in the client's schema: every field it requires, whatever ended the job.

    An interrupt is stored as ComfyUI's `execution_interrupted` payload (no exception fields); a job
    stopped by a server restart or an engine failure may have no node. The client rejects the whole
    list when one item lacks a required field, so each is filled in.
    """
    if not job.error:
        return None
    error = dict(job.error)
    if job.state == "interrupted":
        node = error.get("node_type") or error.get("node_id")
        error.setdefault(
            "exception_message", f"Interrupted by the user while running {node}." if node else "Interrupted."
        )
        error.setdefault("exception_type", INTERRUPTED_TYPE)
    error["node_id"] = str(error.get("node_id") or "")
    error["node_type"] = str(error.get("node_type") or "")
    error["exception_message"] = str(error.get("exception_message") or "")
    error["exception_type"] = str(error.get("exception_type") or "")
    error["traceback"] = [str(line) for line in error.get("traceback") or []]
    error["executed"] = [str(node_id) for node_id in error.get("executed") or []]
    return error


def job_item(job: Job) -> dict[str, Any]:
    """One job in the frontend's schema."""
    previews = _previewables(job)
    workflow = (job.extra_data.get("extra_pnginfo") or {}).get("workflow")
    error = job_error(job)
    return {
        "id": job.id,
        "status": JOB_STATUS[job.state],
        "create_time": job.create_time,
        "execution_start_time": job.start_time,
        "execution_end_time": job.end_time,
        "preview_output": previews[0] if previews else None,
        "outputs_count": _count_outputs(job),
        "previewable_outputs_count": len(previews),
        "execution_error": error,
        "workflow_id": str(workflow["id"]) if isinstance(workflow, dict) and workflow.get("id") else None,
        "priority": job.number,
    }


@router.get("/jobs")
def list_jobs(request: Request) -> Response:
    """`?status=a,b&limit=&offset=`: jobs with pagination."""
    query = request.query_params
    wanted = [s for s in (query.get("status") or ",".join(JOB_STATUS.values())).split(",") if s]
    unknown = [s for s in wanted if s not in STORE_STATES]
    if unknown:
        return error_response(
            400, "invalid_request", f"unknown job status {unknown}; known: {list(STORE_STATES)}"
        )
    limit = query_int(request, "limit")
    offset = query_int(request, "offset") or 0
    jobs, total = server_state(request).store.jobs([STORE_STATES[s] for s in wanted], limit, offset)
    # The client requires a number here even when no limit was asked for.
    shown_limit = limit if limit is not None else total
    pagination = {
        "offset": offset,
        "limit": shown_limit,
        "total": total,
        "has_more": offset + len(jobs) < total,
    }
    return JSONResponse({"jobs": [job_item(j) for j in jobs], "pagination": pagination})


@router.get("/jobs/{job_id}")
def get_job(request: Request, job_id: str) -> Response:
    """One job with its outputs and workflow; 404 when unknown."""
    job = server_state(request).store.get(job_id)
    if job is None:
        return error_response(404, "job_not_found", f"no job with id {job_id!r}")
    extra = {k: v for k, v in job.extra_data.items() if k == "extra_pnginfo"}
    return JSONResponse(
        {**job_item(job), "outputs": job.ui_outputs, "workflow": {"prompt": job.prompt, "extra_data": extra}}
    )


def cancel_jobs(state: ServerState, ids: list[str]) -> None:
    """Drop pending jobs and interrupt the running one among ids; unknown or finished ids are ignored."""
    state.store.delete_pending(ids)
    if state.worker is not None:
        for job_id in ids:  # only where it runs (with a pool, several may)
            state.worker.interrupt(job_id)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(request: Request, job_id: str) -> Response:
    """Cancel one job (idempotent)."""
    await run_in_threadpool(cancel_jobs, server_state(request), [job_id])
    return JSONResponse({})


@router.post("/jobs/cancel")
async def cancel_many(request: Request) -> Response:
    """Cancel {"job_ids": [...]} (idempotent)."""
    try:
        body = await json_body(request)
        ids = body.get("job_ids")
        if not isinstance(ids, list):
            raise ValueError("job_ids must be a list of ids")
    except (ValueError, AttributeError) as exc:
        return error_response(400, "invalid_request", str(exc))
    await run_in_threadpool(cancel_jobs, server_state(request), [str(i) for i in ids])
    return JSONResponse({})
