"""An editable workflow for headless runs: nodes found by id, title or class_type, and input overrides."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from engine import DiffgraphError, Registry
from engine.formats.workflow import Workflow as EngineWorkflow
from engine.formats.workflow import is_link


class NodeRefError(DiffgraphError):
    """A node reference (id, title or class_type) that matches no node, or more than one."""

    code = "unknown_node_ref"


class OverrideError(DiffgraphError):
    """An override that cannot be applied: bad syntax, or an input the node does not have."""

    code = "bad_override"


class TextValue(str):
    """A value typed as text (`--set`, a CSV cell): parsed by the input's type when it is applied."""


BOOLEAN_WORDS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}


def parse_value(text: str, io_type: str | None = None) -> Any:
    """A value typed as text, parsed by the input's type when it is known.

    STRING and COMBO inputs keep the text as it is (`42` stays "42"; a JSON string literal such as
    `"x"` loses its quotes); BOOLEAN takes true/false, yes/no, on/off, 1/0; anything else (numbers, or
    an input of unknown type) is JSON when it parses (5, 7.5, true, [1, 2]), else the plain string.
    """
    if io_type in ("STRING", "COMBO"):
        if text.startswith('"'):
            try:
                quoted = json.loads(text)
            except json.JSONDecodeError:
                return str(text)
            return quoted if isinstance(quoted, str) else str(text)
        return str(text)
    if io_type == "BOOLEAN":
        word = text.strip().lower()
        if word not in BOOLEAN_WORDS:
            raise OverrideError(f"{text!r} is not a boolean; use true or false")
        return BOOLEAN_WORDS[word]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return str(text)


def split_target(target: str) -> tuple[str, str]:
    """Split `NODE.INPUT` at the last dot (titles may contain dots; input names never do)."""
    node_ref, dot, input_name = target.rpartition(".")
    if not dot or not node_ref or not input_name:
        raise OverrideError(f"{target!r} is not NODE.INPUT (for example KSampler.seed or 3.steps)")
    return node_ref, input_name


def parse_assignment(text: str) -> tuple[str, str, TextValue]:
    """Parse `NODE.INPUT=VALUE` into (node ref, input name, value text to parse by the input's type)."""
    target, eq, raw = text.partition("=")
    if not eq:
        raise OverrideError(f"{text!r} is not NODE.INPUT=VALUE (for example KSampler.seed=5)")
    node_ref, input_name = split_target(target.strip())
    return node_ref, input_name, TextValue(raw)


def node_title(node: dict[str, Any]) -> str | None:
    """The title a user gave the node in the UI (`_meta.title`), if any."""
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, dict) else None
    return title if isinstance(title, str) else None


def describe_node(node_id: str, node: dict[str, Any]) -> str:
    """`#3 KSampler "My title"`: how errors and listings name a node."""
    title = node_title(node)
    class_type = node.get("class_type", "?")
    return f"#{node_id} {class_type}" + (f" {title!r}" if title and title != class_type else "")


def resolve_node(prompt: dict[str, Any], ref: str) -> str:
    """The id of the node `ref` names: a node id, else a unique title, else a unique class_type."""
    if ref in prompt:
        return ref
    for kind, key in (("title", node_title), ("class_type", lambda n: n.get("class_type"))):
        matches = [nid for nid, node in prompt.items() if key(node) == ref]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(describe_node(nid, prompt[nid]) for nid in matches)
            raise NodeRefError(
                f"{ref!r} matches {len(matches)} nodes by {kind}: {names}; use a node id or a unique title"
            )
    known = ", ".join(describe_node(nid, node) for nid, node in prompt.items())
    raise NodeRefError(f"no node {ref!r} (by id, title or class_type) in the workflow; nodes: {known}")


@dataclass
class NodeView:
    """One node of a workflow; `inputs` is the live dict, so `wf["3"].inputs["seed"] = 5` edits it."""

    id: str
    node: dict[str, Any]

    @property
    def class_type(self) -> str:
        """The node's class_type."""
        return str(self.node.get("class_type"))

    @property
    def title(self) -> str | None:
        """The node's UI title, if any."""
        return node_title(self.node)

    @property
    def inputs(self) -> dict[str, Any]:
        """The node's inputs: constants and links (`["id", slot]`)."""
        return self.node.setdefault("inputs", {})


