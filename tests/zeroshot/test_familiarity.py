"""The "unfamiliar image" flag: reference building, per-source thresholds, the file format, layer statistics, and
the classifier carrying the flag only for models whose folder holds a reference."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from snapsight.errors import SnapsightError
from snapsight.ondevice.familiarity import (
    REFERENCE_FILE,
    auroc,
    build_reference,
    load_reference,
    normalise,
    save_reference,
    spherical_kmeans,
)
from snapsight.zeroshot.layer_stats import channel_stats, layer_statistics

from .conftest import random_images


def _cloud(center: np.ndarray, n: int, spread: float, rng) -> np.ndarray:
    return normalise(center[None, :] + spread * rng.standard_normal((n, len(center))))


def _two_sources(dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    a, b = np.eye(dim, dtype=np.float32)[:2]  # orthogonal centres
    train = {"tight": _cloud(a, 400, 0.03, rng), "loose": _cloud(b, 400, 0.15, rng)}
    calib = {"tight": _cloud(a, 200, 0.03, rng), "loose": _cloud(b, 200, 0.15, rng)}
    return a, b, train, calib, rng


def test_thresholds_are_per_source_quantiles_of_calibration_cosines():
    _, _, train, calib, _ = _two_sources()
    ref = build_reference(train, calib, {"tight": 8, "loose": 50}, quantile=0.05)
    assert ref.source_names == ["tight", "loose"] and len(ref.features) == 58
    cos = ref.source_cosines(calib["tight"])[:, 0]
    assert ref.thresholds[0] == pytest.approx(np.quantile(cos, 0.05), abs=1e-6)
    assert ref.thresholds[0] > ref.thresholds[1]  # the tight source gets the stricter threshold
    # ~95% of each source's calibration images reach their own source's threshold, by construction; an image
    # is familiar when it reaches any source's, so at least as many are familiar overall
    for s, name in enumerate(("tight", "loose")):
        own = (ref.source_cosines(calib[name])[:, s] >= ref.thresholds[s]).mean()
        assert 0.93 <= own <= 0.97
        assert (~ref.unfamiliar(ref.scores(calib[name]))).mean() >= own


def test_the_same_distance_is_familiar_for_the_loose_source_and_not_for_the_tight_one():
    a, b, train, calib, _ = _two_sources()
    ref = build_reference(train, calib, {"tight": 8, "loose": 50}, quantile=0.05)
    assert ref.thresholds[1] < 0.85 < ref.thresholds[0]
    tilt = np.eye(16, dtype=np.float32)[5]  # orthogonal to both centres
    near_a = normalise((0.85 * a + np.sqrt(1 - 0.85**2) * tilt)[None, :])  # cosine 0.85 to each centre
    near_b = normalise((0.85 * b + np.sqrt(1 - 0.85**2) * tilt)[None, :])
    assert ref.unfamiliar(ref.scores(near_a)).all()
    assert not ref.unfamiliar(ref.scores(near_b)).any()
    assert ref.unfamiliar(ref.scores(-a[None, :])).all()


def test_scores_match_a_naive_nearest_neighbour_loop():
    _, _, train, calib, rng = _two_sources()
    ref = build_reference(train, calib, {"tight": 4, "loose": 4})
    x = normalise(rng.standard_normal((7, 16)))
    naive = []
    for v in x:
        margins = []
        for s in range(2):
            rows = [f for f, src in zip(ref.features, ref.source) if src == s]
            margins.append(max(float(v @ r) for r in rows) - float(ref.thresholds[s]))
        naive.append(max(margins))
    assert np.allclose(ref.scores(x), naive, atol=1e-5)


def test_spherical_kmeans_gives_unit_centroids_near_the_clusters():
    rng = np.random.default_rng(1)
    centres = normalise(rng.standard_normal((3, 8)))
    x = np.concatenate([_cloud(c, 100, 0.05, rng) for c in centres])
    c = spherical_kmeans(x, 3, seed=0)
    assert np.allclose(np.linalg.norm(c, axis=1), 1, atol=1e-5)
    assert (c @ centres.T).max(axis=0).min() > 0.99  # every true centre is found
    assert spherical_kmeans(x[:2], 5).shape == (2, 8)  # fewer rows than k: the rows themselves


def test_reference_file_round_trip_and_missing_or_broken_files(tmp_path):
    _, _, train, calib, _ = _two_sources()
    ref = build_reference(train, calib, {"tight": 4, "loose": 6}, layers=("visual.conv1",))
    save_reference(ref, tmp_path / REFERENCE_FILE)
    back = load_reference(tmp_path)
    assert back.source_names == ref.source_names and back.layers == ("visual.conv1",)
    assert np.allclose(back.thresholds, ref.thresholds) and np.array_equal(back.source, ref.source)
    assert np.allclose(back.features, ref.features, atol=2e-3)  # stored in fp16
    assert back.info["sources"]["tight"]["centroids"] == 4
    assert load_reference(tmp_path / "nowhere") is None and load_reference(None) is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / REFERENCE_FILE).write_bytes(b"not safetensors")
    with pytest.raises(SnapsightError, match="not a readable familiarity reference"):
        load_reference(tmp_path / "bad")


def test_reference_needs_calibration_images_of_every_source():
    _, _, train, calib, _ = _two_sources()
    with pytest.raises(SnapsightError, match="loose"):
        build_reference(train, {"tight": calib["tight"]}, {})


def test_auroc_matches_pairwise_counting():
    rng = np.random.default_rng(2)
    fam, unf = rng.normal(1, 1, 40).round(1), rng.normal(0, 1, 30).round(1)  # rounded: ties happen
    pairs = [(1.0 if f > u else 0.5 if f == u else 0.0) for f in fam for u in unf]
    assert auroc(fam, unf) == pytest.approx(np.mean(pairs))
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0


def test_layer_statistics_match_a_hand_computed_mean_and_std(tiny_open_clip_dir):
    from snapsight.models.clip import load_clip

    bundle = load_clip(str(tiny_open_clip_dir))
    model = bundle.model.eval()
    pixels = bundle.preprocess_batch(random_images(3))
    with torch.no_grad():
        conv = model.visual.conv1(pixels)  # (B, C, H, W)
    flat = conv.flatten(2)
    want = torch.nn.functional.normalize(torch.cat([flat.mean(-1), flat.std(-1, unbiased=False)], 1), dim=1)
    got = layer_statistics(model, pixels, ["visual.conv1"])
    assert got.shape == (3, 2 * conv.shape[1])
    assert np.allclose(got, want.numpy(), atol=1e-5)
    assert channel_stats(torch.ones(2, 5, 4)).shape == (2, 8)  # (B, T, C) token sequences too
    with pytest.raises(SnapsightError, match="no layer 'visual.nope'"):
        layer_statistics(model, pixels, ["visual.nope"])


def _model_with_reference(src, dst, layers=("visual.conv1",)):
    from snapsight.zeroshot import ZeroShotClassifier

    shutil.copytree(src, dst)
    clf = ZeroShotClassifier.load(str(dst), device="cpu", precision="fp32")
    train = clf.image_features(random_images(40, seed=1), layers)
    calib = clf.image_features(random_images(20, seed=2), layers)
    save_reference(build_reference({"noise": train}, {"noise": calib}, {"noise": 16}, layers=layers),
                   dst / REFERENCE_FILE)
    return ZeroShotClassifier.load(str(dst), device="cpu", precision="fp32")


def test_classifier_flags_images_only_for_a_model_that_carries_a_reference(tiny_open_clip_dir, tmp_path):
    from PIL import Image

    from snapsight.zeroshot import ZeroShotClassifier

    plain = ZeroShotClassifier.load(str(tiny_open_clip_dir), device="cpu", precision="fp32")
    [r] = plain.classify(random_images(1), "cat, dog")
    assert plain.familiarity is None and r.familiarity is None and r.unfamiliar is None
    assert "familiarity" not in r.to_dict()
    with pytest.raises(SnapsightError, match="no familiarity reference"):
        plain.familiarity_scores(random_images(1))

    clf = _model_with_reference(tiny_open_clip_dir, tmp_path / "with-ref")
    flat = Image.new("RGB", (48, 40), (255, 255, 255))  # nothing like the random-noise training images
    noise, white = clf.classify(random_images(1, seed=3) + [flat], "cat, dog")
    assert noise.unfamiliar is False and white.unfamiliar is True
    assert white.familiarity < 0 <= noise.familiarity
    d = white.to_dict()
    assert d["unfamiliar"] is True and d["familiarity"] == pytest.approx(white.familiarity, abs=1e-4)
    # the embeddings-then-annotate path (CLI, demo) gives the same answer as classify()
    label_set, index = clf.label_index("cat, dog")
    emb = clf.encode_images([flat])
    [again] = clf.annotate_familiarity(clf.classify_embeddings(emb, label_set, index), [flat])
    assert again.familiarity == pytest.approx(white.familiarity)


def test_encoding_then_flagging_takes_one_forward_pass(tiny_open_clip_dir, tmp_path):
    from PIL import Image

    clf = _model_with_reference(tiny_open_clip_dir, tmp_path / "with-ref")
    noise, flat = random_images(1, seed=3)[0], Image.new("RGB", (48, 40), (255, 255, 255))
    want = [r.familiarity for r in clf.classify([noise, flat], "cat, dog")]
    model = clf.model
    passes = []
    encode = model.encode_image
    model.encode_image = lambda *a, **k: passes.append(1) or encode(*a, **k)
    label_set, index = clf.label_index("cat, dog")
    images = [noise, flat]
    results = clf.annotate_familiarity(clf.classify_embeddings(clf.encode_images(images), label_set, index), images)
    assert len(passes) == 1 and [r.familiarity for r in results] == pytest.approx(want, abs=1e-5)
    # other images than the ones last encoded are measured anew, never given the last pass's statistics
    [other] = clf.annotate_familiarity(clf.classify_embeddings(clf.encode_images([noise]), label_set, index), [flat])
    assert len(passes) == 3 and other.familiarity == pytest.approx(want[1], abs=1e-5) and other.unfamiliar


def test_encoding_without_familiarity_records_nothing_and_flags_the_same(tiny_open_clip_dir, tmp_path):
    """Search indexes and few-shot examples embed with familiarity=False: no statistics are recorded (no hooks
    run), and a flag asked for afterwards is measured anew, with the same answer."""
    from PIL import Image

    clf = _model_with_reference(tiny_open_clip_dir, tmp_path / "with-ref")
    images = [random_images(1, seed=3)[0], Image.new("RGB", (48, 40), (255, 255, 255))]
    label_set, index = clf.label_index("cat, dog")
    emb = clf.encode_images(images, familiarity=False)
    assert clf._recent.get(images) is None  # the pass recorded nothing
    results = clf.annotate_familiarity(clf.classify_embeddings(emb, label_set, index), images)
    assert torch.allclose(emb, clf.encode_images(images))  # the same embeddings either way
    want = [r.familiarity for r in clf.classify(images, "cat, dog")]
    assert [r.familiarity for r in results] == pytest.approx(want, abs=1e-5)


def test_a_reference_for_another_architecture_is_one_sentence_at_load(tiny_open_clip_dir, tmp_path):
    from snapsight.zeroshot import ZeroShotClassifier

    _model_with_reference(tiny_open_clip_dir, tmp_path / "m")
    ref = load_reference(tmp_path / "m")
    ref.layers = ("visual.trunk.layer1",)
    save_reference(ref, tmp_path / "m" / REFERENCE_FILE)
    with pytest.raises(SnapsightError, match="no layer 'visual.trunk.layer1'"):
        ZeroShotClassifier.load(str(tmp_path / "m"), device="cpu", precision="fp32")


def test_cli_shows_the_flag_as_a_line_a_json_field_and_csv_columns(capsys, tiny_open_clip_dir, tmp_path):
    import csv
    import io
    import json

    from PIL import Image

    from snapsight.cli import main

    model = tmp_path / "with-ref"
    _model_with_reference(tiny_open_clip_dir, model)
    random_images(1, seed=3)[0].save(tmp_path / "noise.png")
    Image.new("RGB", (48, 40), (255, 255, 255)).save(tmp_path / "white.png")
    files = [str(tmp_path / "noise.png"), str(tmp_path / "white.png")]
    assert main(["classify", *files, "--labels", "cat, dog", "--model", str(model), "--format", "json",
                 "--no-progress"]) == 0
    noise, white = json.loads(capsys.readouterr().out)
    assert (noise["unfamiliar"], white["unfamiliar"]) == (False, True) and white["familiarity"] < 0
    assert main(["classify", *files, "--labels", "cat, dog", "--model", str(model), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert table.count("unfamiliar image") == 1 and table.index("white.png") < table.index("unfamiliar image")
    assert main(["classify", *files, "--labels", "cat, dog", "--model", str(model), "--format", "csv",
                 "--no-progress"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["image"].endswith("white.png") for r in rows if r["unfamiliar"] == "1"} == {True}
    # a model without a reference: empty columns, no JSON field
    assert main(["classify", *files, "--labels", "cat, dog", "--model", str(tiny_open_clip_dir), "--format",
                 "json", "--no-progress"]) == 0
    assert all("unfamiliar" not in r for r in json.loads(capsys.readouterr().out))


def test_scores_do_not_depend_on_the_feature_scale():
    """Layer statistics are unit per layer, so a row of three layers has norm sqrt(3): the cosine must not see it."""
    _, _, train, calib, rng = _two_sources()
    ref = build_reference(train, calib, {"tight": 4, "loose": 4})
    x = normalise(rng.standard_normal((5, 16)))
    assert np.allclose(ref.scores(3 ** 0.5 * x), ref.scores(x), atol=1e-6)
    assert (ref.source_cosines(3 ** 0.5 * x) <= 1 + 1e-6).all()
