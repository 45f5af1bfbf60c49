"""The web client's Templates dialog: diffgraph's ready workflows, and the official templates we can run.

The client reads `/templates/index.json` (categories of templates), then `/templates/<name>.json` and
the thumbnail `/templates/<name>-1.<mediaSubtype>`. Ours come from the ready UI workflows
(`workflows/ui`, thumbnails drawn by `python -m diffgraph.thumbnails`). When ComfyUI's templates
package (`comfyui_workflow_templates`) is installed, its templates whose every node diffgraph has are
listed too, each saying which model files it needs and whether they are in place.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.model_paths import FOLDERS, ModelPaths
from engine.registry import Registry

log = logging.getLogger(__name__)
OFFICIAL_PACKAGE = "comfyui_workflow_templates"
# Node types the client draws itself; they never reach the server.
CLIENT_ONLY_NODES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode", "Label (rgthree)"})
_SAFE_NAME = re.compile(r"^[\w.\-]+$")
FIRST_RUN_TEMPLATE = "txt2img_sd15"
OUR_DESCRIPTIONS = {
    "txt2img_sd15": "Text to image with an SD1.5 checkpoint: 20 euler steps at 512x512, saved as PNG.",
    "img2img_sd15": "Repaint input/example.png with an SD1.5 checkpoint at denoise 0.6.",
    "sdxl_base_refiner": "SDXL base for 20 of 25 steps, the refiner finishes the rest.",
    "two_sampler_compare": "Two samplers on one prompt and seed, each saving its image and a video of its steps.",
    "two_sampler_chain": "One 30-step schedule split between euler and dpmpp_2m.",
}


EXAMPLE_INPUT = "example.png"


def ensure_example_input(input_dir: Path) -> None:
    """Put `example.png` (what the img2img workflows load, as in ComfyUI's input folder) into a new input folder."""
    target = input_dir / EXAMPLE_INPUT
    if target.exists() or any(input_dir.iterdir()):
        return  # the user's folder: never add to one they already use
    from PIL import Image

    size = 512
    ramp = Image.linear_gradient("L").resize((size, size))
    picture = Image.merge("RGB", (ramp, ramp.rotate(90), ramp.rotate(180)))
    picture.save(target)


def default_workflows_dir() -> Path | None:
    """The checkout's `workflows/` folder (beside the packages), when present."""
    folder = Path(__file__).resolve().parents[1] / "workflows"
    return folder if (folder / "ui").is_dir() else None


def official_templates_dir() -> Path | None:
    """The installed official templates package's folder, or None."""
    try:
        root = importlib.resources.files(OFFICIAL_PACKAGE) / "templates"
    except ModuleNotFoundError:
        return None
    path = Path(str(root))  # an installed package is a plain folder
    return path if (path / "index.json").is_file() else None


def node_types(workflow: dict[str, Any]) -> set[str]:
    """Server-side node types a UI workflow uses, subgraph contents included, subgraph instances not."""
    subgraphs = (workflow.get("definitions") or {}).get("subgraphs") or []
    subgraph_ids = {s.get("id") for s in subgraphs}
    types = set()
    for graph in [workflow, *subgraphs]:
        for node in graph.get("nodes") or []:
            kind = node.get("type")
            if isinstance(kind, str) and kind not in subgraph_ids and kind not in CLIENT_ONLY_NODES:
                types.add(kind)
    return types


def model_needs(workflow: dict[str, Any]) -> list[tuple[str, str]]:
    """(folder, file) pairs the workflow's authors listed as downloads (node `properties.models`)."""
    found: dict[tuple[str, str], None] = {}
    subgraphs = (workflow.get("definitions") or {}).get("subgraphs") or []
    entries = list(workflow.get("models") or [])
    for graph in [workflow, *subgraphs]:
        for node in graph.get("nodes") or []:
            entries += (node.get("properties") or {}).get("models") or []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") and entry.get("directory"):
            found[(str(entry["directory"]), str(entry["name"]))] = None
    return list(found)


@dataclass
class TemplateLibrary:
    """What the Templates dialog lists and the files behind it."""

    registry: Registry
    model_paths: ModelPaths | None
    workflows_dir: Path | None = field(default_factory=default_workflows_dir)
    official_dir: Path | None = field(default_factory=official_templates_dir)
    _index: list[dict[str, Any]] | None = field(default=None, init=False, repr=False)

    def _needs_text(self, needs: list[tuple[str, str]]) -> str:
        if not needs:
            return ""
        parts = []
        for folder, name in needs:
            present = self._has_model(folder, name)
            parts.append(f"models/{folder}/{name}" + ("" if present else " (missing)"))
        return " Needs " + ", ".join(parts) + "."

    def _has_model(self, folder: str, name: str) -> bool:
        if self.model_paths is None or folder not in FOLDERS:
            return False
        return name in self.model_paths.list(folder)

    def _our_needs(self, name: str) -> list[tuple[str, str]]:
        """Model files named by our API twin's loader inputs (a combo listing a model folder)."""
        assert self.workflows_dir is not None
        api_file = self.workflows_dir / f"{name}.json"
        if not api_file.is_file():
            return []
        needs = []
        for node in json.loads(api_file.read_text()).values():
            spec = self.registry.spec(node.get("class_type", ""))
            for inp in spec.inputs if spec else ():
                value = node.get("inputs", {}).get(inp.name)
                if inp.combo_source in FOLDERS and isinstance(value, str):
                    needs.append((inp.combo_source, value))
        return needs

    def ours(self) -> dict[str, Any] | None:
        """The category of diffgraph's ready workflows."""
        if self.workflows_dir is None:
            return None
        templates = []
        order = list(OUR_DESCRIPTIONS)
        paths = (self.workflows_dir / "ui").glob("*.json")
        for path in sorted(
            paths, key=lambda p: (order.index(p.stem) if p.stem in order else len(order), p.stem)
        ):
            workflow = json.loads(path.read_text())
            missing = node_types(workflow) - set(self.registry)
            if missing:
                log.info("template %s left out: no node types %s", path.stem, sorted(missing))
                continue
            description = OUR_DESCRIPTIONS.get(path.stem, path.stem.replace("_", " "))
            templates.append(
                {
                    "name": path.stem,
                    "title": path.stem.replace("_", " "),
                    "description": description + self._needs_text(self._our_needs(path.stem)),
                    "mediaType": "image",
                    "mediaSubtype": "webp",
                    "tags": ["diffgraph"],
                    "openSource": True,
                }
            )
        if not templates:
            return None
        return {
            "moduleName": "default",
            "title": "diffgraph",
            "type": "image",
            "isEssential": True,
            "templates": templates,
        }

    def official(self) -> list[dict[str, Any]]:
        """The official package's categories, keeping only templates whose nodes diffgraph has."""
        if self.official_dir is None:
            return []
        known = set(self.registry)
        categories = []
        for category in json.loads((self.official_dir / "index.json").read_text()):
            kept = []
            for template in category.get("templates") or []:
                path = self.official_dir / f"{template.get('name')}.json"
                if not path.is_file() or template.get("requiresCustomNodes"):
                    continue
                workflow = json.loads(path.read_text())
                if node_types(workflow) - known:
                    continue
                needs = self._needs_text(model_needs(workflow))
                kept.append({**template, "description": str(template.get("description", "")) + needs})
            if kept:
                categories.append({**category, "templates": kept})
        return categories

    def index(self) -> list[dict[str, Any]]:
        """The whole `/templates/index.json`: ours first (built once: reading every template is slow)."""
        if self._index is None:
            ours = self.ours()
            self._index = ([ours] if ours else []) + self.official()
        return self._index

    def first_run(self) -> dict[str, Any] | None:
        """The workflow a new user sees: txt2img, on a checkpoint that is here when the named one is not."""
        path = self.file(f"{FIRST_RUN_TEMPLATE}.json")
        if path is None:
            return None
        workflow = json.loads(path.read_text())
        available = self.model_paths.list("checkpoints") if self.model_paths is not None else []
        for node in workflow.get("nodes", []):
            values = node.get("widgets_values")
            if (
                node.get("type") == "CheckpointLoaderSimple"
                and values
                and values[0] not in available
                and available
            ):
                values[0] = available[0]
        return workflow

    def file(self, name: str) -> Path | None:
        """The template file (workflow JSON or thumbnail) named `name`, ours before the package's."""
        if not _SAFE_NAME.match(name) or name.startswith("."):
            return None
        candidates = []
        if self.workflows_dir is not None:
            candidates += [self.workflows_dir / "ui" / name, self.workflows_dir / "ui" / "thumbnails" / name]
        if self.official_dir is not None:
            candidates.append(self.official_dir / name)
        return next((p for p in candidates if p.is_file()), None)
