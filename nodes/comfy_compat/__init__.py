"""Running node packs written for ComfyUI (V1 and V3 protocols) on diffgraph's engine."""
