"""Turning validation errors and run results into readable text and the `--json` result document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffgraph.api import RunResult
from diffgraph.workflow import describe_node

# Bumped when a key of the --json document changes meaning or goes away (new keys do not bump it).
JSON_SCHEMA_VERSION = 1


def reason_text(reason: dict[str, Any]) -> str:
    """`ckpt_name: Value not in list: ...` for one ComfyUI validation reason."""
    name = (reason.get("extra_info") or {}).get("input_name")
    details = str(reason.get("details") or "")
    text = str(reason.get("message", "")) + (f": {details}" if details else "")
    # ComfyUI's details often start with the input name already ("ckpt_name: 'x' not in [...]").
    return f"{name}: {text}" if name and not details.startswith(str(name)) else text


def node_errors_text(
    prompt: dict[str, Any], node_errors: dict[str, Any], models_dir: Path | None = None
) -> str:
    """Every node's validation problems, one line each, naming node, input and what to change."""
    lines = []
    for node_id, entry in node_errors.items():
        node = prompt.get(node_id) or {"class_type": entry.get("class_type", "?")}
        for reason in entry.get("errors", []):
            lines.append(f"  {describe_node(node_id, node)}: {reason_text(reason)}")
            hint = missing_model_hint(reason, models_dir)
            if hint:
                lines.append(f"    {hint}")
    return "\n".join(lines)


def missing_model_hint(reason: dict[str, Any], models_dir: Path | None) -> str:
    """For a checkpoint name that is not in the models folder: where to put it, and the demo option."""
    extra = reason.get("extra_info") or {}
    if reason.get("type") != "value_not_in_list" or extra.get("input_name") != "ckpt_name":
        return ""
    folder = (models_dir / "checkpoints") if models_dir else Path("models/checkpoints")
    return (
        f"hint: put the checkpoint file in {folder}/ (or point --models-dir / DIFFGRAPH_MODELS_DIR at your "
        "models folder), or add --demo to try the pipeline with a random-weight demo checkpoint (noise images)"
    )


def validation_text(
    prompt: dict[str, Any],
    error: dict[str, Any] | None,
    node_errors: dict[str, Any],
    models_dir: Path | None = None,
) -> str:
    """The headline error and every node error, for the terminal."""
    head = (error or {}).get("message") or "the workflow is invalid"
    details = node_errors_text(prompt, node_errors, models_dir)
    if not details and error and error.get("details"):
        details = f"  {error['details']}"
    return f"{head}\n{details}" if details else head


def outputs_json(result: RunResult, prompt: dict[str, Any]) -> dict[str, Any]:
    """Per output node: class_type, UI output and the paths of the files it wrote."""
    return {
        node_id: {
            "class_type": prompt.get(node_id, {}).get("class_type"),
            "ui": ui,
            "files": [str(p) for p in result.files.get(node_id, [])],
        }
        for node_id, ui in result.ui.items()
    }


def class_types(prompt: dict[str, Any], node_ids: list[str]) -> dict[str, str]:
    """node id -> class_type, to make cache reports readable."""
    return {nid: prompt.get(nid, {}).get("class_type", "?") for nid in node_ids}


def item_json(
    item: Any,
    status: str,
    prompt: dict[str, Any] | None,
    result: RunResult | None,
    error: dict[str, Any] | None,
) -> dict[str, Any]:
    """One batch item of the --json document."""
    prompt = prompt or {}
    doc: dict[str, Any] = {
        "index": item.index,
        "label": item.label,
        "line": item.line,
        "seed": item.seed,
        "overrides": item.overrides,
        "status": status,
        "prompt_id": result.prompt_id if result else None,
        "outputs": outputs_json(result, prompt) if result else {},
        "files": [str(p) for p in result.all_files()] if result else [],
        "executed": list(result.executed) if result else [],
        "cached": list(result.cached) if result else [],
        "executed_class_types": class_types(prompt, result.executed) if result else {},
        "cached_class_types": class_types(prompt, result.cached) if result else {},
        "timings": {"nodes": dict(result.timings), "total_s": result.seconds} if result else {},
        "node_errors": result.node_errors if result else {},
        "error": error,
    }
    return doc


def run_json(
    workflow: str,
    items: list[dict[str, Any]],
    seconds: float,
    demo: dict[str, str] | None = None,
    demo_resized: dict[str, str] | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    """The whole --json document of `diffgraph run`; `total` counts items planned (some may not run).

    `demo` = {node id: missing checkpoint the demo checkpoint replaced}; `demo_resized` = {node id:
    "512x512 -> 256x256"} for latents the demo rendered smaller.
    """
    failed = sum(1 for i in items if i["status"] != "success")
    return {
        "schema": JSON_SCHEMA_VERSION,
        "workflow": workflow,
        "status": "success" if not failed else "error",
        "summary": {
            "items": len(items),
            "succeeded": len(items) - failed,
            "failed": failed,
            "not_run": max(0, (total or 0) - len(items)),
            "seconds": seconds,
        },
        "demo_checkpoint": demo or {},
        "demo_resized": demo_resized or {},
        "items": items,
    }


def failed_json(workflow: str, error: dict[str, Any]) -> dict[str, Any]:
    """The --json document of a run that could not start (unreadable workflow, bad --set, ...)."""
    doc = run_json(workflow, [], 0.0)
    doc.update(status="invalid", error=error)
    return doc
