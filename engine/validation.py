"""Whole-prompt validation before anything runs, reporting every problem in ComfyUI's node_errors shape."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from engine.formats.workflow import is_link, unwrap_constant
from engine.registry import Registry
from engine.schema import InputSpec, NodeSpec, combo_values

log = logging.getLogger(__name__)

COERCE = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
_ALREADY_TYPED = {int: "INT", float: "FLOAT", str: "STRING", bool: "BOOLEAN"}
LIST_ELISION_LIMIT = 20


def reason(code: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    """One validation problem in ComfyUI's shape."""
    return {"type": code, "message": message, "details": details, "extra_info": extra}


Edges = dict[str, list[str]]  # node id -> ids of the nodes that read from it


@dataclass
class ValidationResult:
    """The outcome: runnable outputs, per-node errors, and the prompt with constants coerced."""

    ok: bool
    error: dict[str, Any] | None
    node_errors: dict[str, dict[str, Any]]
    outputs: list[str]
    prompt: dict[str, Any]
    edges: Edges = field(default_factory=dict)

    @property
    def graph(self) -> nx.DiGraph:
        """The validated nodes and their well-formed links as a networkx DiGraph.

        Built on demand: validation itself walks plain dicts, since it runs on every submission
        and networkx's per-edge bookkeeping was most of its cost.
        """
        return _to_digraph(self.edges)


def _to_digraph(edges: Edges) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(edges)
    graph.add_edges_from((src, dst) for src, consumers in edges.items() for dst in consumers)
    return graph


def _descendants(edges: Edges, roots: set[str]) -> set[str]:
    """Every node downstream of roots (roots excluded unless on a cycle)."""
    seen: set[str] = set()
    stack = [dst for root in roots for dst in edges.get(root, ())]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(edges.get(node, ()))
    return seen


def _has_cycle(edges: Edges) -> bool:
    """Kahn's algorithm: a DAG drains completely."""
    waiting = dict.fromkeys(edges, 0)
    for consumers in edges.values():
        for dst in consumers:
            waiting[dst] += 1
    ready = [node for node, count in waiting.items() if count == 0]
    drained = 0
    while ready:
        node = ready.pop()
        drained += 1
        for dst in edges[node]:
            waiting[dst] -= 1
            if waiting[dst] == 0:
                ready.append(dst)
    return drained != len(waiting)


def types_compatible(produced: str, wanted: str) -> bool:
    """ComfyUI's rule: equal, '*' on either side, or comma-separated unions that intersect."""
    if produced == wanted or "*" in (produced, wanted):
        return True
    return bool(set(produced.split(",")) & set(wanted.split(",")))


