"""Probe heads, feature cache, classifier save/load and bad-input messages (tiny, CPU)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from snapsight.artifacts.classifier import is_classifier_dir
from snapsight.artifacts.encoder import save_encoder
from snapsight.data.labeled import load_labeled
from snapsight.errors import SnapsightError
from snapsight.models.encoders import load_feature_encoder
from snapsight.preprocessing import Preprocessing
from snapsight.probe.classifier import load_classifier, save_classifier
from snapsight.probe.features import extract_features, feature_cache_key
from snapsight.probe.heads import KnnHead, LinearProbe, train_knn_head, train_linear_probe


def make_tree(root, n=6, size=12, seed=0, classes=("red", "green", "blue")):
    rng = np.random.default_rng(seed)
    base = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = np.clip(np.array(base[c])[None, None] + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / c / f"{i}.png")
    return root


def test_linear_head_separates_toy_set():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 3
    y = torch.arange(4).repeat_interleave(50)
    x = centers[y] + 0.5 * torch.randn(200, 16, generator=g)
    yv = torch.arange(4).repeat_interleave(20)
    xv = centers[yv] + 0.5 * torch.randn(80, 16, generator=g)
    head, info = train_linear_probe(x, y, xv, yv, 4, weight_decays=[0.0, 1e-3, 1e-1], max_iter=50)
    assert info["train_top1"] >= 0.99 and info["val_top1"] >= 0.99
    assert set(info["val_top1_by_weight_decay"]) == {"0.0", "0.001", "0.1"}
    assert (head(xv).argmax(1) == yv).float().mean() >= 0.99
    assert torch.allclose(head.probs(xv).sum(1), torch.ones(80))


def _brute_force_knn(bank, bank_labels, queries, num_classes, k, t):
    out = []
    for q in queries:
        sims = [(float(F.cosine_similarity(q, b, dim=0)), int(lbl)) for b, lbl in zip(bank, bank_labels)]
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * num_classes
        for s, lbl in sims[:k]:
            votes[lbl] += np.exp(s / t)
        total = sum(votes)
        out.append([v / total for v in votes])
    return torch.tensor(out)


def test_knn_head_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    bank, labels = torch.randn(40, 8, generator=g), torch.randint(0, 3, (40,), generator=g)
    queries = torch.randn(7, 8, generator=g)
    for k in (1, 5, 40):
        head = KnnHead(bank, labels, 3, k=k, temperature=0.1)
        ref = _brute_force_knn(bank, labels, queries, 3, k, 0.1)
        assert torch.allclose(head.probs(queries), ref.float(), atol=1e-5)
    qy = torch.randint(0, 3, (7,), generator=g)
    head, info = train_knn_head(bank, labels, queries, qy, 3, ks=[5, 20], temperature=0.1)
    assert info["k"] in (5, 20) and set(info["val_top1_by_k"]) == {"5", "20"}


def _export_encoder(path, seed):
    torch.manual_seed(seed)
    enc = load_feature_encoder("random:small_cnn@12")
    save_encoder(path, "small_cnn", enc.model.state_dict(), Preprocessing(12, (0.5,) * 3, (0.5,) * 3).to_dict(),
                 num_features=enc.num_features)
    return path


def test_feature_cache_hit_and_invalidated_on_encoder_change(tmp_path):
    data = load_labeled(make_tree(tmp_path / "data", n=2))
    enc_dir = _export_encoder(tmp_path / "enc", seed=0)
    cache = tmp_path / "cache"
    enc = load_feature_encoder(enc_dir)
    first = extract_features(enc, data, batch_size=4, cache_dir=cache, progress=False)
    assert not first.from_cache and len(list(cache.glob("*.safetensors"))) == 1
    again = extract_features(load_feature_encoder(enc_dir), data, batch_size=4, cache_dir=cache, progress=False)
    assert again.from_cache and torch.equal(again.features, first.features)
    _export_encoder(enc_dir, seed=1)  # same path, new weights
    changed = load_feature_encoder(enc_dir)
    assert feature_cache_key(changed, data) != feature_cache_key(enc, data)
    third = extract_features(changed, data, batch_size=4, cache_dir=cache, progress=False)
    assert not third.from_cache and not torch.allclose(third.features, first.features)
    # data change (a new file) also changes the key
    make_tree(tmp_path / "data", n=3)
    assert feature_cache_key(changed, load_labeled(tmp_path / "data")) != feature_cache_key(changed, data)


def test_corrupt_images_are_skipped_and_reported(tmp_path):
    root = make_tree(tmp_path / "data", n=2)
    (root / "red" / "zz_broken.png").write_bytes(b"\x89PNG garbage")
    ds = load_labeled(root)
    fs = extract_features(load_feature_encoder("random:small_cnn@12"), ds, batch_size=3, progress=False)
    assert len(fs.features) == len(ds) - 1 and len(fs.skipped) == 1 and "zz_broken.png" in fs.skipped[0][0]


@pytest.mark.parametrize("kind", ["linear", "knn"])
def test_saved_classifier_reloads_with_identical_predictions(tmp_path, kind):
    root = make_tree(tmp_path / "data", n=4)
    ds = load_labeled(root)
    torch.manual_seed(0)
    enc = load_feature_encoder("random:small_cnn@12")
    fs = extract_features(enc, ds, progress=False)
    if kind == "linear":
        head, _ = train_linear_probe(fs.features, fs.labels, fs.features, fs.labels, 3, [1e-3], 30)
    else:
        head, _ = train_knn_head(fs.features, fs.labels, fs.features, fs.labels, 3, ks=[3])
    out = save_classifier(tmp_path / "clf", enc.model, enc.arch, head, ds.class_names, enc.preprocessing, kind, "random")
    assert is_classifier_dir(out) and not is_classifier_dir(root)
    images = [ds.load(i) for i in range(len(ds))]
    with torch.no_grad():
        direct = head.probs(enc.model(enc.preprocessing.batch(images)))
    clf = load_classifier(out, device="cpu")
    assert clf.class_names == ["blue", "green", "red"]
    assert torch.allclose(clf.predict_proba(images), direct, atol=1e-6)
    again = load_classifier(out, device="cpu").predict(images, top_k=2)
    first = clf.predict(images, top_k=2)
    assert first == again and len(first[0]) == 2 and first[0][0][1] >= first[0][1][1]
    assert [p[0][0] for p in first] == [ds.class_names[i] for i in ds.labels]


def test_load_classifier_refuses_other_dirs(tmp_path):
    with pytest.raises(SnapsightError, match="not a snapsight classifier"):
        load_classifier(tmp_path)


def test_encoder_of_the_wrong_kind(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    with pytest.raises(SnapsightError, match="is a file"):
        load_feature_encoder(tmp_path / "weights.safetensors")
    with pytest.raises(SnapsightError, match="encoder not found"):
        load_feature_encoder(tmp_path / "missing")
    (tmp_path / "clf").mkdir()
    (tmp_path / "clf" / "classifier.json").write_text('{"kind": "snapsight-classifier"}')
    with pytest.raises(SnapsightError, match="trained classifier"):
        load_feature_encoder(tmp_path / "clf")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(SnapsightError, match="no snapsight encoder"):
        load_feature_encoder(tmp_path / "other")
    bad = _export_encoder(tmp_path / "bad", seed=0)
    (bad / "model.safetensors").write_bytes(b"corrupt")
    with pytest.raises(SnapsightError, match="not a valid safetensors"):
        load_feature_encoder(bad)


def test_finetune_augmentation_can_be_turned_off(tmp_path):
    from snapsight.probe.features import ImageItems
    from snapsight.probe.finetune import finetune_augmentation

    ds = load_labeled(make_tree(tmp_path / "data", n=1))
    prep = Preprocessing(12, (0.5,) * 3, (0.5,) * 3)
    x, i, err = ImageItems(ds, prep, finetune_augmentation(12, crop_scale_min=1.0, hflip=False))[0]
    assert err == "" and i == 0 and torch.equal(x, prep(ds.load(0)))
    x2, *_ = ImageItems(ds, prep, finetune_augmentation(12, crop_scale_min=0.5, hflip=True))[0]
    assert x2.shape == x.shape


def test_clip_tower_arch_keeps_quick_gelu():
    """Tags trained with QuickGELU (openai) load with force_quick_gelu on a config without it; the saved
    arch must say so, or the reloaded classifier computes its features with GELU."""
    from open_clip.model import _build_vision_tower

    from snapsight.models.encoders import _ClipImageTower, build_encoder_module, with_activation_of

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1}}
    torch.manual_seed(0)
    tower = _ClipImageTower(_build_vision_tower(16, cfg["vision_cfg"], quick_gelu=True), 16).eval()
    arch_cfg = with_activation_of(cfg, tower.visual)
    assert arch_cfg["quick_gelu"] is True and "quick_gelu" not in cfg
    rebuilt = build_encoder_module({"type": "openclip", "model_cfg": arch_cfg}).eval()
    rebuilt.load_state_dict(tower.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), tower(x))
    assert with_activation_of(cfg, build_encoder_module({"type": "openclip", "model_cfg": cfg}).visual) is cfg


def test_finetune_task_freezes_batchnorm_and_lowers_the_backbone_lr(tmp_path):
    from snapsight.probe.finetune import FinetuneConfig, FinetuneTask

    ds = load_labeled(make_tree(tmp_path / "data", n=2))
    enc = load_feature_encoder("random:small_cnn@12")
    bns = [m for m in enc.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns
    cfg = FinetuneConfig(lr=0.01, backbone_lr_scale=0.1)
    task = FinetuneTask(enc.model, LinearProbe(enc.num_features, 3), ds, cfg)
    task.train()
    assert task.head.training and not any(m.training for m in bns)
    unfrozen = FinetuneTask(enc.model, LinearProbe(enc.num_features, 3), ds, FinetuneConfig(freeze_bn=False)).train()
    assert all(m.training for m in bns) and unfrozen.training
    groups = task.param_groups()
    assert [g["lr"] for g in groups] == [pytest.approx(0.001), 0.01]
    assert sum(len(g["params"]) for g in groups) == len(list(task.parameters()))

    x = torch.zeros(3, 3, 12, 12)
    out = task.training_step((x, torch.tensor([0, 2, 5]), ["", "broken", ""]))
    assert out["loss"].requires_grad and task.skipped == {ds.describe(2): "broken"}
    # fewer than two readable images: nothing to learn from, the loop skips the update
    out = task.training_step((x, torch.tensor([0, 2, 5]), ["bad", "broken", ""]))
    assert out["update"] is False and float(out["loss"]) == 0.0


def test_probe_settings_are_checked_where_the_config_is_read():
    from snapsight.config import from_dict
    from snapsight.errors import ConfigError
    from snapsight.probe.run import ProbeConfig

    for data, message in [({"finetune": {"batch_size": 0}}, "finetune.batch_size must be at least 1"),
                          ({"knn": {"ks": []}}, "knn.ks must list"),
                          ({"linear": {"weight_decays": []}}, "linear.weight_decays must list"),
                          ({"labels_fraction": 0}, "labels_fraction must be in"),
                          ({"val_split": 1.0}, "val_split must be between 0 and 1")]:
        with pytest.raises(ConfigError, match=message):
            from_dict(ProbeConfig, data)
