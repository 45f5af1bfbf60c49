"""FLUX and SD3 prompt encoding with ComfyUI 0.3.64's tokenization, padding and concatenation rules.

Tokenization (per encoder): emphasis is parsed as for SD; each weighted segment is tokenized whole
(words are not tokenized one by one) and placed in windows of `max_length`: a segment that does not
fit is moved to a new window, or split when it is 8 tokens or longer. CLIP windows are 77 tokens
(start, 75, end, padding: the end token for CLIP-L, 0 for CLIP-G). T5 has one window of any length,
no start token, `</s>` then padding with 0 up to 256 tokens (FLUX) or 77 (SD3).

Embeddings: `embedding:name` (after a space or newline, or at the start of a segment) inserts the
file's vectors for that encoder (keys clip_l, clip_g, t5xxl), one position each.

Weighting: a token of weight w becomes (z - z_empty) * w + z_empty, z_empty being the encoding of an
empty prompt of the same length. An encoder given no tokens at all encodes just its start/end tokens.

FLUX: T5 hidden states [1, >=256, 4096] with CLIP-L's pooled output [1, 768] (last layer).
SD3: CLIP-L and CLIP-G penultimate layers side by side [.., 768 + 1280], zero-padded to 4096 wide,
then T5's tokens appended along the sequence; pooled is CLIP-L's and CLIP-G's projected pooled
[1, 2048]. A missing encoder contributes zeros (or nothing, for T5), as ComfyUI does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch

from nodes.diffusion import families
from nodes.diffusion.embeddings import PREFIX as EMBEDDING_PREFIX
from nodes.diffusion.embeddings import EmbeddingLibrary, EmbeddingLookup, EmbeddingNotFoundError
from nodes.diffusion.families import TextEncoderSpec
from nodes.diffusion.t5 import T5_END, T5_PAD, run_t5, t5_encode_words
from nodes.diffusion.text_encode import ClipStack, _escape, _unescape, parse_weights, vectors_written
from nodes.diffusion.tokenizer import END_TOKEN, START_TOKEN, encode_words
from nodes.types import CondEntry

FLOW_FAMILIES = ("flux", "sd3")
MAX_WORD_TOKENS = 8
Token = int | torch.Tensor
Pairs = list[list[tuple[Token, float]]]


@dataclass(frozen=True)
class TokenRule:
    """How one encoder's tokenizer lays tokens out in windows."""

    start: int | None
    end: int
    pad: int
    max_length: int
    pad_to_max: bool
    min_length: int | None
    words: Callable[[str], list[int]]


CLIP_L_RULE = TokenRule(START_TOKEN, END_TOKEN, END_TOKEN, 77, True, None, encode_words)
CLIP_G_RULE = replace(CLIP_L_RULE, pad=0)
T5_FLUX_RULE = TokenRule(None, T5_END, T5_PAD, 99999999, False, 256, t5_encode_words)
T5_SD3_RULE = replace(T5_FLUX_RULE, min_length=77)
_EMBEDDING_SPLIT = re.compile(r" embedding:|\nembedding:")


def _embedding(name: str, lookup: EmbeddingLookup) -> tuple[torch.Tensor, str]:
    """An `embedding:` word's vectors and the text after its name (ComfyUI: first word is the name;
    a trailing comma is tried without it and then kept as text)."""
    first, *rest = name.split() or [""]
    leftover = " ".join(rest)
    vectors = lookup(first)
    stripped = first.strip(",")
    if vectors is None and len(stripped) < len(first):
        vectors, leftover = lookup(stripped), f"{first[len(stripped) :]} {leftover}"
    if vectors is None:
        raise EmbeddingNotFoundError(f"embedding {first!r} not found in models/embeddings")
    return vectors, leftover


