"""A node pack written in ComfyUI's V1 style, covering every protocol feature diffgraph adapts."""

from . import routes  # noqa: F401 - declares the pack's HTTP routes
from .flow_nodes import FLOW_NODES
from .value_nodes import VALUE_NODES

NODE_CLASS_MAPPINGS = {**VALUE_NODES, **FLOW_NODES}
NODE_DISPLAY_NAME_MAPPINGS = {"V1Int": "V1 Integer", "V1Show": "V1 Show"}
WEB_DIRECTORY = "./web"
