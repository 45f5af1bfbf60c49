"""Coverage of ComfyUI's official workflow templates: node types known, and `validate` with placeholder files.

For each template set (the installed `comfyui-workflow-templates` package, i.e. the version ComfyUI
0.3.64 pins, and any further set given with --templates: a folder of JSON files or a downloaded wheel,
e.g. the newest `comfyui-workflow-templates-json`), every UI-format template is converted to an API
prompt and validated. Model files and input images the template names are created as empty placeholder
files first, so validation judges the graph (node types, inputs, links, values), not what is on disk.

    python -m bench.template_coverage --out coverage.json [--templates DIR_OR_WHEEL ...]

The report has, per set: templates_total, templates_all_nodes_known, templates_validating,
missing_node_types_ranked (type, templates using it, family), families_ranked, and per template its
node types, the missing ones, whether it validates, the first problems, and the families (with the
issue) that bring what it lacks. The first set's summary is repeated at the top level.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.template_families import family_of
from diffgraph.api import Session
from engine import FOLDERS, DiffgraphError
from engine.schema import node_spec
from engine.validation import validate_prompt
from nodes.diffusion.embeddings import prompt_embedding_names

FRONTEND_ONLY = frozenset({"Reroute", "PrimitiveNode", "Note", "MarkdownNote"})


def installed_templates() -> tuple[str, Path]:
    """(label, folder) of the installed templates package."""
    from importlib.metadata import version

    import comfyui_workflow_templates as package

    return f"comfyui-workflow-templates {version('comfyui-workflow-templates')}", Path(
        package.__file__
    ).parent / "templates"


def read_templates(source: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, UI workflow) for every template JSON in a folder or a wheel (index files skipped)."""
    if source.is_dir():
        items = ((p.stem, p.read_bytes()) for p in sorted(source.glob("*.json")))
    else:
        archive = zipfile.ZipFile(source)
        names = sorted(n for n in archive.namelist() if "/templates/" in n and n.endswith(".json"))
        items = ((Path(n).stem, archive.read(n)) for n in names)
    for name, raw in items:
        data = json.loads(raw)
        if isinstance(data, dict) and isinstance(data.get("nodes"), list):
            yield name, data


def node_types(ui: dict[str, Any]) -> set[str]:
    """Node types a template uses, subgraph contents included, subgraph and frontend-only types excluded."""
    definitions = (ui.get("definitions") or {}).get("subgraphs") or []
    subgraph_ids = {d.get("id") for d in definitions}
    nodes = list(ui["nodes"]) + [n for d in definitions for n in d.get("nodes") or []]
    return {
        n["type"] for n in nodes if n.get("type") not in subgraph_ids and n.get("type") not in FRONTEND_ONLY
    }


def _annotated_file(session: Session, value: str) -> Path:
    """Where a file value such as `name.png [output]` lives (the input folder when unannotated)."""
    env = session.env
    for kind, folder in (("output", env.output_dir), ("temp", env.temp_dir), ("input", env.input_dir)):
        if value.endswith(f" [{kind}]"):
            return Path(folder) / value[: -len(kind) - 3]
    return Path(env.input_dir) / value


def place_placeholders(session: Session, prompt: dict[str, Any]) -> None:
    """Empty files for every model and input file a prompt names, so validation sees them listed."""
    for node in prompt.values():
        node_cls = session.registry.get(node.get("class_type", ""))
        if node_cls is None:
            continue
        for spec in node_spec(node_cls).inputs:
            value = node.get("inputs", {}).get(spec.name)
            if isinstance(value, str) and spec.combo_source is None:
                # Prompt text naming textual-inversion embeddings: models/embeddings/<name>.
                for name, _ in prompt_embedding_names(value):
                    if "/" not in name and ".." not in name:
                        (session.model_paths.folder("embeddings") / name).parent.mkdir(
                            parents=True, exist_ok=True
                        )
                        (session.model_paths.folder("embeddings") / name).touch()
            image_file = spec.combo_source in ("input_images", "input_latents") or (
                spec.is_remote and "image_folder" in spec.widget
            )
            if (
                not (spec.combo_source or image_file)
                or not isinstance(value, str)
                or not value
                or ".." in value
            ):
                continue
            if spec.combo_source in FOLDERS:
                target = session.model_paths.folder(spec.combo_source) / value
            elif image_file:
                target = _annotated_file(session, value)
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()


