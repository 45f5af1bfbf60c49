"""The node API: one class per node, pydantic `Inputs`/`Outputs` models and a `run(ctx, inputs)` method."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import CoreSchema, PydanticUndefined, core_schema

if TYPE_CHECKING:
    from engine.context import RunContext


class Hidden(StrEnum):
    """The hidden inputs a node may declare (ComfyUI's names); their values reach the node through ctx."""

    PROMPT = "PROMPT"  # the whole API prompt: ctx.prompt
    EXTRA_PNGINFO = "EXTRA_PNGINFO"  # the client's workflow and extras: ctx.extra_pnginfo
    UNIQUE_ID = "UNIQUE_ID"  # this node's id: ctx.node_id (it then joins the cache key)
    DYNPROMPT = "DYNPROMPT"  # the prompt with the nodes expansions added: ctx.dynprompt (dynamic runs)
    AUTH_TOKEN_COMFY_ORG = "AUTH_TOKEN_COMFY_ORG"  # a client credential from extra_data, for API nodes
    API_KEY_COMFY_ORG = "API_KEY_COMFY_ORG"  # likewise


# Option keys a widget may carry in the ComfyUI node schema (object_info), besides default/min/max/tooltip.
WIDGET_OPTION_KEYS = (
    "step",
    "round",
    "display",
    "multiline",
    "placeholder",
    "dynamicPrompts",
    "label_on",
    "label_off",
    "control_after_generate",
    "image_upload",
    "image_folder",
    "video_upload",
    "forceInput",
    "lazy",
    "advanced",  # the frontend folds such inputs away under an "advanced" toggle
    "remote",  # a combo whose choices the client fetches from a server route (see InputSpec.is_remote)
)
# Not accepted here: `rawLink` (ComfyUI hands such an input the link itself, not its value). Typed
# nodes always receive values; only adapted foreign nodes (raw_io) may declare it, through their spec.


class EdgeType:
    """Base of every typed value that travels on a link (Latent, Conditioning, model handles...).

    `io_type` is the ComfyUI type name shown to clients ("LATENT", "MODEL"...). Subclasses state their
    tensor layout and dtype in their docstring. `nbytes()` feeds the cache's byte budget.
    """

    io_type: ClassVar[str] = "*"

    def nbytes(self) -> int:
        """Bytes this value keeps alive in the cache (tensors it owns; not models held by the store)."""
        return 0

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        """Edge values are made by nodes, not parsed: an input accepts an instance as it is.

        Without this pydantic would rebuild dataclass edge values field by field, which needs every
        annotation resolvable at run time (a handle type named only for type checkers is not).
        """
        return core_schema.is_instance_schema(cls)


class NodeInputs(BaseModel):
    """Base for a node's `Inputs`; field order is the widget order clients see."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", frozen=False)


class NodeOutputs(BaseModel):
    """Base for a node's `Outputs`; field order is the output slot order."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")


def Input(  # noqa: N802 - reads like pydantic's Field at declaration sites
    default: Any = PydanticUndefined,
    *,
    description: str = "",
    ge: float | None = None,
    le: float | None = None,
    optional: bool = False,
    combo_source: str | None = None,
    **widget: Any,
) -> Any:
    """Declare an input field: bounds, tooltip and ComfyUI widget options (step, multiline, ...).

    `optional=True` lists the input under "optional" (it may be left unlinked). `combo_source` names a
    dynamic list of choices (for example "checkpoints") resolved by the registry's choice provider.
    Other keyword arguments are ComfyUI widget options and must be in WIDGET_OPTION_KEYS.
    """
    unknown = set(widget) - set(WIDGET_OPTION_KEYS)
    if unknown:
        raise TypeError(f"unknown widget option(s) {sorted(unknown)}; known: {WIDGET_OPTION_KEYS}")
    extra: dict[str, Any] = {"widget": widget}
    if optional:
        extra["optional"] = True
    if combo_source is not None:
        extra["combo_source"] = combo_source
    return Field(default, description=description, ge=ge, le=le, json_schema_extra=extra)


def Output(*, name: str | None = None, description: str = "", is_list: bool = False) -> Any:  # noqa: N802
    """Declare an output slot: display name (defaults to the type name), tooltip, list flag."""
    extra: dict[str, Any] = {"is_list": is_list}
    if name is not None:
        extra["output_name"] = name
    return Field(description=description, json_schema_extra=extra)


class Node:
    """Base class of every node. Subclasses set the class attributes and implement `run`.

    Nodes are stateless: everything a run needs comes through `ctx` and `inputs`.
    """

    class_type: ClassVar[str]
    display_name: ClassVar[str | None] = None
    category: ClassVar[str] = "sd"
    description: ClassVar[str] = ""
    output_node: ClassVar[bool] = False
    # A side-effecting node (writes files) must not be served from the cache.
    cacheable: ClassVar[bool] = True
    # Bump when a change makes old cached results wrong; it is part of the cache key.
    version: ClassVar[int] = 1
    # Non-idempotent nodes get their node id in the cache key (ComfyUI's NOT_IDEMPOTENT / UNIQUE_ID).
    idempotent: ClassVar[bool] = True
    # Hidden inputs, ComfyUI style: name -> kind. Listed in the schema; the values arrive via ctx.
    hidden: ClassVar[Mapping[str, Hidden]] = {}
    # Inputs whose default checks (combo membership, bounds) validate_inputs replaces, as ComfyUI skips
    # them for inputs its VALIDATE_INPUTS takes (LoadImage accepts "name [output]" outside its list).
    self_validated_inputs: ClassVar[frozenset[str]] = frozenset()
    # ComfyUI's INPUT_IS_LIST: the node gets every input as a whole list, once, instead of once per item.
    input_is_list: ClassVar[bool] = False
    # The node accepts linked inputs it does not declare (a ComfyUI node taking **kwargs).
    extra_inputs: ClassVar[bool] = False
    # The node may return a NodeResult (a subgraph expansion, blockers, UI) instead of its Outputs.
    dynamic: ClassVar[bool] = False
    # Inputs arrive as a plain dict (not the Inputs model) and run() returns a NodeResult: nodes
    # adapted from another protocol, whose spec comes from declared_spec().
    raw_io: ClassVar[bool] = False
    python_module: ClassVar[str] = "nodes"
    deprecated: ClassVar[bool] = False
    experimental: ClassVar[bool] = False

    Inputs: ClassVar[type[NodeInputs]] = NodeInputs
    Outputs: ClassVar[type[NodeOutputs]] = NodeOutputs

    @classmethod
    def fingerprint(cls, values: Mapping[str, Any], env: Any) -> Hashable | None:
        """ComfyUI's IS_CHANGED: a value joining the cache key (constants only; links are None).

        Return None when the inputs alone decide the result. Return float("nan") to always re-run.
        `env` is the executor's environment (directories, model paths).
        """
        return None

    @classmethod
    def validate_inputs(cls, values: Mapping[str, Any], env: Any) -> str | None:
        """Custom validation on constants (links are None); return a message saying what to change."""
        return None

    def check_lazy_status(self, ctx: RunContext, values: dict[str, Any]) -> list[str]:
        """Names of lazy inputs still needed, given the values known so far (unevaluated ones are None).

        Called before run() on nodes with lazy inputs; run() happens once this returns nothing new.
        """
        return []

    @classmethod
    def declared_spec(cls) -> Any:
        """The NodeSpec of a raw_io node (its inputs are not a pydantic model); None derives it."""
        return None

    @classmethod
    def declared_info(cls, choices: Any) -> dict[str, Any] | None:
        """The object_info entry of a raw_io node, built fresh on every call; None derives it."""
        return None

    def run(self, ctx: RunContext, inputs: Any) -> Any:
        """Compute the outputs; long loops call ctx.progress() and ctx.check_cancelled()."""
        raise NotImplementedError
