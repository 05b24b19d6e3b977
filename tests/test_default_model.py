"""The offline default model: locating/assembling it, the one-sentence error when it is missing,
and the held-out wordings really being held out."""
from __future__ import annotations

import pytest

from snapsight import default_model as dm
from snapsight.errors import SnapsightError


def test_missing_weights_raise_one_sentence_with_the_build_command(tmp_path, monkeypatch):
    monkeypatch.setattr(dm, "ASSET_DIR", tmp_path / "no-asset")
    monkeypatch.setenv("SNAPSIGHT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SNAPSIGHT_DEFAULT_MODEL_ASSET", raising=False)
    with pytest.raises(SnapsightError) as e:
        dm.default_model_dir()
    msg = str(e.value)
    assert "snapsight build-default-model" in msg and "\n" not in msg


def test_held_out_wordings_never_occur_in_training_captions():
    eval_phrases = [w for ws in dm.EVAL_WORDINGS.values() for w in ws]
    train_phrases = [w for ws in dm.TRAIN_WORDINGS.values() for w in ws]
    assert dm.check_heldout_wordings(train_phrases, eval_phrases) == []
    assert set(dm.EVAL_WORDINGS) == set(dm.TRAIN_WORDINGS)
    # templates used for training differ from the zero-shot prompts used at evaluation
    zs = pytest.importorskip("snapsight.zeroshot.prompts")
    assert not set(dm.FMNIST_TEMPLATES) & {t.rstrip(".") for t in zs.TEMPLATE_SETS["default"]} - {"{}"}


def test_contains_phrase_ignores_case_and_hyphens():
    assert dm.contains_phrase("A crew-neck T-shirt", "t shirt")
    assert not dm.contains_phrase("sweatpants", "pants")
    assert dm.contains_phrase("woman's boots", "boots")


def test_emoji_split_is_deterministic_and_disjoint():
    from snapsight.data.emoji import Emoji

    emojis = [Emoji(chr(0x1F400 + i), f"thing {i}") for i in range(200)]
    a_train, a_held = dm.split_emoji(emojis)
    b_train, b_held = dm.split_emoji(emojis)
    assert a_held == b_held and a_train == b_train
    assert not {e.name for e in a_held} & {e.name for e in a_train}
    assert 5 <= len(a_held) <= 40


@pytest.mark.skipif(dm.find_default_asset() is None, reason="default model weights not built here")
def test_default_model_loads_with_plain_open_clip(tmp_path, monkeypatch):
    import open_clip
    import torch

    monkeypatch.setenv("SNAPSIGHT_CACHE", str(tmp_path))
    d = dm.default_model_dir()
    assert d.is_dir() and (d / "open_clip_config.json").is_file()
    assert dm.default_model_dir() == d  # assembled once, then reused
    model, _, pre = open_clip.create_model_and_transforms(f"local-dir:{d}")
    model.eval()
    tok = open_clip.get_tokenizer(f"local-dir:{d}")
    from PIL import Image

    with torch.no_grad():
        i = model.encode_image(pre(Image.new("RGB", (40, 40), "white"))[None])
        t = model.encode_text(tok(["a boot", "a bag"]))
    assert i.shape[1] == t.shape[1] == 384


@pytest.mark.skipif(dm.find_default_asset() is None, reason="default model weights not built here")
def test_zero_shot_loader_uses_the_default_model(tmp_path, monkeypatch):
    zs = pytest.importorskip("snapsight.zeroshot")
    if not hasattr(zs, "ZeroShotClassifier"):
        pytest.skip("snapsight.zeroshot.ZeroShotClassifier not available yet")
    monkeypatch.setenv("SNAPSIGHT_CACHE", str(tmp_path))
    clf = zs.ZeroShotClassifier.load(device="cpu", precision="fp32")
    from PIL import Image

    res = clf.classify([Image.new("RGB", (28, 28), "black")], ["boot", "bag", "dress"], top_k=3)[0]
    assert len(res.labels) == 3 and abs(sum(res.probs) - 1) < 1e-4
