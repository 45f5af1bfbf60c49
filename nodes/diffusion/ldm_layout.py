"""Original (LDM / single-file) checkpoint layouts: tensor names and shapes per family and size.

Used by make_checkpoint to write random-weight files in the layout real checkpoints have, so tests go
through the same loading path. Keys follow the `ldm` UNetModel, AutoencoderKL, HF CLIP and open_clip
module trees (`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.*`, `conditioner.*`).
"""

from __future__ import annotations

from dataclasses import dataclass

Layout = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class UnetArch:
    """openaimodel UNetModel hyper-parameters that decide tensor shapes."""

    channels: int
    mult: tuple[int, ...]
    res_blocks: int
    depth: tuple[int, ...]  # transformer depth per level (0 = no attention)
    mid_depth: int
    context_dim: int
    linear_proj: bool
    adm_in: int = 0
    in_channels: int = 4


@dataclass(frozen=True)
class VaeArch:
    """ldm AutoencoderKL hyper-parameters that decide tensor shapes."""

    channels: int
    mult: tuple[int, ...]
    res_blocks: int
    z_channels: int = 4


@dataclass(frozen=True)
class TextArch:
    """A CLIP text transformer in the HF (`hf`) or open_clip (`open_clip`) key layout."""

    prefix: str
    layout: str
    width: int
    layers: int
    mlp: int
    projection: int = 0  # open_clip text_projection columns (0 = none)
    vocab: int = 49408
    positions: int = 77


def _linear(out: Layout, name: str, n_out: int, n_in: int, bias: bool = True) -> None:
    out[name + ".weight"] = (n_out, n_in)
    if bias:
        out[name + ".bias"] = (n_out,)


def _conv(out: Layout, name: str, n_out: int, n_in: int, k: int) -> None:
    out[name + ".weight"] = (n_out, n_in, k, k)
    out[name + ".bias"] = (n_out,)


def _norm(out: Layout, name: str, n: int) -> None:
    out[name + ".weight"] = (n,)
    out[name + ".bias"] = (n,)


def _resblock(out: Layout, p: str, ch_in: int, ch_out: int, emb: int) -> None:
    _norm(out, p + ".in_layers.0", ch_in)
    _conv(out, p + ".in_layers.2", ch_out, ch_in, 3)
    _linear(out, p + ".emb_layers.1", ch_out, emb)
    _norm(out, p + ".out_layers.0", ch_out)
    _conv(out, p + ".out_layers.3", ch_out, ch_out, 3)
    if ch_in != ch_out:
        _conv(out, p + ".skip_connection", ch_out, ch_in, 1)


def _transformer(out: Layout, p: str, ch: int, depth: int, ctx: int, linear: bool) -> None:
    _norm(out, p + ".norm", ch)
    for name in ("proj_in", "proj_out"):
        if linear:
            _linear(out, f"{p}.{name}", ch, ch)
        else:
            _conv(out, f"{p}.{name}", ch, ch, 1)
    for d in range(depth):
        b = f"{p}.transformer_blocks.{d}"
        for attn, kv_dim in (("attn1", ch), ("attn2", ctx)):
            _linear(out, f"{b}.{attn}.to_q", ch, ch, bias=False)
            _linear(out, f"{b}.{attn}.to_k", ch, kv_dim, bias=False)
            _linear(out, f"{b}.{attn}.to_v", ch, kv_dim, bias=False)
            _linear(out, f"{b}.{attn}.to_out.0", ch, ch)
        _linear(out, f"{b}.ff.net.0.proj", ch * 8, ch)
        _linear(out, f"{b}.ff.net.2", ch, ch * 4)
        for n in ("norm1", "norm2", "norm3"):
            _norm(out, f"{b}.{n}", ch)


def unet_layout(a: UnetArch, prefix: str = "model.diffusion_model.") -> Layout:
    """Keys and shapes of an LDM UNetModel."""
    out: Layout = {}
    mc, emb = a.channels, a.channels * 4
    _linear(out, "time_embed.0", emb, mc)
    _linear(out, "time_embed.2", emb, emb)
    if a.adm_in:
        _linear(out, "label_emb.0.0", emb, a.adm_in)
        _linear(out, "label_emb.0.2", emb, emb)
    _conv(out, "input_blocks.0.0", mc, a.in_channels, 3)
    skips, ch, i = [mc], mc, 1
    for level, m in enumerate(a.mult):
        for _ in range(a.res_blocks):
            _resblock(out, f"input_blocks.{i}.0", ch, mc * m, emb)
            ch = mc * m
            if a.depth[level]:
                _transformer(out, f"input_blocks.{i}.1", ch, a.depth[level], a.context_dim, a.linear_proj)
            skips.append(ch)
            i += 1
        if level != len(a.mult) - 1:
            _conv(out, f"input_blocks.{i}.0.op", ch, ch, 3)
            skips.append(ch)
            i += 1
    _resblock(out, "middle_block.0", ch, ch, emb)
    _transformer(out, "middle_block.1", ch, a.mid_depth, a.context_dim, a.linear_proj)
    _resblock(out, "middle_block.2", ch, ch, emb)
    k = 0
    for level in reversed(range(len(a.mult))):
        for r in range(a.res_blocks + 1):
            _resblock(out, f"output_blocks.{k}.0", ch + skips.pop(), mc * a.mult[level], emb)
            ch = mc * a.mult[level]
            sub = 1
            if a.depth[level]:
                _transformer(out, f"output_blocks.{k}.1", ch, a.depth[level], a.context_dim, a.linear_proj)
                sub = 2
            if level and r == a.res_blocks:
                _conv(out, f"output_blocks.{k}.{sub}.conv", ch, ch, 3)
            k += 1
    _norm(out, "out.0", mc)
    _conv(out, "out.2", a.in_channels, mc, 3)
    return {prefix + key: shape for key, shape in out.items()}


