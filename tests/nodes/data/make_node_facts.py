"""Regenerates comfyui_node_facts.json: ComfyUI's /object_info facts for the nodes diffgraph mirrors.

Not run by CI; needs a ComfyUI checkout and its venv. Usage, from the repository root:

    COMFYUI_VENV_PYTHON tests/nodes/data/make_node_facts.py --comfyui PATH_TO_COMFYUI NODE_ID...

For each node it records what a client relies on: input names in order per section, each input's type
(or its combo options), default, min, max and step, and the output types and names in order. The test
tests/nodes/test_node_facts.py compares diffgraph's generated /object_info entries with this file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import types
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXTRA_MODULES = (
    "comfy_extras.nodes_latent",
    "comfy_extras.nodes_mask",
    "comfy_extras.nodes_images",
    "comfy_extras.nodes_post_processing",
    "comfy_extras.nodes_primitive",
    "comfy_extras.nodes_string",
    "comfy_extras.nodes_rebatch",
    "comfy_extras.nodes_compositing",
    "comfy_extras.nodes_flux",
    "comfy_extras.nodes_sd3",
    "comfy_extras.nodes_controlnet",
    "comfy_extras.nodes_canny",
    "comfy_extras.nodes_edit_model",
    "comfy_extras.nodes_differential_diffusion",
    "comfy_extras.nodes_model_patch",
    "comfy_extras.nodes_easycache",
    "comfy_extras.nodes_ip2p",
)
MODEL_FILE_INPUTS = ("control_net_name",)
KEPT_OPTIONS = ("default", "min", "max", "step", "multiline", "control_after_generate", "image_upload")


def _await(coro: Any) -> Any:
    """Run a coroutine that never suspends (ComfyUI's extension entry points; some are plain functions)."""
    if not hasattr(coro, "send"):
        return coro
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("coroutine suspended")


def load_mappings(display_names: dict[str, str]) -> dict[str, Any]:
    """class id -> ComfyUI class, core nodes plus the extras modules above (display names merged in)."""
    importlib.import_module("comfy.cli_args").args.cpu = True
    server = types.ModuleType("server")
    server.PromptServer = type("PromptServer", (), {"instance": None})  # type: ignore[attr-defined]
    sys.modules.setdefault("server", server)
    mappings: dict[str, Any] = dict(importlib.import_module("nodes").NODE_CLASS_MAPPINGS)
    for name in EXTRA_MODULES:
        module = importlib.import_module(name)
        if hasattr(module, "NODE_CLASS_MAPPINGS"):
            mappings.update(module.NODE_CLASS_MAPPINGS)
            display_names.update(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {})
        else:
            extension = _await(module.comfy_entrypoint())
            for cls in _await(extension.get_node_list()):
                mappings[cls.define_schema().node_id] = cls
    return mappings


def node_info(node_id: str, cls: Any, display_names: dict[str, str]) -> dict[str, Any]:
    """The /object_info entry ComfyUI's server builds for one class."""
    if hasattr(cls, "GET_NODE_INFO_V1"):
        return dict(cls.GET_NODE_INFO_V1())
    inputs = cls.INPUT_TYPES()
    return {
        "input": inputs,
        "input_order": {key: list(value) for key, value in inputs.items()},
        "output": list(cls.RETURN_TYPES),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "display_name": display_names.get(node_id, node_id),
        "category": getattr(cls, "CATEGORY", "sd"),
    }


def facts(info: dict[str, Any], dynamic: bool) -> dict[str, Any]:
    """The comparable subset of one entry."""
    rows = []
    for section in ("required", "optional"):
        entries = info["input"].get(section) or {}
        for name in info["input_order"].get(section, list(entries)):
            entry = entries[name]
            kind, options = entry[0], (entry[1] if len(entry) > 1 else {})
            row: dict[str, Any] = {"section": section, "name": name}
            if isinstance(kind, list) or kind == "COMBO":
                row["type"] = "COMBO"
                values = kind if isinstance(kind, list) else options.get("options", [])
                # Upload lists and model file lists depend on the install, not on the node.
                if not (dynamic and (options.get("image_upload") or not values or name in MODEL_FILE_INPUTS)):
                    row["options"] = list(values)
            else:
                row["type"] = kind
            row.update({key: options[key] for key in KEPT_OPTIONS if key in options})
            rows.append(row)
    return {
        "inputs": rows,
        "output": list(info["output"]),
        "output_name": list(info["output_name"]),
        "display_name": info["display_name"],
        "category": info["category"],
    }


def main() -> None:
    """Write the facts for the named nodes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--comfyui", required=True, type=Path)
    parser.add_argument("--out", default="comfyui_node_facts.json", help="file name beside this script")
    parser.add_argument("nodes", nargs="+")
    args = parser.parse_args()
    sys.path.insert(0, str(args.comfyui))
    display_names: dict[str, str] = {}
    mappings = load_mappings(display_names)
    display_names = {**importlib.import_module("nodes").NODE_DISPLAY_NAME_MAPPINGS, **display_names}
    out = {}
    for node_id in args.nodes:
        info = node_info(node_id, mappings[node_id], display_names)
        out[node_id] = facts(info, dynamic=True)
    target = HERE / args.out
    target.write_text(json.dumps({"comfyui": "0.3.64", "nodes": out}, indent=1) + "\n")
    print(f"{len(out)} nodes written to {target}")


if __name__ == "__main__":
    main()
