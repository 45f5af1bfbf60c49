"""The prompts of the FLUX/SD3 text encoder reference cases and the slices kept of each result.

Shared by the ComfyUI recording script and the tests (plain Python and torch only).
"""

import torch

_LONG = (
    "(masterpiece:1.3), a ((detailed)) illustration of (a castle:0.8) on a hill, "
    + "with tall towers, fluttering flags, mossy stone walls, a winding road, dark pine trees and a river, "
    * 14
    + "(evening light:1.1)"
)
# Tokenization checks: empty, emphasis and escapes, long text, one long word, many short words,
# newlines and double spaces, an unmatched parenthesis, non-ASCII text.
PROMPTS = [
    "",
    "a cat",
    "a (cat:1.3) and ((dog)) \\(x\\) [y]",
    _LONG,
    "supercalifragilisticexpialidocious " * 30,
    "word, " * 80,
    "hello\nworld  two  spaces",
    "(unbalanced",
    "ünïcode café 東京 1234567 3.14",
]
CASES = {
    "flux_plain": {
        "family": "flux",
        "node": "CLIPTextEncode",
        "text": "a photograph of a red fox in fresh snow",
    },
    "flux_weighted_long": {"family": "flux", "node": "CLIPTextEncode", "text": _LONG},
    "sd3_plain": {
        "family": "sd3",
        "node": "CLIPTextEncode",
        "text": "a photograph of a red fox in fresh snow",
    },
    "sd3_weighted_long": {"family": "sd3", "node": "CLIPTextEncode", "text": _LONG},
    "sd3_node_no_padding": {
        "family": "sd3",
        "node": "CLIPTextEncodeSD3",
        "sd3": {"clip_l": "a (cat:1.2) on a sofa", "clip_g": "", "t5xxl": "", "empty_padding": "none"},
    },
}
COLUMNS = 16


def summary(name: str, embeds: torch.Tensor, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
    """What is kept of one result: shape, first 4 and last 2 token rows, the first 16 columns of every
    row, every row's L2 norm, and the pooled vector."""
    e = embeds[0]
    return {
        f"{name}.shape": torch.tensor(list(embeds.shape)),
        f"{name}.head": e[:4].contiguous(),
        f"{name}.tail": e[-2:].contiguous(),
        f"{name}.cols": e[:, :COLUMNS].contiguous(),
        f"{name}.row_norm": e.norm(dim=-1).contiguous(),
        f"{name}.pooled": pooled.contiguous(),
    }