def tokenize(text: str, rule: TokenRule, lookup: EmbeddingLookup | None = None) -> Pairs:
    """(token, weight) windows of a prompt for one encoder; a token is an id or an embedding vector."""
    groups: list[list[tuple[Token, float]]] = []
    for segment, weight in parse_weights(_escape(text)):
        parts = _EMBEDDING_SPLIT.split(_unescape(segment))
        words = [parts[0], *(EMBEDDING_PREFIX + p for p in parts[1:])]
        for word in (w for w in words if w):
            if word.startswith(EMBEDDING_PREFIX) and lookup is not None:
                vectors, word = _embedding(word[len(EMBEDDING_PREFIX) :].strip("\n"), lookup)
                groups.append([(v, weight) for v in vectors])
                if not word:
                    continue
            groups.append([(t, weight) for t in rule.words(word)])
    has_end = 1
    batch: list[tuple[Token, float]] = [] if rule.start is None else [(rule.start, 1.0)]
    batches = [batch]
    for group in groups:
        is_large = len(group) >= MAX_WORD_TOKENS
        while group:
            if len(group) + len(batch) > rule.max_length - has_end:
                room = rule.max_length - len(batch) - has_end
                if is_large:
                    batch.extend(group[:room])
                    batch.append((rule.end, 1.0))
                    group = group[room:]
                else:
                    batch.append((rule.end, 1.0))
                    if rule.pad_to_max:
                        batch.extend([(rule.pad, 1.0)] * room)
                batch = [] if rule.start is None else [(rule.start, 1.0)]
                batches.append(batch)
            else:
                batch.extend(group)
                group = []
    batch.append((rule.end, 1.0))
    if rule.pad_to_max and len(batch) < rule.max_length:
        batch.extend([(rule.pad, 1.0)] * (rule.max_length - len(batch)))
    if rule.min_length is not None and len(batch) < rule.min_length:
        batch.extend([(rule.pad, 1.0)] * (rule.min_length - len(batch)))
    return batches


def _empty_tokens(rule: TokenRule, length: int) -> list[int]:
    out = ([] if rule.start is None else [rule.start]) + [rule.end]
    return out + [rule.pad] * (length - len(out))


# Embedding vectors to write over the token embeddings: (row, position, vector).
Spots = list[tuple[int, int, torch.Tensor]]
Runner = Callable[[torch.Tensor, Spots], tuple[torch.Tensor, torch.Tensor | None]]
# Stands in the token ids where an embedding vector goes (never an end token, so pooling ignores it).
PLACEHOLDER = 0


