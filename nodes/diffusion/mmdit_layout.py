"""SD3 / SD3.5 single-file layouts: the MMDiT (`model.diffusion_model.*`) and 16-channel VAE tensor names.

Shapes follow Stability's reference MMDiT as the published files store it: hidden width 64 per block
(depth 24 -> 1536), one head per block, fused `qkv` projections, `adaLN_modulation.1` rows of 6 (9 for
the MMDiT-X dual-attention blocks of 3.5 medium) chunks of the width, and a last block whose context
stream only feeds attention (`pre_only`: two chunks, no output projection or MLP). The SD3 VAE is the
LDM AutoencoderKL with 16 latent channels and no quant convs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nodes.diffusion.ldm_layout import Layout, VaeArch, vae_layout

MMDIT_PREFIX = "model.diffusion_model."


@dataclass(frozen=True)
class MmditArch:
    """MMDiT hyper-parameters that decide tensor shapes (all read back from a file by the loader)."""

    depth: int
    pos_embed_max_size: int
    dual_attention_layers: tuple[int, ...] = ()
    qk_norm: bool = False
    in_channels: int = 16
    patch_size: int = 2
    context_dim: int = 4096
    pooled_dim: int = 2048
    mlp_ratio: int = 4

    @property
    def hidden(self) -> int:
        """Transformer width: 64 per block, as every SD3 release is built."""
        return 64 * self.depth


def _linear(out: Layout, name: str, n_out: int, n_in: int) -> None:
    out[name + ".weight"] = (n_out, n_in)
    out[name + ".bias"] = (n_out,)


def _attention(out: Layout, name: str, width: int, qk_norm: bool, pre_only: bool) -> None:
    _linear(out, name + ".qkv", 3 * width, width)
    if qk_norm:
        out[name + ".ln_q.weight"] = (64,)
        out[name + ".ln_k.weight"] = (64,)
    if not pre_only:
        _linear(out, name + ".proj", width, width)


def _stream(out: Layout, name: str, a: MmditArch, chunks: int, pre_only: bool, dual: bool) -> None:
    """One half of a joint block (x_block or context_block)."""
    w = a.hidden
    _linear(out, name + ".adaLN_modulation.1", chunks * w, w)
    _attention(out, name + ".attn", w, a.qk_norm, pre_only)
    if dual:
        _attention(out, name + ".attn2", w, a.qk_norm, False)
    if not pre_only:
        _linear(out, name + ".mlp.fc1", a.mlp_ratio * w, w)
        _linear(out, name + ".mlp.fc2", w, a.mlp_ratio * w)


def mmdit_layout(a: MmditArch, prefix: str = MMDIT_PREFIX) -> Layout:
    """Every MMDiT tensor name and shape, in the published single-file naming."""
    w, p = a.hidden, a.patch_size
    out: Layout = {}
    out["pos_embed"] = (1, a.pos_embed_max_size**2, w)
    out["x_embedder.proj.weight"] = (w, a.in_channels, p, p)
    out["x_embedder.proj.bias"] = (w,)
    _linear(out, "t_embedder.mlp.0", w, 256)
    _linear(out, "t_embedder.mlp.2", w, w)
    _linear(out, "y_embedder.mlp.0", w, a.pooled_dim)
    _linear(out, "y_embedder.mlp.2", w, w)
    _linear(out, "context_embedder", w, a.context_dim)
    for i in range(a.depth):
        last = i == a.depth - 1
        dual = i in a.dual_attention_layers
        _stream(out, f"joint_blocks.{i}.context_block", a, 2 if last else 6, last, False)
        _stream(out, f"joint_blocks.{i}.x_block", a, 9 if dual else 6, False, dual)
    _linear(out, "final_layer.adaLN_modulation.1", 2 * w, w)
    _linear(out, "final_layer.linear", p * p * a.in_channels, w)
    return {prefix + key: shape for key, shape in out.items()}


def sd3_vae_layout(vae: VaeArch, prefix: str = "first_stage_model.") -> Layout:
    """The SD3 VAE: LDM AutoencoderKL keys without quant_conv / post_quant_conv (SD3 has neither)."""
    full = vae_layout(vae, prefix)
    return {
        k: v
        for k, v in full.items()
        if not k.startswith((prefix + "quant_conv.", prefix + "post_quant_conv."))
    }


# Published SD3-family shapes (name -> arch, random-weight component name).
SD3_ARCHS: dict[str, tuple[MmditArch, str]] = {
    "sd3.5-medium": (MmditArch(24, 384, tuple(range(13)), qk_norm=True), "sd35m"),
    "sd3.5-large": (MmditArch(38, 192, (), qk_norm=True), "sd35l"),
    "sd3-medium": (MmditArch(24, 192, ()), "sd3m"),
}
SD3_SIZES = ("tiny", "reduced", "full")
SD3_FULL_VAE = VaeArch(128, (1, 2, 4, 4), 2, z_channels=16)
SD3_TINY_VAE = VaeArch(32, (1, 2, 2, 2), 1, z_channels=16)
# Tiny files: two blocks, a 24x24 position grid (a 256 px image crops it), text widths of the tiny
# text encoder files, 32-channel VAE.
# Reduced files: two blocks at the published position grid and VAE (the shared reference's d2 file).
_SMALL_DEPTH = 2
_TINY_GRID = 24
_TINY_TEXT_WIDTH = 128


def sd3_arch(name: str, size: str) -> MmditArch:
    """The MMDiT shapes of a published SD3 model at tiny, reduced (depth 2) or full size."""
    if name not in SD3_ARCHS or size not in SD3_SIZES:
        raise ValueError(
            f"unknown SD3 arch/size {name!r}/{size!r}; arch one of {sorted(SD3_ARCHS)}, size {SD3_SIZES}"
        )
    arch = SD3_ARCHS[name][0]
    if size == "full":
        return arch
    # The last block never has the second attention (its context stream only feeds the joint attention).
    dual = tuple(i for i in arch.dual_attention_layers if i < _SMALL_DEPTH - 1)
    small = replace(arch, depth=_SMALL_DEPTH, dual_attention_layers=dual)
    if size == "reduced":
        return small
    # Tiny text encoders (make_text_encoder) give 128-wide tokens (T5) and pooled CLIP-L + CLIP-G of 64 each.
    return replace(
        small, pos_embed_max_size=_TINY_GRID, context_dim=_TINY_TEXT_WIDTH, pooled_dim=_TINY_TEXT_WIDTH
    )


def sd3_checkpoint_layout(name: str, size: str) -> Layout:
    """A Stability-style SD3/3.5 single file: MMDiT plus VAE (text encoders ship as separate files)."""
    vae = SD3_TINY_VAE if size == "tiny" else SD3_FULL_VAE
    return {**mmdit_layout(sd3_arch(name, size)), **sd3_vae_layout(vae)}