def _pruned(prompt: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """The prompt without nodes of unknown types and without the links that pointed at them."""
    kept = {node_id: node for node_id, node in prompt.items() if node.get("class_type") in known}
    for node in kept.values():
        inputs = node.get("inputs", {})
        for name in [n for n, v in inputs.items() if isinstance(v, list) and v and v[0] not in kept]:
            del inputs[name]
    return kept


def _problems(result: Any, skip: frozenset[str] = frozenset()) -> list[str]:
    problems = []
    if result.error and not result.node_errors:
        problems.append(f"{result.error.get('type')}: {result.error.get('message')}")
    for node_id, entry in result.node_errors.items():
        for error in entry.get("errors", []):
            if error.get("type") not in skip:
                problems.append(
                    f"{node_id} {entry.get('class_type')}: {error.get('type')} {error.get('details', '')}"
                )
    return problems


def check_template(session: Session, ui: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """Convert and validate one template; the problems found, if any.

    With unknown node types the prompt cannot validate; the known nodes are then checked on their own
    (links to unknown nodes removed, the resulting missing inputs not counted), so a widget value that
    converted wrongly still shows up as a problem.
    """
    try:
        workflow = session.load(ui)
    except DiffgraphError as exc:
        return {"validates": False, "problems": [f"conversion failed: {exc}"]}
    place_placeholders(session, workflow.prompt)
    result = session.validate(workflow)
    if result.ok and not result.node_errors:
        return {"validates": True, "problems": []}
    if all(node.get("class_type") in known for node in workflow.prompt.values()):
        return {"validates": False, "problems": _problems(result)[:8]}
    pruned = validate_prompt(_pruned(workflow.prompt, known), session.registry, env=session.env)
    problems = _problems(pruned, skip=frozenset({"required_input_missing"}))
    if pruned.error and pruned.error.get("type") == "prompt_no_outputs":
        problems = []
    return {"validates": False, "problems": problems[:8]}


def cover(label: str, templates: list[tuple[str, dict[str, Any]]], workdir: Path) -> dict[str, Any]:
    """The report for one template set."""
    session = Session(
        models_dir=workdir / "models", input_dir=workdir / "input", output_dir=workdir / "output"
    )
    known = set(session.registry.object_info())
    per_template: dict[str, Any] = {}
    missing_counts: Counter[str] = Counter()
    family_counts: Counter[str] = Counter()
    for name, ui in templates:
        types = node_types(ui)
        missing = sorted(types - known)
        missing_counts.update(missing)
        families = sorted({family_of(t) for t in missing})
        family_counts.update(families)
        entry: dict[str, Any] = {"node_types": sorted(types), "missing": missing, "blocked_by": families}
        entry.update(check_template(session, ui, known))
        per_template[name] = entry
    return {
        "source": label,
        "templates_total": len(per_template),
        "templates_all_nodes_known": sum(1 for e in per_template.values() if not e["missing"]),
        "templates_validating": sum(1 for e in per_template.values() if e["validates"]),
        "templates_with_problems_on_known_nodes": sum(1 for e in per_template.values() if e["problems"]),
        "missing_node_types_ranked": [[t, n, family_of(t)] for t, n in missing_counts.most_common()],
        "families_ranked": family_counts.most_common(),
        "templates": per_template,
    }


def main() -> None:
    """Write the coverage report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, type=Path, help="report JSON to write")
    parser.add_argument(
        "--templates", action="append", type=Path, default=[], help="a further folder or wheel"
    )
    parser.add_argument(
        "--compact", action="store_true", help="leave out each template's full node type list"
    )
    args = parser.parse_args()
    sources = [installed_templates()] + [(path.name, path) for path in args.templates]
    reports = []
    with tempfile.TemporaryDirectory(prefix="template-coverage-") as tmp:
        for index, (label, path) in enumerate(sources):
            reports.append(cover(label, list(read_templates(path)), Path(tmp) / str(index)))
    summary_keys = (
        "templates_total",
        "templates_all_nodes_known",
        "templates_validating",
        "missing_node_types_ranked",
    )
    if args.compact:
        for entry in reports:
            for template in entry["templates"].values():
                del template["node_types"]
    report = {**{key: reports[0][key] for key in summary_keys}, "sources": reports}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for entry in reports:
        print(
            f"{entry['source']}: {entry['templates_total']} templates, {entry['templates_all_nodes_known']} with "
            f"every node known, {entry['templates_validating']} validating"
        )


if __name__ == "__main__":
    main()
