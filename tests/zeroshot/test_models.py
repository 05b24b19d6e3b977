import json
import shutil

import pytest
import torch

from snapsight.errors import SnapsightError
from snapsight.models.clip import load_clip
from snapsight.models.hf_clip import HFCLIPAdapter
from snapsight.models.text import encode_text_trimmed, token_lengths

from .conftest import TINY_OPEN_CLIP_CFG, random_images

PROMPTS = ["a photo of a cat.", "x", "Ein Foto einer Straßenbahn im Schnee", "猫の写真",
           "a " + "very " * 120 + "long prompt"]  # the last one is truncated at 77 tokens


def _check_bundle(bundle, kind):
    assert bundle.info["kind"] == kind
    assert bundle.info["fingerprint"]
    assert bundle.preprocess(random_images(1)[0]).shape == (3, 32, 32)
    assert bundle.preprocess_batch(random_images(2)).shape == (2, 3, 32, 32)
    assert bundle.tokenizer(["a cat", "a dog"]).shape == (2, 77)


def test_local_dir_with_and_without_prefix(tiny_open_clip_dir):
    a = load_clip(f"local-dir:{tiny_open_clip_dir}")
    b = load_clip(str(tiny_open_clip_dir))
    _check_bundle(a, "open_clip")
    assert a.info["fingerprint"] == b.info["fingerprint"]
    for (k, v), (k2, v2) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(v, v2)


def test_named_config_plus_local_weights_file(tiny_open_clip_dir, tmp_path):
    import open_clip

    config = tmp_path / "snapsight-tiny-test.json"
    config.write_text(json.dumps(TINY_OPEN_CLIP_CFG))
    weights = tiny_open_clip_dir / "open_clip_model.safetensors"
    via_file = load_clip(str(config), pretrained=str(weights))  # registers the config under its stem
    assert "snapsight-tiny-test" in open_clip.list_models()
    via_name = load_clip("snapsight-tiny-test", pretrained=str(weights))
    ref = load_clip(str(tiny_open_clip_dir))
    tokens = ref.tokenizer(["a cat"])
    with torch.no_grad():
        for bundle in (via_file, via_name):
            _check_bundle(bundle, "open_clip")
            assert torch.allclose(bundle.model.encode_text(tokens), ref.model.encode_text(tokens))
    with pytest.raises(SnapsightError, match="needs --pretrained"):
        load_clip("snapsight-tiny-test")
    with pytest.raises(SnapsightError, match="neither a pretrained tag"):
        load_clip("snapsight-tiny-test", pretrained="no-such-tag")


def test_weights_file_needs_an_architecture(tiny_open_clip_dir, tmp_path):
    # beside its open_clip_config.json, the weights file is enough
    bundle = load_clip(str(tiny_open_clip_dir / "open_clip_model.safetensors"))
    _check_bundle(bundle, "open_clip")
    lonely = tmp_path / "weights.safetensors"
    shutil.copy(tiny_open_clip_dir / "open_clip_model.safetensors", lonely)
    with pytest.raises(SnapsightError, match="--pretrained"):
        load_clip(str(lonely))


def test_bad_model_arguments(tmp_path):
    with pytest.raises(SnapsightError, match="not found"):
        load_clip(str(tmp_path / "missing" / "model.safetensors"))
    with pytest.raises(SnapsightError, match="neither an open_clip folder"):
        load_clip(str(tmp_path))
    with pytest.raises(SnapsightError, match="open_clip model name"):
        load_clip("NoSuchModel-B-99")


def test_hugging_face_clip_folder(tiny_hf_dir):
    from transformers import CLIPModel

    bundle = load_clip(str(tiny_hf_dir))
    _check_bundle(bundle, "hf")
    assert isinstance(bundle.model, HFCLIPAdapter)
    ref = CLIPModel.from_pretrained(tiny_hf_dir).eval()
    tokens = bundle.tokenizer(["a photo of a cat."])
    pixels = bundle.preprocess_batch(random_images(2))
    with torch.no_grad():
        assert torch.allclose(bundle.model.encode_text(tokens), ref.get_text_features(input_ids=tokens).pooler_output)
        assert torch.allclose(bundle.model.encode_image(pixels), ref.get_image_features(pixel_values=pixels).pooler_output)
    assert torch.allclose(bundle.model.logit_scale, ref.logit_scale)


def test_open_clip_trimmed_text_encoding_is_exact(tiny_open_clip_dir):
    bundle = load_clip(str(tiny_open_clip_dir))
    tokens = bundle.tokenizer(PROMPTS)
    lengths = token_lengths(bundle, tokens)
    assert lengths[1] == 3 and lengths[-1] == 77  # "x" is SOT x EOT; the long one fills the context
    with torch.no_grad():
        full = bundle.model.encode_text(tokens)
        short = tokens[:4]
        assert int(token_lengths(bundle, short).max()) < 20
        assert torch.allclose(encode_text_trimmed(bundle, short), full[:4], atol=1e-5)
        assert torch.allclose(encode_text_trimmed(bundle, tokens), full, atol=1e-5)


