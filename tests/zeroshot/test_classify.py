import io

import numpy as np
import pytest
import torch

from snapsight.errors import ImageError, SnapsightError
from snapsight.zeroshot.classify import ZeroShotClassifier, ZeroShotConfig, ZeroShotResult, multi_label_probs
from snapsight.zeroshot.index import IndexConfig
from snapsight.zeroshot.prompts import TEMPLATE_SETS

from .conftest import build_tiny_open_clip, random_images, save_open_clip_dir

LABELS = ["cat", "sunset", "pizza", "a red bicycle", "Straßenbahn", "猫"]


def _probs_by_label(results, labels):
    return torch.tensor([[dict(zip(r.labels, r.probs))[c] for c in labels] for r in results])


def _load(path, **kw):
    return ZeroShotClassifier.load(str(path), device="cpu", precision="fp32", **kw)


@pytest.mark.parametrize("templates", ["none", "default"])
def test_probabilities_equal_open_clip_reference(tiny_open_clip_dir, templates):
    """Same weights: our softmax equals open_clip's build_zero_shot_classifier + model forward."""
    import open_clip
    from open_clip import build_zero_shot_classifier

    ref_model, _, ref_preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny_open_clip_dir}")
    ref_tok = open_clip.get_tokenizer(f"local-dir:{tiny_open_clip_dir}")
    ims = random_images(5)
    with torch.no_grad():
        weights = build_zero_shot_classifier(ref_model.eval(), ref_tok, LABELS, TEMPLATE_SETS[templates])
        feats = ref_model.encode_image(torch.stack([ref_preprocess(im) for im in ims]), normalize=True)
        ref_scores = feats @ weights
        ref_probs = (ref_model.logit_scale.exp() * ref_scores).softmax(dim=-1)
    clf = _load(tiny_open_clip_dir)
    results = clf.classify(ims, LABELS, templates=templates, top_k=len(LABELS))
    assert (_probs_by_label(results, LABELS) - ref_probs).abs().max() < 1e-5
    ours_scores = torch.tensor([[dict(zip(r.labels, r.scores))[c] for c in LABELS] for r in results])
    assert (ours_scores - ref_scores).abs().max() < 1e-5
    assert ref_probs.max(dim=1).values.min() < 0.99  # the comparison is not between two one-hot vectors
    for r in results:
        assert r.probs == sorted(r.probs, reverse=True)
        assert r.labels[0] == LABELS[int(np.argmax([dict(zip(r.labels, r.probs))[c] for c in LABELS]))]


def test_probabilities_equal_hugging_face_clipmodel(tiny_hf_dir):
    """Same weights: our softmax equals softmax(CLIPModel(...).logits_per_image) for the same prompts."""
    from transformers import AutoProcessor, CLIPModel

    hf = CLIPModel.from_pretrained(tiny_hf_dir).eval()
    processor = AutoProcessor.from_pretrained(tiny_hf_dir)
    ims = random_images(3)
    prompts = [f"This is a photo of {c}." for c in LABELS]  # the zero-shot pipeline's hypothesis template
    inputs = processor(text=prompts, images=ims, return_tensors="pt", padding=True)
    with torch.no_grad():
        ref_probs = hf(**inputs).logits_per_image.softmax(dim=-1)
    clf = _load(tiny_hf_dir)
    results = clf.classify(ims, LABELS, templates=["This is a photo of {}."], top_k=len(LABELS))
    assert (_probs_by_label(results, LABELS) - ref_probs).abs().max() < 1e-5