def encode_pairs(pairs: Pairs, rule: TokenRule, run: Runner) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encode windows with emphasis: hidden states [1, sum of window lengths, D] and first pooled [1, P]."""
    rows = [[t if isinstance(t, int) else PLACEHOLDER for t, _ in win] for win in pairs]
    spots = [
        (r, p, t)
        for r, win in enumerate(pairs)
        for p, (t, _) in enumerate(win)
        if isinstance(t, torch.Tensor)
    ]
    longest = max((len(r) for r in rows), default=0)
    weighted = any(w != 1.0 for win in pairs for _, w in win)
    if weighted or not rows:
        rows.append(_empty_tokens(rule, longest))
    hidden, pooled = run(torch.tensor(rows, dtype=torch.long), spots)
    first_pooled = None if pooled is None else pooled[0:1]
    if not pairs:
        return hidden[-1:], first_pooled
    parts = []
    for k, win in enumerate(pairs):
        z = hidden[k].clone()
        if weighted:
            w = torch.tensor([wt for _, wt in win], dtype=z.dtype).unsqueeze(-1)
            z = torch.where(w != 1.0, (z - hidden[-1]) * w + hidden[-1], z)
        parts.append(z)
    return torch.cat(parts, dim=0).unsqueeze(0), first_pooled


def clip_runner(model: torch.nn.Module, spec: TextEncoderSpec, layer: int | None) -> Runner:
    """Run a CLIP encoder on token rows, returning the chosen layer and its pooled output (float32).

    Layer choice follows ComfyUI: the encoder's default (None = last layer, final norm included) or
    CLIPSetLastLayer's value; an inner layer gets the final norm only when the encoder's rules say so.
    """
    wanted = spec.default_layer if layer is None else layer

    def run(ids: torch.Tensor, spots: Spots) -> tuple[torch.Tensor, torch.Tensor]:
        ids = ids.to(next(model.parameters()).device)
        with torch.inference_mode(), vectors_written(model, spots):
            out = model(input_ids=ids, output_hidden_states=True)
        pooled = out.text_embeds if spec.with_projection else out.pooler_output
        n_layers = len(out.hidden_states) - 1
        if wanted == 0 or abs(wanted) > n_layers or (wanted == -1 and spec.layer_norm_hidden_state):
            return out.last_hidden_state.float().cpu(), pooled.float().cpu()
        hidden = out.hidden_states[n_layers + wanted + 1]
        if spec.layer_norm_hidden_state:
            owner = model if hasattr(model, "final_layer_norm") else model.get_submodule("text_model")
            with torch.inference_mode():
                hidden = owner.get_submodule("final_layer_norm")(hidden)
        return hidden.float().cpu(), pooled.float().cpu()

    return run


def flow_specs() -> dict[str, dict[str, TextEncoderSpec]]:
    """Per family, the CLIP encoders' rules: FLUX's CLIP-L uses the last layer, SD3's the penultimate."""
    sdxl = {s.name: s for s in families.family_spec("sdxl").text_encoders}
    flux_l = replace(sdxl["clip_l"], default_layer=0, layer_norm_hidden_state=True)
    return {"flux": {"clip_l": flux_l}, "sd3": {"clip_l": sdxl["clip_l"], "clip_g": sdxl["clip_g"]}}


class FlowTextStack(ClipStack):
    """The text encoders of a FLUX or SD3 CLIP (any of clip_l, clip_g, t5xxl; SD3 may miss some)."""


def _run_encoder(stack: FlowTextStack, name: str, layer: int | None) -> Runner:
    model = stack.encoders[name]
    if name == "t5xxl":
        return lambda ids, spots: (run_t5(model, ids, layer, spots), None)  # type: ignore[arg-type]
    spec = next(s for s in stack.specs if s.name == name)
    return clip_runner(model, spec, layer)


def _rules(family: str) -> dict[str, TokenRule]:
    t5 = T5_FLUX_RULE if family == "flux" else T5_SD3_RULE
    return {"clip_l": CLIP_L_RULE, "clip_g": CLIP_G_RULE, "t5xxl": t5}


Lookups = Mapping[str, EmbeddingLookup]
_DEFAULT_WIDTHS = {"clip_l": 768, "clip_g": 1280, "t5xxl": 4096}


def embedding_lookups(stack: FlowTextStack, library: EmbeddingLibrary | None) -> Lookups:
    """Per encoder kind, the embedding lookup (file key = the kind; width = the loaded encoder's, or
    the published width for a kind this SD3 CLIP lacks, whose tokens are made all the same)."""
    if library is None:
        return {}
    out = {}
    for kind, width in _DEFAULT_WIDTHS.items():
        if kind in stack.encoders:
            table: torch.nn.Embedding = stack.encoders[kind].get_input_embeddings()  # type: ignore[operator]
            width = table.embedding_dim
        out[kind] = library.lookup(kind, width)
    return out


def tokenize_all(family: str, text: str, lookups: Lookups | None = None) -> dict[str, Pairs]:
    """The family's tokens of one prompt for every encoder kind (missing encoders included, as ComfyUI)."""
    names = ("clip_l", "t5xxl") if family == "flux" else ("clip_l", "clip_g", "t5xxl")
    rules, found = _rules(family), lookups or {}
    return {n: tokenize(text, rules[n], found.get(n)) for n in names}


