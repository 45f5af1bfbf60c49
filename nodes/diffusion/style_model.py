"""Style models: the T2I-Adapter style adapter and FLUX Redux (image tokens -> extra text tokens).

The published file (t2iadapter_style_sd14v1) holds a small pre-norm transformer: 8 learned style
tokens are appended to the image's 257 ViT-L/14 hidden states, three CLIP-style residual attention
blocks (8 heads, QuickGELU MLP) run over them, and the style tokens, normed and projected to 768
wide, are appended to the prompt's tokens for SD1.x. Width, depth, token count and output width are
read from the tensors.

FLUX.1 Redux (flux1-redux-dev) maps each of SigLIP so400m's 729 image tokens through a SiLU MLP
(1152 -> 12288 -> 4096) to T5-width tokens that are appended to a FLUX prompt's; sizes come from the
tensors, so tiny test files work alike.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from engine import UserFacingError

STYLE_HEADS = 8


class StyleModelError(UserFacingError):
    """A style model file of a kind diffgraph does not run."""

    code = "unsupported_style_model"


class _Block(nn.Module):
    """Pre-norm residual attention block with a QuickGELU MLP (the published file's block)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [L, N, D] (sequence first, as nn.MultiheadAttention takes it by default)."""
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        fc, proj = self.mlp[0], self.mlp[1]
        hidden = fc(self.ln_2(x))
        return x + proj(hidden * torch.sigmoid(1.702 * hidden))


class StyleAdapter(nn.Module):
    """Image hidden states [B, T, width] -> style tokens [B, tokens, context]."""

    def __init__(self, width: int, context: int, layers: int, tokens: int):
        super().__init__()
        self.style_embedding = nn.Parameter(torch.zeros(1, tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer_layes = nn.Sequential(*(_Block(width, STYLE_HEADS) for _ in range(layers)))
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, context))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Append the style tokens, run the blocks, return the projected style tokens."""
        tokens = self.style_embedding.shape[1]
        style = self.style_embedding.expand(hidden.shape[0], -1, -1).to(hidden)
        x = self.ln_pre(torch.cat([hidden, style], dim=1)).permute(1, 0, 2)
        x = self.transformer_layes(x).permute(1, 0, 2)
        return self.ln_post(x[:, -tokens:, :]) @ self.proj


class ReduxEncoder(nn.Module):
    """FLUX Redux: image hidden states [B, T, width] -> [B, T, context] tokens through a SiLU MLP."""

    def __init__(self, width: int, hidden: int, context: int):
        super().__init__()
        self.redux_up = nn.Linear(width, hidden)
        self.redux_down = nn.Linear(hidden, context)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """One token out per image token."""
        return self.redux_down(torch.nn.functional.silu(self.redux_up(hidden)))


def build_style_model(sd: dict[str, torch.Tensor], where: str) -> nn.Module:
    """The style model a state dict describes (T2I style adapter or FLUX Redux; sizes from its tensors)."""
    if "redux_down.weight" in sd:
        if set(sd) != {f"redux_{p}.{t}" for p in ("up", "down") for t in ("weight", "bias")}:
            raise StyleModelError(f"{where} has redux_down but not the FLUX Redux tensors (redux_up/down)")
        hidden, width = sd["redux_up.weight"].shape
        redux = ReduxEncoder(width, hidden, sd["redux_down.weight"].shape[0])
        redux.load_state_dict({k: v.float() for k, v in sd.items()})
        return redux.eval().requires_grad_(False)
    if "style_embedding" not in sd:
        raise StyleModelError(f"{where} is not a style model (expected a T2I-Adapter style file)")
    _, tokens, width = sd["style_embedding"].shape
    layers = len({m.group(1) for k in sd if (m := re.match(r"transformer_layes\.(\d+)\.", k))})
    model = StyleAdapter(width, sd["proj"].shape[1], layers, tokens)
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    return model.eval().requires_grad_(False)
