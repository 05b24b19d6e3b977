"""`snapsight probe` end to end on tiny generated images with random: encoders (and a tiny CLIP tower)."""
import json

import pytest
import torch

from snapsight.cli import main
from snapsight.probe.classifier import load_classifier

from .test_probe import make_tree


@pytest.fixture
def data(tmp_path):
    train = make_tree(tmp_path / "train", n=8, seed=0)
    val = make_tree(tmp_path / "val", n=3, seed=1)
    (train / "red" / "zz_broken.png").write_bytes(b"not an image")
    return train, val


def _probe(tmp_path, train, val, *extra):
    return main(["probe", "--encoder", "random:small_cnn@12", "--train", str(train), "--val", str(val),
                 "--out", str(tmp_path / "out"), "--quiet", "--set", f"cache_dir={tmp_path / 'cache'}", *extra])


def test_probe_cli_linear_end_to_end(tmp_path, data, capsys):
    train, val = data
    assert _probe(tmp_path, train, val, "--test", str(val)) == 0
    out = capsys.readouterr().out
    assert "skipped 1 unreadable train image" in out and "zz_broken.png" in out
    assert "val: 9 images, 3 classes" in out and "test: 9 images" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["train"]["class_counts"] == [8, 8, 8]  # the broken red image skipped
    assert "zz_broken.png" in report["train"]["skipped_images"][0]["item"]
    assert report["evaluations"]["val"]["top1"] >= 0.99
    assert (tmp_path / "out" / "confusion_matrix.png").is_file() and (tmp_path / "out" / "val_confusion_matrix.png").is_file()
    clf = load_classifier(tmp_path / "out", "cpu")
    assert clf.class_names == ["blue", "green", "red"]
    assert clf.predict([val / "green" / "0.png"], top_k=1)[0][0][0] == "green"


@pytest.mark.parametrize("mode", ["knn", "finetune"])
def test_probe_cli_other_modes(tmp_path, data, mode, capsys):
    train, val = data
    assert _probe(tmp_path, train, val, "--mode", mode, "--labels-fraction", "0.5",
                  "--set", "finetune.epochs=2", "--set", "knn.ks=[3,5]") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["labels_fraction"] == 0.5 and report["train"]["images"] in (11, 12)  # 4 per class, maybe minus the broken one
    assert report["mode"] == mode and report["evaluations"]["val"]["top1"] >= 0.99
    assert load_classifier(tmp_path / "out", "cpu").meta["mode"] == mode


def test_probe_cli_bad_inputs(tmp_path, data, capsys):
    train, val = data
    other = make_tree(tmp_path / "other", n=1, classes=("red", "green"))
    (other / "purple").mkdir()
    assert _probe(tmp_path, train, other) == 2
    assert "'purple' hold no images" in capsys.readouterr().err
    (other / "purple").rmdir()
    horse = make_tree(tmp_path / "horse", n=1, classes=("red",))
    (horse / "red").rename(horse / "horse")
    assert _probe(tmp_path, train, horse) == 2
    assert "labels do not match" in capsys.readouterr().err
    single = make_tree(tmp_path / "single", n=2, classes=("red",))
    assert _probe(tmp_path, single, val) == 2
    assert "single class" in capsys.readouterr().err
    assert main(["probe", "--encoder", str(train), "--train", str(train), "--val", str(val), "--quiet"]) == 2
    assert "no snapsight encoder" in capsys.readouterr().err
    assert main(["probe", "--train", str(train)]) == 2
    assert "--encoder is required" in capsys.readouterr().err
    assert _probe(tmp_path, train, val, "--set", "linear.max_itr=3") == 2
    assert "Did you mean 'max_iter'" in capsys.readouterr().err
    # k=0 trained a classifier that always answered class 0 (exit 0); batch_size=0 failed in the loader
    assert _probe(tmp_path, train, val, "--mode", "knn", "--set", "knn.ks=[0]") == 2
    assert "knn.ks must list" in capsys.readouterr().err
    assert _probe(tmp_path, train, val, "--set", "batch_size=0") == 2
    assert "batch_size must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("encoder,message", [
    ("random:smal_cnn@12", "unknown backbone 'smal_cnn'"),
    ("random:small_cnn@twelve", "must be a positive integer"),
    ("random:timm:resnet1t@12", "unknown timm model 'resnet1t'"),
    ("openclip:ViT-B-3:openai", "not an open_clip model name"),
    ("openclip:ViT-B-32:laion2b_typo", "neither a pretrained tag of ViT-B-32"),
    ("local-dir:{tmp}/nowhere", "not an open_clip folder"),
    ("clip:defualt", "unknown CLIP encoder"),
    ("{tmp}/runs/pretrian", "encoder not found"),
    ("{tmp}/classifier", "is a trained classifier"),
    ("{tmp}/hf-clip", "is a Hugging Face CLIP model"),
    ("{tmp}/other", "no snapsight encoder found"),
    ("openclip:ViT-B-32", "needs weights: openclip:ViT-B-32:<tag>"),
])
def test_bad_encoder_is_refused_before_the_data_loads(tmp_path, data, monkeypatch, capsys, encoder, message):
    """A typo in --encoder cost the whole data loading (and decoding) first."""
    import snapsight.data.labeled as labeled

    (tmp_path / "classifier").mkdir()
    (tmp_path / "classifier" / "classifier.json").write_text("{}")
    (tmp_path / "hf-clip").mkdir()
    (tmp_path / "hf-clip" / "config.json").write_text('{"model_type": "clip"}')
    (tmp_path / "other").mkdir()
    train, val = data

    def no_loading(*args, **kwargs):
        raise AssertionError("the data was loaded before --encoder was checked")

    monkeypatch.setattr(labeled, "load_labeled", no_loading)
    code = main(["probe", "--encoder", encoder.format(tmp=tmp_path), "--train", str(train), "--val", str(val),
                 "--out", str(tmp_path / "out"), "--quiet", "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_probe_with_clip_image_tower(tmp_path, data):
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    cfg = {"embed_dim": 8, "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "patch_size": 8, "head_width": 8},
           "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    d = tmp_path / "clip"
    d.mkdir()
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in open_clip.model.CLIP(**cfg).state_dict().items()}, str(d / "open_clip_model.safetensors"))
    train, val = data
    assert main(["probe", "--encoder", f"local-dir:{d}", "--train", str(train), "--val", str(val),
                 "--out", str(tmp_path / "out"), "--quiet", "--no-cache"]) == 0
    clf = load_classifier(tmp_path / "out", "cpu")
    assert clf.meta["encoder"]["arch"]["type"] == "openclip" and clf.preprocessing.image_size == 16
    assert len(clf.predict([val / "red" / "0.png"])[0]) == 3


@pytest.mark.parametrize("name", ["probe.yaml", "probe-fashion-mnist.yaml"])
def test_probe_configs_load(name):
    from pathlib import Path

    from snapsight.config import load_config, to_dict
    from snapsight.probe.run import ProbeConfig

    path = Path(__file__).resolve().parents[2] / "configs" / name
    cfg = load_config(ProbeConfig, path)
    assert cfg.mode == "linear" and 0 in cfg.linear.weight_decays and cfg.knn.ks == [20, 200]
    if name == "probe.yaml":  # the commented reference config spells out every default
        assert to_dict(cfg) == to_dict(ProbeConfig())