def encode_tokens(stack: FlowTextStack, tokens: dict[str, Pairs], layer: int | None) -> CondEntry:
    """Conditioning from per-encoder tokens (ComfyUI's FLUX / SD3 encode_token_weights)."""
    rules = _rules(stack.family)

    def enc(name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        return encode_pairs(tokens[name], rules[name], _run_encoder(stack, name, layer))

    if stack.family == "flux":
        t5_out, _ = enc("t5xxl")
        _, l_pooled = enc("clip_l")
        return CondEntry(embeds=t5_out, pooled=l_pooled)
    return _encode_sd3(stack, tokens, enc)


def _t5_width(stack: FlowTextStack) -> int:
    """The token width SD3 pads CLIP features to: 4096 (T5-XXL's; a tiny test T5's own width)."""
    if "t5xxl" not in stack.encoders:
        return 4096
    shared: torch.nn.Embedding = stack.encoders["t5xxl"].get_submodule("shared")  # type: ignore[assignment]
    return shared.embedding_dim


def _encode_sd3(stack: FlowTextStack, tokens: dict[str, Pairs], enc) -> CondEntry:
    present = set(stack.encoders)
    lg_out = pooled = out = None
    if tokens["clip_l"] or tokens["clip_g"]:
        l_pooled = torch.zeros(1, 768)
        if "clip_l" in present:
            lg_out, l_pooled = enc("clip_l")
        g_pooled = torch.zeros(1, 1280)
        if "clip_g" in present:
            g_out, g_pooled = enc("clip_g")
            if lg_out is not None:
                cut = min(lg_out.shape[1], g_out.shape[1])
                lg_out = torch.cat([lg_out[:, :cut], g_out[:, :cut]], dim=-1)
            else:
                lg_out = torch.nn.functional.pad(g_out, (768, 0))
        if lg_out is not None:
            lg_out = torch.nn.functional.pad(lg_out, (0, _t5_width(stack) - lg_out.shape[-1]))
            out = lg_out
        pooled = torch.cat([l_pooled, g_pooled], dim=-1)
    if "t5xxl" in present:
        t5_out, _ = enc("t5xxl")
        out = t5_out if lg_out is None else torch.cat([lg_out, t5_out], dim=-2)
    if out is None:
        out = torch.zeros(1, 77, _t5_width(stack))
    if pooled is None:
        pooled = torch.zeros(1, 768 + 1280)
    return CondEntry(embeds=out, pooled=pooled)


def encode_flow_prompt(
    stack: FlowTextStack, text: str, layer: int | None, embeddings: EmbeddingLibrary | None = None
) -> CondEntry:
    """CLIPTextEncode on a FLUX/SD3 CLIP: the same prompt for every encoder."""
    return encode_tokens(stack, tokenize_all(stack.family, text, embedding_lookups(stack, embeddings)), layer)


def sd3_tokens(
    clip_l: str, clip_g: str, t5xxl: str, empty_padding: bool, lookups: Lookups | None = None
) -> dict[str, Pairs]:
    """CLIPTextEncodeSD3's tokens: empty prompts give no tokens unless `empty_padding`, and the CLIP-L
    and CLIP-G windows are evened out with empty-prompt windows."""
    found = lookups or {}
    tokens = {
        "clip_g": tokenize(clip_g, CLIP_G_RULE, found.get("clip_g")),
        "clip_l": tokenize(clip_l, CLIP_L_RULE, found.get("clip_l")),
        "t5xxl": tokenize(t5xxl, T5_SD3_RULE, found.get("t5xxl")),
    }
    for name, text in (("clip_g", clip_g), ("clip_l", clip_l), ("t5xxl", t5xxl)):
        if not text and not empty_padding:
            tokens[name] = []
    if len(tokens["clip_l"]) != len(tokens["clip_g"]):
        while len(tokens["clip_l"]) < len(tokens["clip_g"]):
            tokens["clip_l"] += tokenize("", CLIP_L_RULE)
        while len(tokens["clip_l"]) > len(tokens["clip_g"]):
            tokens["clip_g"] += tokenize("", CLIP_G_RULE)
    return tokens
