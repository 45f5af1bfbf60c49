"""Textual-inversion embeddings in prompts, on tiny checkpoints.

An embedding made of the token-embedding rows of some words must encode exactly like those words: that
checks placement, position embeddings, pooling and emphasis without any reference data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine import Environment, ModelPaths
from engine.validation import validate_prompt
from nodes.diffusion import loader
from nodes.diffusion.embeddings import EmbeddingFormatError, EmbeddingLibrary
from nodes.diffusion.text_encode import EmbeddingNotFoundError, encode_prompt
from nodes.diffusion.tokenizer import encode_words

CPU = torch.device("cpu")


def _stack(store, path):
    _, recipes = loader.load_checkpoint_into(store, path)
    return loader.load_component_into(store, recipes["clip"])


def _rows(stack, encoder: str, words: str) -> torch.Tensor:
    """The encoder's own token-embedding rows for some words (an embedding equal to those words)."""
    table = stack.encoders[encoder].get_input_embeddings().weight
    return table[torch.tensor(encode_words(words))].detach().clone().float()


def _encode(stack, text: str, folder: Path | None = None) -> torch.Tensor:
    library = EmbeddingLibrary(folder) if folder is not None else None
    return encode_prompt(stack, text, None, CPU, torch.float32, library).embeds


@pytest.fixture
def sd15(tiny_sd15_path, model_store):
    return _stack(model_store, tiny_sd15_path)


def test_embedding_encodes_like_the_words_it_was_made_from(sd15, tmp_path):
    save_file({"emb_params": _rows(sd15, "clip_l", "red dog")}, str(tmp_path / "reddog.safetensors"))
    words = _encode(sd15, "a red dog on grass")
    assert torch.allclose(_encode(sd15, "a embedding:reddog on grass", tmp_path), words, atol=1e-6)
    assert torch.allclose(
        _encode(sd15, "a embedding:reddog.safetensors on grass", tmp_path), words, atol=1e-6
    )
    assert not torch.allclose(_encode(sd15, "a on grass"), words)


def test_embedding_takes_weights_and_a_trailing_comma(sd15, tmp_path):
    save_file({"clip_l": _rows(sd15, "clip_l", "red dog")}, str(tmp_path / "reddog.safetensors"))
    weighted = _encode(sd15, "a (red dog:1.3) on grass")
    assert torch.allclose(_encode(sd15, "a (embedding:reddog:1.3) on grass", tmp_path), weighted, atol=1e-6)
    comma = _encode(sd15, "a red dog, on grass")
    assert torch.allclose(_encode(sd15, "a embedding:reddog, on grass", tmp_path), comma, atol=1e-6)


def test_embedding_found_in_a_subfolder_and_pooled_follows_it(sd15, tmp_path):
    (tmp_path / "styles").mkdir()
    save_file(
        {"emb_params": _rows(sd15, "clip_l", "red dog")}, str(tmp_path / "styles" / "reddog.safetensors")
    )
    library = EmbeddingLibrary(tmp_path)
    a = encode_prompt(sd15, "embedding:reddog", None, CPU, torch.float32, library)
    b = encode_prompt(sd15, "red dog", None, CPU, torch.float32)
    assert torch.allclose(a.pooled, b.pooled, atol=1e-6)


def test_sdxl_embedding_uses_the_clip_l_and_clip_g_keys(tiny_sdxl_path, model_store, tmp_path):
    stack = _stack(model_store, tiny_sdxl_path)
    vectors = {"clip_l": _rows(stack, "clip_l", "red dog"), "clip_g": _rows(stack, "clip_g", "red dog")}
    save_file(vectors, str(tmp_path / "reddog.safetensors"))
    words = encode_prompt(stack, "a red dog", None, CPU, torch.float32)
    emb = encode_prompt(stack, "a embedding:reddog", None, CPU, torch.float32, EmbeddingLibrary(tmp_path))
    assert torch.allclose(emb.embeds, words.embeds, atol=1e-6)
    assert torch.allclose(emb.pooled, words.pooled, atol=1e-6)


def test_missing_embedding_fails_when_encoding(sd15, tmp_path):
    with pytest.raises(EmbeddingNotFoundError, match="nothere"):
        _encode(sd15, "a embedding:nothere cat", tmp_path)


def test_embedding_of_another_width_is_refused(sd15, tmp_path):
    save_file({"emb_params": torch.zeros(2, 7)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(EmbeddingFormatError, match="7-wide"):
        _encode(sd15, "embedding:odd", tmp_path)


def test_pickle_embedding_needs_the_opt_in(sd15, tmp_path, monkeypatch):
    rows = _rows(sd15, "clip_l", "red dog")
    torch.save({"string_to_param": {"*": rows}, "name": "reddog"}, tmp_path / "reddog.pt")
    monkeypatch.delenv("DIFFGRAPH_ALLOW_PICKLE", raising=False)
    with pytest.raises(EmbeddingFormatError, match="pickle"):
        _encode(sd15, "embedding:reddog", tmp_path)
    monkeypatch.setenv("DIFFGRAPH_ALLOW_PICKLE", "1")
    assert torch.allclose(_encode(sd15, "embedding:reddog", tmp_path), _encode(sd15, "red dog"), atol=1e-6)


def test_missing_embedding_is_a_validation_error_naming_it(tiny_models_dir, tmp_path, model_store):
    from nodes.pack import build_registry

    registry = build_registry(ModelPaths(tiny_models_dir), tmp_path)
    env = Environment(
        tmp_path, tmp_path, tmp_path, models=model_store, model_paths=ModelPaths(tiny_models_dir)
    )
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
        "2": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a (embedding:ghost_style:1.2) cat", "clip": ["1", 1]},
        },
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": 0,
                "steps": 1,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "x"}},
    }
    checked = validate_prompt(prompt, registry, env=env)
    assert not checked.ok
    text = json.dumps(checked.node_errors)
    assert "ghost_style" in text and "custom_validation_failed" in text


def test_present_embedding_validates_and_editing_it_changes_the_cache_key(tiny_models_dir, tmp_path):
    from nodes.defs.text import CLIPTextEncode

    models = tmp_path / "models"
    (models / "embeddings").mkdir(parents=True)
    env = Environment(tmp_path, tmp_path, tmp_path, model_paths=ModelPaths(models))
    values = {"text": "a (embedding:style.safetensors:1.2) cat"}
    assert CLIPTextEncode.validate_inputs(values, env) is not None
    save_file({"emb_params": torch.zeros(1, 64)}, str(models / "embeddings" / "style.safetensors"))
    assert CLIPTextEncode.validate_inputs(values, env) is None
    first = CLIPTextEncode.fingerprint(values, env)
    save_file({"emb_params": torch.ones(2, 64)}, str(models / "embeddings" / "style.safetensors"))
    assert first is not None and CLIPTextEncode.fingerprint(values, env) != first
    assert CLIPTextEncode.fingerprint({"text": "a cat"}, env) is None