def test_result_api_and_top_k(tiny_open_clip_dir, images, tmp_path):
    clf = _load(tiny_open_clip_dir)
    info = clf.model_info
    assert info["embed_dim"] == 32 and info["image_size"] == [32, 32] and info["source"] == str(tiny_open_clip_dir)
    path = tmp_path / "img.png"
    images[0].save(path)
    results = clf.classify([images[0], path], "cat, dog, pizza", top_k=2)
    assert len(results) == 2 and results[1].image == str(path)
    for r in results:
        assert isinstance(r, ZeroShotResult) and len(r.labels) == len(r.probs) == len(r.scores) == 2
        d = r.to_dict()
        assert set(d) >= {"labels", "probs", "scores", "none_of_these"}
    np.testing.assert_allclose(results[0].probs, results[1].probs, atol=1e-5)  # PNG round trip is lossless
    assert len(clf.classify(images[0], "cat, dog", top_k=10)[0].labels) == 2  # top_k capped at label count
    assert clf.model is clf.bundle.model and callable(clf.preprocess) and callable(clf.tokenizer)


def test_threshold_gives_none_of_these(tiny_open_clip_dir, images):
    clf = _load(tiny_open_clip_dir)
    [r] = clf.classify(images[:1], LABELS, threshold=None)
    assert not r.none_of_these
    [above] = clf.classify(images[:1], LABELS, threshold=r.scores[0] + 1e-3)
    [below] = clf.classify(images[:1], LABELS, threshold=r.scores[0] - 1e-3)
    assert above.none_of_these and not below.none_of_these
    assert above.labels == r.labels  # the ranking is still reported


def test_multi_label_scores_are_independent(tiny_open_clip_dir, images):
    clf = _load(tiny_open_clip_dir)
    [few] = clf.classify(images[:1], ["cat", "pizza"], multi_label=True, top_k=2)
    [many] = clf.classify(images[:1], LABELS, multi_label=True, top_k=len(LABELS))
    assert few.multi_label and few.present is not None
    for label, p in zip(few.labels, few.probs):  # adding labels does not change a label's probability
        assert abs(dict(zip(many.labels, many.probs))[label] - p) < 1e-6
    assert sum(many.probs) != pytest.approx(1.0)
    assert many.none_of_these == (not any(p >= 0.5 for p in many.probs))
    # the formula: CLIP's two-way softmax between the label and the null prompts
    s = torch.tensor([[0.3, 0.1]])
    p = multi_label_probs(s, torch.tensor([0.2]), logit_scale=100.0)
    assert torch.allclose(p, torch.sigmoid(torch.tensor([[10.0, -10.0]])))
    # SigLIP-style models use their own bias
    assert torch.allclose(multi_label_probs(s, torch.tensor([0.0]), 10.0, logit_bias=-2.0),
                          torch.sigmoid(s * 10.0 - 2.0))


def test_label_index_cache_reused_and_invalidated(tiny_open_clip_dir, tmp_path, images):
    cache = tmp_path / "cache"
    clf = _load(tiny_open_clip_dir, cache_dir=str(cache))
    calls = []
    original = clf.encode_tokens

    def counting(tokens, batch_size=None):
        calls.append(len(tokens))
        return original(tokens, batch_size)

    clf.encode_tokens = counting
    first = clf.classify(images, "cat, dog")
    clf.classify(images, "cat, dog")  # in-memory hit
    assert len(calls) == 1
    clf2 = _load(tiny_open_clip_dir, cache_dir=str(cache))
    clf2.encode_tokens = counting
    second = clf2.classify(images, "cat, dog")  # disk hit: no text encoding at all
    assert len(calls) == 1
    np.testing.assert_allclose([r.probs for r in first], [r.probs for r in second], atol=1e-6)
    clf2.classify(images, "cat, dog, bird")  # label change
    clf2.classify(images, "cat, dog", templates="none")  # template change
    assert len(calls) == 3
    # a different model (new weights in the same folder) must not reuse the old index
    other = save_open_clip_dir(build_tiny_open_clip(seed=1), tmp_path / "other")
    clf3 = _load(other, cache_dir=str(cache))
    clf3.encode_tokens = counting
    clf3.classify(images, "cat, dog")
    assert len(calls) == 4
    entries = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 4


