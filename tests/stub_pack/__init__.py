"""The stub-node pack every engine, server and CLI test builds its registry from: pure Python, no torch.

Edge types live in `types.py`; node families in one module each, like `nodes/defs/`:
`arithmetic` (numbers through the executor: caching, failures, validation hooks), `comfy_shapes`
(ComfyUI-shaped nodes for UI <-> API conversion, never run), `server_nodes` (progress, previews, files
and slow steps for the server), `txt2img` (stand-ins with ComfyUI's txt2img names for the CLI),
`flow` (lazy inputs, lists, expansion, blockers and async nodes for the dynamic executor).
Each module's registry function builds a fresh Registry per test.
"""