def test_hf_trimmed_text_encoding_is_exact(tiny_hf_dir):
    """Causal mask + EOS pooling: padding to the longest prompt (or trimming) equals padding to 77."""
    bundle = load_clip(str(tiny_hf_dir))
    hf = bundle.model.hf
    tok = bundle.tokenizer.tokenizer
    prompts = PROMPTS[:4]
    full = tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    longest = tok(prompts, padding=True, return_tensors="pt")  # what the transformers pipeline does
    assert longest["input_ids"].shape[1] < 20
    with torch.no_grad():
        ref = hf.get_text_features(**full).pooler_output
        assert torch.allclose(hf.get_text_features(**longest).pooler_output, ref, atol=1e-5)
        assert torch.allclose(encode_text_trimmed(bundle, full["input_ids"]), ref, atol=1e-5)


def _fake_hub_cache(cache, repo, source_dir):
    """The Hugging Face cache layout (models--org--name/snapshots/<rev>/...) for an already-downloaded repo."""
    rev = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / rev
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(rev)
    for f in source_dir.iterdir():
        shutil.copy(f, snap / f.name)


@pytest.fixture
def offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_offline_cached_hub_models_load(offline, tmp_path, tiny_open_clip_dir, tiny_hf_dir):
    _fake_hub_cache(tmp_path, "snapsight/tiny-open-clip", tiny_open_clip_dir)
    _fake_hub_cache(tmp_path, "snapsight/tiny-hf-clip", tiny_hf_dir)
    oc = load_clip("hf-hub:snapsight/tiny-open-clip", cache_dir=str(tmp_path))
    _check_bundle(oc, "open_clip")
    hf = load_clip("snapsight/tiny-hf-clip", cache_dir=str(tmp_path))
    _check_bundle(hf, "hf")


@pytest.mark.parametrize("model,pretrained,what", [
    ("ViT-B-32", "laion2b_s34b_b79k", "ViT-B-32 / laion2b_s34b_b79k"),
    ("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", None, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
    ("openai/clip-vit-base-patch32", None, "openai/clip-vit-base-patch32"),
])
def test_offline_missing_model_gives_one_sentence(offline, tmp_path, model, pretrained, what):
    with pytest.raises(SnapsightError) as err:
        load_clip(model, pretrained=pretrained, cache_dir=str(tmp_path))
    msg = str(err.value)
    assert what in msg and "not in the local cache" in msg and "\n" not in msg
    assert "download" in msg and "pass" in msg


def test_default_model_dir_is_used(monkeypatch, tiny_open_clip_dir):
    monkeypatch.setattr("snapsight.models.clip.default_model_dir", lambda: tiny_open_clip_dir)
    monkeypatch.setattr("snapsight.models.clip.DEFAULT_MODEL_NAME", "snapsight-default-test")
    for spec in (None, "clip:default"):
        bundle = load_clip(spec)
        assert bundle.info["name"] == "snapsight-default-test"
        assert bundle.info["source"] == str(tiny_open_clip_dir)


def test_align_run_and_parsed_specs(tiny_open_clip_dir, tmp_path):
    """An align run folder loads its model/; an already parsed ModelSpec is taken as it is; an encoder spec is
    refused with one sentence."""
    from snapsight.artifacts.spec import parse_model_spec

    run = tmp_path / "align-run"
    shutil.copytree(tiny_open_clip_dir, run / "model")
    via_run = load_clip(str(run))
    assert via_run.info["source"] == str(run / "model")
    assert via_run.info["fingerprint"] == load_clip(parse_model_spec(f"local-dir:{run / 'model'}")).info["fingerprint"]
    with pytest.raises(SnapsightError, match="not a CLIP model"):
        load_clip(parse_model_spec("random:small_cnn", role="encoder"))


def test_trimmed_encoding_for_custom_text_clip_and_fallbacks():
    """open_clip's CustomTextCLIP (separate TextTransformer) is trimmed too; a tower without a causal
    mask is encoded at full length (trimming would not be exact there)."""
    from open_clip.model import CustomTextCLIP
    from open_clip.tokenizer import SimpleTokenizer

    from snapsight.models.hub import LoadedClip
    from snapsight.models.text import _open_clip_text_parts

    torch.manual_seed(0)
    model = CustomTextCLIP(**json.loads(json.dumps(TINY_OPEN_CLIP_CFG))).eval()
    bundle = LoadedClip(model=model, preprocess=None, tokenizer=SimpleTokenizer())
    tokens = bundle.tokenizer(PROMPTS)
    assert _open_clip_text_parts(model) is not None
    with torch.no_grad():
        assert torch.allclose(encode_text_trimmed(bundle, tokens[:4]), model.encode_text(tokens[:4]), atol=1e-5)
    cfg = json.loads(json.dumps(TINY_OPEN_CLIP_CFG))
    cfg["text_cfg"]["no_causal_mask"] = True
    bidirectional = CustomTextCLIP(**cfg).eval()
    assert _open_clip_text_parts(bidirectional) is None
    with torch.no_grad():
        out = encode_text_trimmed(LoadedClip(model=bidirectional, preprocess=None, tokenizer=None), tokens[:2])
        assert torch.allclose(out, bidirectional.encode_text(tokens[:2]))