def _vae_resnet(out: Layout, p: str, ch_in: int, ch_out: int) -> None:
    _norm(out, p + ".norm1", ch_in)
    _conv(out, p + ".conv1", ch_out, ch_in, 3)
    _norm(out, p + ".norm2", ch_out)
    _conv(out, p + ".conv2", ch_out, ch_out, 3)
    if ch_in != ch_out:
        _conv(out, p + ".nin_shortcut", ch_out, ch_in, 1)


def _vae_mid(out: Layout, p: str, ch: int) -> None:
    _vae_resnet(out, p + ".mid.block_1", ch, ch)
    _norm(out, p + ".mid.attn_1.norm", ch)
    for n in ("q", "k", "v", "proj_out"):
        _conv(out, f"{p}.mid.attn_1.{n}", ch, ch, 1)
    _vae_resnet(out, p + ".mid.block_2", ch, ch)


def vae_layout(a: VaeArch, prefix: str = "first_stage_model.") -> Layout:
    """Keys and shapes of an LDM AutoencoderKL (encoder, decoder, quant convs)."""
    out: Layout = {}
    chans = [a.channels * m for m in a.mult]
    _conv(out, "encoder.conv_in", a.channels, 3, 3)
    ch = a.channels
    for i, c in enumerate(chans):
        for j in range(a.res_blocks):
            _vae_resnet(out, f"encoder.down.{i}.block.{j}", ch, c)
            ch = c
        if i != len(chans) - 1:
            _conv(out, f"encoder.down.{i}.downsample.conv", ch, ch, 3)
    _vae_mid(out, "encoder", ch)
    _norm(out, "encoder.norm_out", ch)
    _conv(out, "encoder.conv_out", 2 * a.z_channels, ch, 3)
    _conv(out, "decoder.conv_in", ch, a.z_channels, 3)
    _vae_mid(out, "decoder", ch)
    for i in reversed(range(len(chans))):
        for j in range(a.res_blocks + 1):
            _vae_resnet(out, f"decoder.up.{i}.block.{j}", ch, chans[i])
            ch = chans[i]
        if i != 0:
            _conv(out, f"decoder.up.{i}.upsample.conv", ch, ch, 3)
    _norm(out, "decoder.norm_out", ch)
    _conv(out, "decoder.conv_out", 3, ch, 3)
    _conv(out, "quant_conv", 2 * a.z_channels, 2 * a.z_channels, 1)
    _conv(out, "post_quant_conv", a.z_channels, a.z_channels, 1)
    return {prefix + key: shape for key, shape in out.items()}


def text_layout(a: TextArch) -> Layout:
    """Keys and shapes of a CLIP text transformer in HF or open_clip naming."""
    out: Layout = {}
    w = a.width
    if a.layout == "hf":
        t = "text_model."
        out[t + "embeddings.token_embedding.weight"] = (a.vocab, w)
        out[t + "embeddings.position_embedding.weight"] = (a.positions, w)
        out[t + "embeddings.position_ids"] = (1, a.positions)
        for i in range(a.layers):
            p = f"{t}encoder.layers.{i}"
            for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
                _linear(out, f"{p}.self_attn.{n}", w, w)
            _norm(out, p + ".layer_norm1", w)
            _linear(out, p + ".mlp.fc1", a.mlp, w)
            _linear(out, p + ".mlp.fc2", w, a.mlp)
            _norm(out, p + ".layer_norm2", w)
        _norm(out, t + "final_layer_norm", w)
    else:
        out["token_embedding.weight"] = (a.vocab, w)
        out["positional_embedding"] = (a.positions, w)
        for i in range(a.layers):
            p = f"transformer.resblocks.{i}"
            _norm(out, p + ".ln_1", w)
            out[p + ".attn.in_proj_weight"] = (3 * w, w)
            out[p + ".attn.in_proj_bias"] = (3 * w,)
            _linear(out, p + ".attn.out_proj", w, w)
            _norm(out, p + ".ln_2", w)
            _linear(out, p + ".mlp.c_fc", a.mlp, w)
            _linear(out, p + ".mlp.c_proj", w, a.mlp)
        _norm(out, "ln_final", w)
        if a.projection:
            out["text_projection"] = (w, a.projection)
        out["logit_scale"] = ()
    return {a.prefix + key: shape for key, shape in out.items()}
