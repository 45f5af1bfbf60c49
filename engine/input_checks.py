"""Per-node input checks: links and their types, constants, bounds, combos, custom validation hooks."""

from __future__ import annotations

import logging
import math
from typing import Any

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


def types_compatible(produced: str, wanted: str) -> bool:
    """ComfyUI's rule: equal, '*' on either side, or comma-separated unions that intersect."""
    if produced == wanted or "*" in (produced, wanted):
        return True
    return bool(set(produced.split(",")) & set(wanted.split(",")))


def wildcard_input(name: str) -> InputSpec:
    """The spec of an undeclared input a **kwargs node accepts: any type, optional."""
    return InputSpec(name, "*", "optional", False, None, None, None, None, None, {}, "")


class NodeChecker:
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
        link_types: dict[str, str] = {}
        unchecked_links, wants_types = spec.unchecked_links, spec.wants_input_types
        unchecked_constants = spec.unchecked_constants
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
                errors.extend(
                    self._check_link(node_id, inp, value, check_type=inp.name not in unchecked_links)
                )
                if value[0] in self.prompt:
                    upstream.append(value[0])
                    if wants_types:
                        link_types[inp.name] = self._link_type(value)
                constants[inp.name] = None
            elif inp.name in unchecked_constants:
                constants[inp.name] = unwrap_constant(value)
            else:
                problems, coerced = self._check_constant(inp, unwrap_constant(value))
                errors.extend(problems)
                if not problems:
                    inputs[inp.name] = coerced
                constants[inp.name] = coerced
        errors.extend(self._check_undeclared(node_id, spec, inputs))
        if spec.node_cls.extra_inputs:
            for name in inputs.keys() - spec.input_names:  # links kept by _check_undeclared
                errors.extend(self._check_link(node_id, wildcard_input(name), inputs[name]))
                if inputs[name][0] in self.prompt:
                    upstream.append(inputs[name][0])
                    link_types[name] = self._link_type(inputs[name])
        errors.extend(self._custom(spec, constants, link_types))
        if errors:
            self.errors[node_id] = errors
        return not errors

    def _link_type(self, link: Any) -> str:
        outputs = self.spec(link[0]).outputs
        slot = int(link[1])
        return outputs[slot].io_type if 0 <= slot < len(outputs) else "*"

    def _check_link(
        self, node_id: str, inp: InputSpec, link: Any, check_type: bool = True
    ) -> list[dict[str, Any]]:
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
        if produced == inp.io_type or not check_type:
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
        if inp.is_remote:
            # No list to check against (the client fetched it); like ComfyUI, only a string is required.
            if isinstance(value, str):
                return []
            return [
                reason(
                    "invalid_input_type",
                    "Value is not a string",
                    f"{inp.name}: expected a file name, got {value!r}",
                    input_name=inp.name,
                    received_value=value,
                )
            ]
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
            if is_link(inputs[name]) and spec.node_cls.extra_inputs:
                continue  # a node taking **kwargs receives undeclared links
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
                # ComfyUI drops such values silently (a prompt written for another version of the node);
                # running without them could change the result unnoticed, so they are refused.
                errors.append(
                    reason(
                        "undeclared_input",
                        f"Node {spec.class_type} has no input named '{name}'",
                        f"{name}: this node does not take it (a prompt for another version of the node?); "
                        f"remove it; inputs are {sorted(declared)}",
                        input_name=name,
                    )
                )
        return errors

    def _custom(
        self, spec: NodeSpec, constants: dict[str, Any], link_types: dict[str, str]
    ) -> list[dict[str, Any]]:
        if not spec.has_custom_validation:
            return []
        try:
            if spec.validation_takes_types:
                validate: Any = spec.node_cls.validate_inputs
                message = validate(constants, self.env, input_types=link_types)
            else:
                message = spec.node_cls.validate_inputs(constants, self.env)
        except Exception as exc:  # a node's validation hook is foreign code: report, don't crash
            log.exception("validate_inputs of %s raised", spec.class_type)
            return [
                reason("exception_during_validation", f"Validation of {spec.class_type} raised", str(exc))
            ]
        if message:
            return [reason("custom_validation_failed", "Custom validation failed for node", str(message))]
        return []