class Workflow:
    """An API-format prompt to edit and run; the UI graph it came from rides along for metadata."""

    def __init__(
        self,
        prompt: dict[str, Any],
        ui: dict[str, Any] | None = None,
        source: str | None = None,
        registry: Registry | None = None,
    ):
        self.prompt = prompt
        self.ui = ui
        self.source = source
        # Known node schemas let set() reject a misspelt input name before anything runs.
        self.registry = registry

    @classmethod
    def from_engine(cls, workflow: EngineWorkflow, registry: Registry | None = None) -> Workflow:
        """Wrap a workflow loaded by the engine (the prompt is copied, the UI graph shared)."""
        return cls(copy.deepcopy(workflow.prompt), workflow.ui, workflow.source, registry)

    def copy(self) -> Workflow:
        """An independent copy to edit (batch items start from one)."""
        return Workflow(copy.deepcopy(self.prompt), self.ui, self.source, self.registry)

    def node_id(self, ref: str) -> str:
        """The id of the node named by id, title or unique class_type."""
        return resolve_node(self.prompt, ref)

    def __getitem__(self, ref: str) -> NodeView:
        node_id = self.node_id(ref)
        return NodeView(node_id, self.prompt[node_id])

    def __iter__(self):
        return (NodeView(nid, node) for nid, node in self.prompt.items())

    def __len__(self) -> int:
        return len(self.prompt)

    def get(self, ref: str, input_name: str) -> Any:
        """The current value of an input (a constant or a link)."""
        view = self[ref]
        if input_name not in view.inputs:
            raise OverrideError(f"{describe_node(view.id, view.node)} has no input {input_name!r} set")
        return view.inputs[input_name]

    def set(self, ref: str, input_name: str, value: Any) -> Workflow:
        """Set one input of the node named by id, title or unique class_type; returns self.

        A TextValue (from `--set` or a CSV cell) is parsed by the input's declared type first.
        """
        view = self[ref]
        io_type = self._input_type(view, input_name)
        current = view.inputs.get(input_name)
        if is_link(current):
            raise OverrideError(
                f"{describe_node(view.id, view.node)} input {input_name!r} is linked to node "
                f"#{current[0]}; set the input on that node instead"
            )
        if isinstance(value, TextValue):
            try:
                value = parse_value(value, io_type)
            except OverrideError as exc:
                raise OverrideError(
                    f"{describe_node(view.id, view.node)} {input_name}: {exc.message}"
                ) from None
        view.inputs[input_name] = value
        return self

    def _input_type(self, view: NodeView, input_name: str) -> str | None:
        """The input's declared io_type (None when the node is unknown); rejects misspelt inputs."""
        spec = self.registry.spec(view.class_type) if self.registry is not None else None
        if spec is None:
            return None
        inp = spec.input(input_name)
        if inp is not None:
            return inp.io_type
        known = ", ".join(i.name for i in spec.inputs) or "none"
        raise OverrideError(
            f"{describe_node(view.id, view.node)} has no input {input_name!r}; its inputs: {known}"
        )

    def apply(self, overrides: dict[str, Any]) -> Workflow:
        """Apply `{"NODE.INPUT": value}` overrides; returns self."""
        for target, value in overrides.items():
            node_ref, input_name = split_target(target)
            self.set(node_ref, input_name, value)
        return self

    def extra_data(self) -> dict[str, Any]:
        """The executor's extra_data: the UI graph as `extra_pnginfo.workflow` (saved into images)."""
        return {"extra_pnginfo": {"workflow": self.ui}} if self.ui is not None else {}

    def seed_targets(self) -> list[tuple[str, str]]:
        """(node id, input) of every constant `seed` / `noise_seed` input: what a seed sweep sets."""
        return [
            (nid, name)
            for nid, node in self.prompt.items()
            for name, value in node.get("inputs", {}).items()
            if name in ("seed", "noise_seed") and not is_link(value)
        ]
