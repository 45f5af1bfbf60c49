"""Our node descriptions, tooltips and docs are written here: none repeats a known ComfyUI sentence.

The sentences below are tooltips and descriptions of ComfyUI 0.3.64's core nodes (KSampler, the
loaders, the latent, VAE and save nodes) that earlier versions of this project carried word for word.
Interface facts (node ids, input names, types, defaults, bounds) match ComfyUI on purpose; the prose
that explains them may not.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine import ModelPaths

ROOT = Path(__file__).resolve().parent.parent

COMFYUI_SENTENCES = (
    "The random seed used for creating the noise.",
    "The number of steps used in the denoising process.",
    "The Classifier-Free Guidance scale balances creativity and adherence to the prompt.",
    "The algorithm used when sampling, this can affect the quality, speed, and style of the generated output.",
    "The scheduler controls how noise is gradually removed to form the image.",
    "The conditioning describing the attributes you want to include in the image.",
    "The conditioning describing the attributes you want to exclude from the image.",
    "The amount of denoising applied, lower values will maintain the structure of the initial image",
    "Uses the provided model, positive and negative conditioning to denoise the latent image.",
    "The model used for denoising the input latent.",
    "The latent image to denoise.",
    "Saves the input images to your ComfyUI output directory.",
    "The prefix for the file to save.",
    "This may include formatting information such as",
    "The images to save.",
    "The images to preview.",
    "Create a new batch of empty latent images to be denoised via sampling.",
    "The width of the latent images in pixels.",
    "The number of latent images in the batch.",
    "The empty latent image batch.",
    "Decodes latent images back into pixel space images.",
    "The latent to be decoded.",
    "The VAE model used for decoding the latent.",
    "The text to be encoded.",
    "The CLIP model used for encoding the text.",
    "Encodes a text prompt using a CLIP model into an embedding",
    "A conditioning containing the embedded text",
    "The name of the checkpoint (model) to load.",
    "The checkpoint (model) to load.",
    "The model used for denoising latents.",
    "The CLIP model used for encoding text prompts.",
    "The VAE model used for encoding and decoding images",
    "The diffusion model the LoRA will be applied to.",
    "The CLIP model the LoRA will be applied to.",
    "The name of the LoRA.",
    "How strongly to modify the diffusion model.",
    "How strongly to modify the CLIP model.",
    "Higher crf means lower quality with a smaller file size",
)


def _normal(text: str) -> str:
    """Lower case, words only, single spaces: a reworded sentence must differ in words, not punctuation."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _copied(text: str) -> list[str]:
    normal = _normal(text)
    return [sentence for sentence in COMFYUI_SENTENCES if _normal(sentence) in normal]


def _schema_texts(object_info: dict) -> list[tuple[str, str]]:
    """(where, text) for every node description, input tooltip and output tooltip."""
    texts = []
    for class_type, node in object_info.items():
        texts.append((f"{class_type} description", node.get("description") or ""))
        for section in node["input"].values():
            for name, entry in section.items():
                if len(entry) > 1 and isinstance(entry[1], dict):
                    texts.append((f"{class_type}.{name}", entry[1].get("tooltip") or ""))
        for index, tip in enumerate(node.get("output_tooltips") or []):
            texts.append((f"{class_type} output {index}", tip or ""))
    return texts


def test_own_words_matcher_finds_a_copied_sentence():
    assert _copied("Seed. THE random seed, used for creating the noise!")
    assert not _copied("Picks the starting noise; the same seed gives the same image anywhere.")


def test_own_words_node_schema_repeats_no_comfyui_tooltip(tmp_path):
    from nodes.pack import build_registry

    registry = build_registry(ModelPaths(tmp_path / "models"), tmp_path / "input")
    texts = _schema_texts(registry.object_info())
    assert len(texts) > 100, "the builtin pack should describe every node, input and output"
    copied = [f"{where}: {hits}" for where, text in texts if (hits := _copied(text))]
    assert not copied, "ComfyUI's wording in our schema:\n" + "\n".join(copied)


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("**/*.md") if ".git" not in p.parts)
)
def test_own_words_docs_repeat_no_comfyui_tooltip(path):
    copied = _copied((ROOT / path).read_text(encoding="utf-8"))
    assert not copied, f"{path} repeats ComfyUI's wording: {copied}"
