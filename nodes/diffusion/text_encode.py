"""Prompt -> CLIP conditioning with ComfyUI's semantics (emphasis, 77-token windows, clip skip, SDXL).

Facts followed (ComfyUI sd1_clip.py / sdxl_clip.py behaviour, reimplemented):
  * `(text)` multiplies the weight by 1.1, `(text:w)` sets it to w, nesting composes; `\\(` and `\\)`
    are literal parentheses; square brackets carry no meaning.
  * Text is split on spaces and each word tokenized alone; words are kept whole inside a 77-token
    window (start + 75 + end, padded) unless they are 8 tokens or longer.
  * A weighted token's embedding becomes (z - z_empty) * w + z_empty, z_empty being the encoding of an
    empty prompt at the same position; windows are concatenated along the sequence.
  * The pooled output is the first window's; SDXL concatenates CLIP-L and bigG features (768 + 1280).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch

from engine import UserFacingError
from nodes.diffusion.embeddings import PREFIX as EMBEDDING_PREFIX
from nodes.diffusion.embeddings import EmbeddingLibrary, EmbeddingLookup, EmbeddingNotFoundError
from nodes.diffusion.families import TextEncoderSpec
from nodes.diffusion.tokenizer import END_TOKEN, START_TOKEN, encode_words
from nodes.types import CondEntry

log = logging.getLogger(__name__)

WINDOW = 77
MAX_WORD_TOKENS = 8
TokenWeights = list[tuple["int | torch.Tensor", float]]
# Stands in the token ids where an embedding vector goes; any id but the end token (pooling finds it).
EMBEDDING_PLACEHOLDER = 0


def _escape(text: str) -> str:
    return text.replace("\\)", "\0\1").replace("\\(", "\0\2")


def _unescape(text: str) -> str:
    return text.replace("\0\1", ")").replace("\0\2", "(")


def _split_parentheses(text: str) -> list[str]:
    """Top-level chunks: plain text runs and balanced `( ... )` groups (an unmatched ')' stays text)."""
    chunks, current, depth = [], "", 0
    for ch in text:
        if ch == "(":
            if depth == 0:
                if current:
                    chunks.append(current)
                current = "("
            else:
                current += ch
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                chunks.append(current + ")")
                current = ""
            else:
                current += ch
        else:
            current += ch
    if current:
        chunks.append(current)
    return chunks


def parse_weights(text: str, weight: float = 1.0) -> list[tuple[str, float]]:
    """(segment, weight) pairs of an (already escaped) prompt under the emphasis rules."""
    out: list[tuple[str, float]] = []
    for chunk in _split_parentheses(text):
        if len(chunk) >= 2 and chunk[0] == "(" and chunk[-1] == ")":
            inner, inner_weight = chunk[1:-1], weight * 1.1
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    inner_weight = float(inner[colon + 1 :])
                    inner = inner[:colon]
                except ValueError:
                    pass  # "(a:b)" with a non-number after ':' is plain emphasised text, as in ComfyUI
            out.extend(parse_weights(inner, inner_weight))
        else:
            out.append((chunk, weight))
    return out


def _embedding_groups(word: str, weight: float, lookup: EmbeddingLookup | None) -> list[TokenWeights]:
    """An `embedding:name` word as its vectors (one position each), plus any trailing text after commas."""
    name = word[len(EMBEDDING_PREFIX) :]
    vectors = lookup(name) if lookup is not None else None
    leftover = ""
    stripped = name.strip(",")
    if vectors is None and lookup is not None and stripped != name:
        vectors, leftover = lookup(stripped), name[len(stripped) :]
    if vectors is None:
        raise EmbeddingNotFoundError(f"embedding {name!r} not found in models/embeddings")
    groups: list[TokenWeights] = [[(v, weight) for v in vectors]]
    if leftover:
        groups.append([(t, weight) for t in encode_words(leftover)])
    return groups


def word_groups(text: str, lookup: EmbeddingLookup | None = None) -> list[TokenWeights]:
    """Tokens with weights, one group per space-separated word; `embedding:` words become their vectors."""
    groups: list[TokenWeights] = []
    for segment, weight in parse_weights(_escape(text)):
        for word in _unescape(segment).replace("\n", " ").split(" "):
            if not word:
                continue
            if word.startswith(EMBEDDING_PREFIX) and len(word) > len(EMBEDDING_PREFIX):
                groups.extend(_embedding_groups(word, weight, lookup))
                continue
            groups.append([(t, weight) for t in encode_words(word)])
    return groups


def windows(text: str, pad_token: int, lookup: EmbeddingLookup | None = None) -> list[TokenWeights]:
    """The prompt as 77-token windows (start, tokens, end, padding), each a list of (token, weight).

    A token is an id, or an embedding vector [D] standing in one position.
    """
    batches: list[TokenWeights] = [[(START_TOKEN, 1.0)]]
    for group in word_groups(text, lookup):
        is_large = len(group) >= MAX_WORD_TOKENS
        while group:
            batch = batches[-1]
            if len(group) + len(batch) > WINDOW - 1:
                room = WINDOW - len(batch) - 1
                if is_large:
                    batch.extend(group[:room])
                    group = group[room:]
                    batch.append((END_TOKEN, 1.0))
                else:
                    batch.append((END_TOKEN, 1.0))
                    batch.extend([(pad_token, 1.0)] * room)
                batches.append([(START_TOKEN, 1.0)])
            else:
                batch.extend(group)
                group = []
    last = batches[-1]
    last.append((END_TOKEN, 1.0))
    last.extend([(pad_token, 1.0)] * (WINDOW - len(last)))
    return batches


def empty_window(pad_token: int) -> TokenWeights:
    """The tokens of an empty prompt: start, end, padding."""
    ids = [START_TOKEN, END_TOKEN] + [pad_token] * (WINDOW - 2)
    return [(t, 1.0) for t in ids]


class ClipStack(torch.nn.Module):
    """One or two CLIP text encoders of a family, with their per-encoder rules (pad token, layer)."""

    def __init__(self, family: str, encoders: dict[str, torch.nn.Module], specs: Sequence[TextEncoderSpec]):
        super().__init__()
        self.family = family
        self.encoders: torch.nn.ModuleDict = torch.nn.ModuleDict(encoders)
        self.specs = tuple(specs)


class ClipLayerError(UserFacingError):
    """A CLIP layer choice the loaded text encoder cannot provide."""

    code = "clip_layer_unavailable"


def run_encoder(
    model: torch.nn.Module, spec: TextEncoderSpec, ids: torch.Tensor, layer: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states of the chosen layer [N, 77, D] and the pooled output [N, P] for token ids [N, 77].

    Negative layer numbers count from the encoder's original depth: `missing_top_layers` (diffusers'
    SD2 folders lack the last block) is added back before counting, as ComfyUI counts.
    """
    wanted = spec.default_layer if layer is None else layer
    out = model(input_ids=ids, output_hidden_states=True)
    n_layers = len(out.hidden_states) - 1
    full = n_layers + spec.missing_top_layers
    pooled = out.text_embeds if spec.with_projection else out.pooler_output
    idx: int | None = wanted
    if wanted >= 0 or abs(wanted) > full:
        idx = -1 if full != n_layers else None  # out-of-range skips mean "last layer", as in ComfyUI
    if idx is None:
        return out.last_hidden_state, pooled
    block = full + idx  # 0-based block whose output is wanted
    if block >= n_layers:
        raise ClipLayerError(
            f"this text encoder lacks its last {full - n_layers} block(s) (diffusers drops them when "
            f"converting SD2), so CLIP layer {idx} is unavailable; use {n_layers - full - 1} or lower"
        )
    hidden = out.hidden_states[block + 1]
    if spec.layer_norm_hidden_state:
        # transformers 5 flattened CLIPTextModel; CLIPTextModelWithProjection still nests text_model.
        owner = model if hasattr(model, "final_layer_norm") else model.get_submodule("text_model")
        hidden = owner.get_submodule("final_layer_norm")(hidden)
    return hidden, pooled


