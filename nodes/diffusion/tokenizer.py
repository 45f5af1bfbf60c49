"""The CLIP BPE tokenizer, built offline from the vocabulary shipped in nodes/diffusion/vocab/.

The vocabulary file is OpenAI's `bpe_simple_vocab_16e6.txt.gz` (MIT, see vocab/LICENSE-CLIP.txt). Token
ids follow CLIP's rules: 256 byte symbols, the same with the `</w>` word-end suffix, the first
48,894 merges, then <|startoftext|> 49406 and <|endoftext|> 49407 (49,408 in all). Text is NFC
normalised, whitespace collapsed and lower-cased, split with CLIP's regex, then byte-level BPE'd.
"""

from __future__ import annotations

import gzip
from functools import cache
from importlib import resources

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

START_TOKEN = 49406
END_TOKEN = 49407
_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


@cache
def clip_tokenizer() -> Tokenizer:
    """A `tokenizers.Tokenizer` equal to CLIP's reference BPE tokenizer (no special tokens added)."""
    raw = resources.files("nodes.diffusion").joinpath("vocab", "bpe_simple_vocab_16e6.txt.gz").read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    merges = [(first, second) for first, second in (line.split() for line in lines[1 : 49152 - 256 - 2 + 1])]
    symbols = list(_bytes_to_unicode().values())
    symbols += [s + "</w>" for s in symbols]
    symbols += ["".join(m) for m in merges]
    symbols += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {s: i for i, s in enumerate(symbols)}
    bpe = models.BPE(
        vocab=vocab,
        merges=merges,
        unk_token="<|endoftext|>",
        end_of_word_suffix="</w>",
        continuing_subword_prefix="",
        fuse_unk=False,
    )
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def encode_words(text: str) -> list[int]:
    """Token ids of `text` without start/end tokens."""
    return clip_tokenizer().encode(text.strip(), add_special_tokens=False).ids


def encode(text: str) -> list[int]:
    """Token ids with CLIP's start and end tokens, unpadded (the reference tokenizer's output)."""
    return [START_TOKEN, *encode_words(text), END_TOKEN]