def _top(code: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": code, "message": message, "details": details, "extra_info": {}}


def _structure_errors(prompt: Any, registry: Registry) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Problems that make a prompt unreadable: not an object, missing class_type, unknown nodes."""
    if not isinstance(prompt, dict):
        return _top("invalid_prompt", "The prompt must be a JSON object of nodes keyed by id."), {}
    node_errors: dict[str, Any] = {}
    first: dict[str, Any] | None = None
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            err = _top(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            )
        elif node["class_type"] not in registry:
            err = _top(
                "invalid_prompt",
                f"Cannot execute because node {node['class_type']} does not exist.",
                f"Node ID '#{node_id}'",
            )
        elif not isinstance(node.get("inputs", {}), dict):
            err = _top(
                "invalid_prompt",
                f"Node #{node_id} has 'inputs' that is not an object.",
                f"Node ID '#{node_id}'",
            )
        else:
            continue
        first = first or err
        node_errors[str(node_id)] = {
            "errors": [err],
            "dependent_outputs": [],
            "class_type": node.get("class_type") if isinstance(node, dict) else None,
        }
    return first, node_errors


class _Validator:
    """Validates the ancestry of each output once per node, memoised."""

    def __init__(self, prompt: dict[str, Any], registry: Registry, env: Any):
        self.prompt = prompt
        self.registry = registry
        self.env = env
        self.errors: dict[str, list[dict[str, Any]]] = {}
        self.valid: dict[str, bool] = {}
        self.edges: Edges = {}  # well-formed links only: source -> consumers
        self.upstream: dict[str, list[str]] = {}  # every existing source a node links to
        self._specs: dict[str, NodeSpec] = {}

    def spec(self, node_id: str) -> NodeSpec:
        class_type = self.prompt[node_id]["class_type"]
        spec = self._specs.get(class_type)
        if spec is None:
            spec = self._specs[class_type] = self.registry.known_spec(class_type)
        return spec

    def validate(self, node_id: str) -> None:
        """Check node_id and everything upstream of it, each node once."""
        stack = [node_id]
        while stack:  # iterative DFS: deep chains must not hit Python's recursion limit
            current = stack.pop()
            if current in self.valid:
                continue
            self.valid[current] = self._check_node(current)
            stack.extend(self.upstream[current])

    def _check_node(self, node_id: str) -> bool:
        node = self.prompt[node_id]
        spec = self.spec(node_id)
        inputs: dict[str, Any] = node.setdefault("inputs", {})
        errors: list[dict[str, Any]] = []
        self.edges.setdefault(node_id, [])
        upstream = self.upstream[node_id] = []
        constants: dict[str, Any] = {}
        for inp in spec.inputs:
            if inp.name not in inputs:
                if inp.required and inp.section == "required":
                    errors.append(
                        reason(
                            "required_input_missing",
                            "Required input is missing",
                            f"{inp.name}: link it or give it a value",
                            input_name=inp.name,
                        )
                    )
                continue
            value = inputs[inp.name]
            if is_link(value):
                errors.extend(self._check_link(node_id, inp, value))
                if value[0] in self.prompt:
                    upstream.append(value[0])
                constants[inp.name] = None
            elif inp.name in spec.node_cls.self_validated_inputs:
                constants[inp.name] = unwrap_constant(value)
            else:
                problems, coerced = self._check_constant(inp, unwrap_constant(value))
                errors.extend(problems)
                if not problems:
                    inputs[inp.name] = coerced
                constants[inp.name] = coerced
        errors.extend(self._check_undeclared(node_id, spec, inputs))
        errors.extend(self._custom(spec, constants))
        if errors:
            self.errors[node_id] = errors
        return not errors

    def _check_link(self, node_id: str, inp: InputSpec, link: Any) -> list[dict[str, Any]]:
        src_id, slot = link
        if src_id not in self.prompt:
            return [
                reason(
                    "bad_linked_input",
                    "Bad linked input, the linked node does not exist",
                    f"{inp.name}: node '{src_id}' is not in the prompt; relink this input",
                    input_name=inp.name,
                    linked_node=[src_id, slot],
                )
            ]
        src_spec = self.spec(src_id)
        index = int(slot)
        if slot != index or not 0 <= index < len(src_spec.outputs):
            return [
                reason(
                    "bad_linked_input",
                    "Bad linked input, the output slot does not exist",
                    f"{inp.name}: node '{src_id}' ({src_spec.class_type}) has {len(src_spec.outputs)} outputs, "
                    f"not slot {slot}",
                    input_name=inp.name,
                    linked_node=[src_id, slot],
                )
            ]
        produced = src_spec.outputs[index].io_type
        self.edges.setdefault(src_id, []).append(node_id)  # node_id's own entry exists already
        if produced == inp.io_type:
            return []  # the common case, settled without the union and wildcard rules
        wanted = "COMBO" if inp.is_combo else inp.io_type
        if inp.is_combo and produced in ("STRING", "COMBO", "*") or types_compatible(produced, wanted):
            return []
        return [
            reason(
                "return_type_mismatch",
                "Return type mismatch between linked nodes",
                f"{inp.name}, received_type({produced}) mismatch input_type({wanted}): link an output of "
                f"type {wanted} instead",
                input_name=inp.name,
                input_config=[wanted],
                received_type=produced,
                linked_node=[src_id, index],
            )
        ]

    def _check_constant(self, inp: InputSpec, value: Any) -> tuple[list[dict[str, Any]], Any]:
        if inp.is_combo:
            return self._check_combo(inp, value), value
        if _ALREADY_TYPED.get(type(value)) == inp.io_type and (
            type(value) is not float or math.isfinite(value)
        ):
            return self._check_bounds(inp, value), value  # fast path: the JSON value has the right type
        convert = COERCE.get(inp.io_type)
        if convert is None:
            return [
                reason(
                    "invalid_input_type",
                    f"Input '{inp.name}' needs a link from a node producing {inp.io_type}",
                    f"{inp.name}: got the constant {value!r}; connect an output of type {inp.io_type}",
                    input_name=inp.name,
                )
            ], value
        try:
            if isinstance(value, dict | list) or (inp.io_type != "STRING" and value is None):
                raise ValueError(f"{type(value).__name__} is not a {inp.io_type}")
            coerced = convert(value)
            if isinstance(coerced, float) and not math.isfinite(coerced):
                raise ValueError("not a finite number")
        except (TypeError, ValueError, OverflowError) as exc:
            return [
                reason(
                    "invalid_input_type",
                    f"Failed to convert an input value to a {inp.io_type} value",
                    f"{inp.name}, {value!r}, {exc}",
                    input_name=inp.name,
                    received_value=repr(value),
                )
            ], value
        return self._check_bounds(inp, coerced), coerced

    def _check_bounds(self, inp: InputSpec, value: Any) -> list[dict[str, Any]]:
        if inp.ge is not None and value < inp.ge:
            return [
                reason(
                    "value_smaller_than_min",
                    f"Value {value} smaller than min of {inp.ge}",
                    f"{inp.name}: set it to at least {inp.ge}",
                    input_name=inp.name,
                    received_value=value,
                )
            ]
        if inp.le is not None and value > inp.le:
            return [
                reason(
                    "value_bigger_than_max",
                    f"Value {value} bigger than max of {inp.le}",
                    f"{inp.name}: set it to at most {inp.le}",
                    input_name=inp.name,
                    received_value=value,
                )
            ]
        return []

    def _check_combo(self, inp: InputSpec, value: Any) -> list[dict[str, Any]]:
        options = combo_values(inp, self.registry.choices)
        if value in options:
            return []
        # ComfyUI elides long lists in input_config; the details still name every valid choice,
        # because "what to change" is exactly that list (sampler names, checkpoint files...).
        valid = ", ".join(repr(o) for o in options) if options else "no choices available"
        return [
            reason(
                "value_not_in_list",
                "Value not in list",
                f"{inp.name}: '{value}' not in [{valid}]",
                input_name=inp.name,
                input_config=[options] if len(options) <= LIST_ELISION_LIMIT else None,
                received_value=value,
            )
        ]

    def _check_undeclared(self, node_id: str, spec: NodeSpec, inputs: dict[str, Any]) -> list[dict[str, Any]]:
        declared = spec.input_names
        undeclared = inputs.keys() - declared
        if not undeclared:
            return []
        errors = []
        for name in sorted(undeclared):
            if is_link(inputs[name]):
                errors.append(
                    reason(
                        "bad_linked_input",
                        f"Node {spec.class_type} has no input named '{name}'",
                        f"{name}: remove this link; inputs are {sorted(declared)}",
                        input_name=name,
                    )
                )
            else:
                # ComfyUI drops undeclared constants (newer/older node versions add widgets); we log it.
                log.warning("node %s (%s): ignoring undeclared input %r", node_id, spec.class_type, name)
                del inputs[name]
        return errors

    def _custom(self, spec: NodeSpec, constants: dict[str, Any]) -> list[dict[str, Any]]:
        if not spec.has_custom_validation:
            return []
        try:
            message = spec.node_cls.validate_inputs(constants, self.env)
        except Exception as exc:  # a node's validation hook is foreign code: report, don't crash
            log.exception("validate_inputs of %s raised", spec.class_type)
            return [
                reason("exception_during_validation", f"Validation of {spec.class_type} raised", str(exc))
            ]
        if message:
            return [reason("custom_validation_failed", "Custom validation failed for node", str(message))]
        return []


def _cycle_errors(validator: _Validator) -> None:
    if not _has_cycle(validator.edges):
        return
    for cycle in nx.simple_cycles(_to_digraph(validator.edges)):
        path = " -> ".join([*cycle, cycle[0]])
        for node_id in cycle:
            validator.valid[node_id] = False
            validator.errors.setdefault(node_id, []).append(
                reason(
                    "exception_during_validation",
                    "Dependency cycle detected",
                    f"{path}: remove one of these links so the graph has no loop",
                    cycle=cycle,
                )
            )


def copy_prompt(prompt: dict[str, Any]) -> dict[str, Any]:
    """Copy nodes and their input dicts (validation rewrites coerced values); values are shared."""
    copied = {}
    for node_id, node in prompt.items():
        node = dict(node)
        if isinstance(node.get("inputs"), dict):
            node["inputs"] = dict(node["inputs"])
        copied[str(node_id)] = node
    return copied


def select_outputs(prompt: dict[str, Any], registry: Registry, targets: list[str] | None) -> list[str]:
    """Output nodes to run: every output_node, narrowed by partial_execution_targets when given."""
    outputs = [
        node_id
        for node_id, node in prompt.items()
        if (cls := registry.get(node["class_type"])) is not None and cls.output_node
    ]
    if targets is not None:
        wanted = {str(t) for t in targets}
        outputs = [o for o in outputs if o in wanted]
    return outputs


def validate_prompt(
    prompt: Any, registry: Registry, *, targets: list[str] | None = None, env: Any = None
) -> ValidationResult:
    """Validate a whole API prompt; ok when at least one output (and its ancestry) is valid."""
    error, node_errors = _structure_errors(prompt, registry)
    if error is not None:
        return ValidationResult(False, error, node_errors, [], prompt if isinstance(prompt, dict) else {})
    prompt = copy_prompt(prompt)
    outputs = select_outputs(prompt, registry, targets)
    if not outputs:
        return ValidationResult(False, _top("prompt_no_outputs", "Prompt has no outputs"), {}, [], prompt)
    validator = _Validator(prompt, registry, env)
    for output in outputs:
        validator.validate(output)
    _cycle_errors(validator)
    invalid = {node_id for node_id, ok in validator.valid.items() if not ok}
    tainted = set(invalid)
    tainted |= _descendants(validator.edges, invalid)  # downstream of an invalid node cannot run
    good = [o for o in outputs if o not in tainted]
    for node_id, errors in validator.errors.items():
        downstream = _descendants(validator.edges, {node_id}) | {node_id}
        node_errors[node_id] = {
            "errors": errors,
            "dependent_outputs": [o for o in outputs if o in downstream],
            "class_type": prompt[node_id]["class_type"],
        }
    if not good:
        details = "\n".join(
            f"{err['message']}: {err['details']}" for entry in node_errors.values() for err in entry["errors"]
        )
        error = _top("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
        return ValidationResult(False, error, node_errors, [], prompt, validator.edges)
    return ValidationResult(True, None, node_errors, good, prompt, validator.edges)