def encode_with(
    model: torch.nn.Module,
    spec: TextEncoderSpec,
    text: str,
    layer: int | None,
    device: torch.device,
    dtype: torch.dtype,
    embeddings: EmbeddingLibrary | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One encoder: embeddings [1, 77*k, D] with emphasis applied, and the first window's pooled [1, P]."""
    wins = windows(text, spec.pad_token, encoder_lookup(model, spec, embeddings))
    return encode_windows(model, spec, wins, layer, device)


def encoder_lookup(
    model: torch.nn.Module, spec: TextEncoderSpec, embeddings: EmbeddingLibrary | None
) -> EmbeddingLookup | None:
    """The embedding lookup for one text encoder (its key and token width), or None."""
    if embeddings is None:
        return None
    token_embedding: torch.nn.Embedding = model.get_input_embeddings()  # type: ignore[operator]
    width = token_embedding.embedding_dim
    return embeddings.lookup(spec.name, width)


def encode_lookup_for(
    stack: Any, spec: TextEncoderSpec, embeddings: EmbeddingLibrary | None
) -> EmbeddingLookup | None:
    """The embedding lookup for one encoder of a ClipStack."""
    return encoder_lookup(stack.encoders[spec.name], spec, embeddings)


@contextmanager
def vectors_written(model: torch.nn.Module, spots: list[tuple[int, int, torch.Tensor]]) -> Iterator[None]:
    """Token-embedding output with each (row, position, vector) spot written over it while encoding."""
    if not spots:
        yield
        return

    def replace_vectors(_module: torch.nn.Module, _args: Any, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        for r, p, vec in spots:
            out[r, p] = vec.to(out.device, out.dtype)
        return out

    token_embedding: torch.nn.Module = model.get_input_embeddings()  # type: ignore[operator]
    handle = token_embedding.register_forward_hook(replace_vectors)
    try:
        yield
    finally:
        handle.remove()


def _injected(model: torch.nn.Module, rows: list[TokenWeights]) -> AbstractContextManager[None]:
    """The embedding vectors of `rows` (tensor tokens) written at their positions while encoding."""
    spots = [
        (r, p, tok)
        for r, row in enumerate(rows)
        for p, (tok, _) in enumerate(row)
        if isinstance(tok, torch.Tensor)
    ]
    return vectors_written(model, spots)


def encode_windows(
    model: torch.nn.Module,
    spec: TextEncoderSpec,
    wins: list[TokenWeights],
    layer: int | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode tokenized windows: embeddings [1, 77*k, D] with emphasis, first window's pooled [1, P]."""
    pad = spec.pad_token
    weighted = any(w != 1.0 for win in wins for _, w in win)
    rows = [[t if isinstance(t, int) else EMBEDDING_PLACEHOLDER for t, _ in win] for win in wins]
    if weighted:
        rows.append([START_TOKEN, END_TOKEN] + [pad] * (WINDOW - 2))
    ids = torch.tensor(rows, dtype=torch.long, device=device)
    with torch.inference_mode(), _injected(model, wins):
        hidden, pooled = run_encoder(model, spec, ids, layer)
    hidden, pooled = hidden.float(), pooled.float()
    parts = []
    for k, win in enumerate(wins):
        z = hidden[k].clone()
        if weighted:
            z_empty = hidden[-1]
            w = torch.tensor([wt for _, wt in win], device=z.device).unsqueeze(-1)
            z = torch.where(w != 1.0, (z - z_empty) * w + z_empty, z)
        parts.append(z)
    return torch.cat(parts, dim=0).unsqueeze(0).cpu(), pooled[0:1].cpu()


def pad_windows(wins: list[TokenWeights], count: int, pad_token: int) -> list[TokenWeights]:
    """`wins` followed by empty-prompt windows up to `count` windows (ComfyUI's SDXL node rule)."""
    return wins + [empty_window(pad_token) for _ in range(count - len(wins))]


def encode_prompt(
    stack: Any,
    text: str,
    layer: int | None,
    device: torch.device,
    dtype: torch.dtype,
    embeddings: EmbeddingLibrary | None = None,
) -> CondEntry:
    """A family's conditioning for one prompt (SDXL: CLIP-L and bigG features side by side)."""
    results = [
        encode_with(stack.encoders[spec.name], spec, text, layer, device, dtype, embeddings)
        for spec in stack.specs
    ]
    if len(results) == 1:
        embeds, pooled = results[0]
        return CondEntry(embeds=embeds, pooled=pooled)
    (l_embeds, _), (g_embeds, g_pooled) = results
    cut = min(l_embeds.shape[1], g_embeds.shape[1])
    return CondEntry(embeds=torch.cat([l_embeds[:, :cut], g_embeds[:, :cut]], dim=-1), pooled=g_pooled)