def test_second_run_with_many_labels_starts_fast(tiny_open_clip_dir, tmp_path, images):
    """The second process-like run with 2,000 labels encodes no text: the index comes from the disk cache.

    (What that saves in seconds is measured in benchmarks/zeroshot_vs_hf.py, not asserted here.)
    """
    labels = [f"thing {i}" for i in range(2_000)]
    cache = tmp_path / "cache"
    [cold] = _load(tiny_open_clip_dir, cache_dir=str(cache)).classify(images[:1], labels, templates="none")
    warm_clf = _load(tiny_open_clip_dir, cache_dir=str(cache))
    encoded = []
    original = warm_clf.encode_tokens
    warm_clf.encode_tokens = lambda tokens, batch_size=None: encoded.append(len(tokens)) or original(tokens,
                                                                                                      batch_size)
    [warm] = warm_clf.classify(images[:1], labels, templates="none")
    assert encoded == []  # no text encoding at all
    assert warm.labels == cold.labels and len(warm.labels) == 5
    np.testing.assert_allclose(warm.probs, cold.probs, atol=1e-6)


def test_bad_labels(tiny_open_clip_dir, images):
    clf = _load(tiny_open_clip_dir)
    with pytest.raises(SnapsightError, match="no labels"):
        clf.classify(images, " , ,")
    with pytest.raises(SnapsightError, match="no labels"):
        clf.classify(images, [])
    results = clf.classify(images[:1], "cat, cat, , CAT, dog")
    assert sorted(results[0].labels) == ["cat", "dog"]
    assert any("duplicate" in n for n in clf.notes) and any("empty" in n for n in clf.notes)
    long_label = " ".join(f"w{i}" for i in range(70))  # ~140 tokens in 270 characters: over the context
    results = clf.classify(images[:1], ["猫", "кошка", "🍕", long_label])
    assert len(results[0].labels) == 4
    assert any("77-token context" in n for n in clf.notes)
    assert np.isfinite(results[0].probs).all()


def test_corrupt_image_raises_image_error(tiny_open_clip_dir, tmp_path, images):
    clf = _load(tiny_open_clip_dir)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageError, match="bad.jpg"):
        clf.classify([bad], "cat, dog")
    truncated = tmp_path / "truncated.png"
    buf = io.BytesIO()
    images[0].save(buf, format="PNG")
    truncated.write_bytes(buf.getvalue()[:100])
    with pytest.raises(ImageError):
        clf.classify([truncated], "cat, dog")


def test_hnsw_mode_agrees_with_exact_on_top1(tiny_open_clip_dir, images):
    labels = [f"object {i}" for i in range(300)]
    exact = _load(tiny_open_clip_dir).classify(images, labels, templates="none")
    cfg = ZeroShotConfig(index=IndexConfig(kind="hnsw", hnsw_candidates=64), precision="fp32")
    approx = ZeroShotClassifier.load(str(tiny_open_clip_dir), device="cpu", config=cfg).classify(
        images, labels, templates="none")
    for e, a in zip(exact, approx):
        assert e.labels[0] == a.labels[0]
        assert abs(e.scores[0] - a.scores[0]) < 1e-5


def test_bf16_precision_is_close_to_fp32(tiny_open_clip_dir, images):
    fp32 = _load(tiny_open_clip_dir).classify(images, LABELS, top_k=len(LABELS))
    bf16 = ZeroShotClassifier.load(str(tiny_open_clip_dir), device="cpu", precision="bf16").classify(
        images, LABELS, top_k=len(LABELS))
    assert (_probs_by_label(fp32, LABELS) - _probs_by_label(bf16, LABELS)).abs().max() < 0.1


def test_repeated_calls_reuse_the_index_but_see_changes(tiny_open_clip_dir):
    clf = _load(tiny_open_clip_dir)
    labels = ["cat", "dog"]
    _, a = clf.label_index(labels, "none")
    _, b = clf.label_index(["cat", "dog"], "none")
    assert a is b
    labels.append("bird")  # mutated in place: a new request
    label_set, c = clf.label_index(labels, "none")
    assert c.num_labels == 3 and label_set.names == ["cat", "dog", "bird"]
    _, d = clf.label_index(labels, "default")
    assert d is not c
