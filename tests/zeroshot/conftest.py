"""Tiny random CLIP models (open_clip and Hugging Face), built and saved by the tests themselves."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# ViT with width 64, 2 layers, 32 px images in 8 px patches; text width 64, 2 layers, CLIP's 77-token
# context and its default BPE vocabulary (so the real tokenizer is exercised).
TINY_OPEN_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def build_tiny_open_clip(seed: int = 0) -> torch.nn.Module:
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(**json.loads(json.dumps(TINY_OPEN_CLIP_CFG))).eval()
    with torch.no_grad():  # random init gives near-zero cosines; spread them so softmax is not flat
        model.logit_scale.fill_(float(np.log(50.0)))
    return model


def save_open_clip_dir(model: torch.nn.Module, directory: Path) -> Path:
    """open_clip's local-dir layout: open_clip_config.json + open_clip_model.safetensors."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_OPEN_CLIP_CFG, "preprocess_cfg": {}}))
    save_file(model.state_dict(), str(directory / "open_clip_model.safetensors"))
    return directory


def build_hf_clip_tokenizer():
    """A transformers CLIPTokenizer with open_clip's own BPE vocabulary (no download needed)."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    st = SimpleTokenizer()
    specials = {49406: "<|startoftext|>", 49407: "<|endoftext|>"}
    vocab = {specials.get(v, k): v for k, v in st.encoder.items()}
    merges = [tuple(m) for m, _ in sorted(st.bpe_ranks.items(), key=lambda kv: kv[1])]
    return CLIPTokenizer(vocab=vocab, merges=merges)


def build_tiny_hf_clip(seed: int = 0):
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=49406,
                         eos_token_id=49407, pad_token_id=49407),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=32,
        logit_scale_init_value=float(np.log(50.0)),
    )
    torch.manual_seed(seed)
    return CLIPModel(cfg).eval()


@pytest.fixture(scope="session")
def tiny_open_clip_dir(tmp_path_factory) -> Path:
    return save_open_clip_dir(build_tiny_open_clip(), tmp_path_factory.mktemp("oc") / "tiny-clip")


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    from transformers import CLIPImageProcessor

    directory = tmp_path_factory.mktemp("hf") / "tiny-hf-clip"
    build_tiny_hf_clip().save_pretrained(directory)
    build_hf_clip_tokenizer().save_pretrained(directory)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


def random_images(n: int, seed: int = 0, size=(48, 40)) -> list[Image.Image]:
    rng = np.random.RandomState(seed)
    return [Image.fromarray(rng.randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture
def images() -> list[Image.Image]:
    return random_images(4)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own label-index cache folder, never ~/.cache."""
    monkeypatch.setenv("SNAPSIGHT_CACHE", str(tmp_path / "snapsight-cache"))
