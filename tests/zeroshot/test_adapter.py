"""Few-shot cache adapter (Tip-Adapter) on top of zero-shot: the maths against naive loops, the classifier on the
tiny CLIP fixtures, the on-disk cache and the CLI."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from snapsight.cli import main
from snapsight.errors import SnapsightError
from snapsight.zeroshot.adapter import (
    ALPHA_GRID,
    DEFAULT_BETA,
    cache_scores,
    finetune_keys,
    fit_cache,
    leave_one_out_search,
    one_hot_values,
    select_shots,
)
from snapsight.zeroshot.classify import ZeroShotClassifier

from .conftest import random_images

LABELS = ["cat", "sunset", "pizza", "bicycle"]
COLOURS = {"cat": (220, 30, 30), "sunset": (30, 220, 30), "pizza": (30, 30, 220), "bicycle": (230, 230, 230)}


def colour_examples(per: int = 2, seed: int = 0) -> dict[str, list[Image.Image]]:
    """Noisy flat-colour images, one colour per label: the tiny random CLIP tells the colours apart (cosines
    ~0.55-0.89 between colours, ~0.9999 within one) but its zero-shot answer is the same label for all of them."""
    rng = np.random.RandomState(seed)
    return {name: [Image.fromarray(np.clip(np.array(c)[None, None] + rng.randint(-20, 21, (40, 48, 3)), 0, 255)
                                   .astype(np.uint8)) for _ in range(per)] for name, c in COLOURS.items()}


@pytest.fixture(scope="module")
def clf(tiny_open_clip_dir):
    return ZeroShotClassifier.load(str(tiny_open_clip_dir), device="cpu", precision="fp32")


def _save_folder(root, examples):
    for name, ims in examples.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(ims):
            im.save(root / name / f"{i}.png")
    return root


# ------------------------------------------------------------------------------------------------ maths


def test_cache_scores_equal_the_paper_formula_written_as_a_loop():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(3, 8, generator=g), dim=-1)
    k = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    values = one_hot_values(["b", "a", "b", "c", "a"], ["a", "b", "c", "d"])
    out = cache_scores(q, k, values, alpha=2.0, beta=5.0)
    ref = torch.zeros(3, 4)
    for i in range(3):
        for j in range(5):
            ref[i, int(values[j].argmax())] += 2.0 / 100 * np.exp(-5.0 * (1 - float(q[i] @ k[j])))
    assert torch.allclose(out, ref, atol=1e-6)
    assert out[:, 3].abs().max() == 0  # a label without examples gets nothing from the cache


def test_unknown_example_labels_are_one_sentence_naming_them():
    with pytest.raises(SnapsightError) as e:
        one_hot_values(["cat", "dog", "Cat ", "ferret"], ["cat", "sunset"])
    msg = str(e.value)
    assert "'dog'" in msg and "'ferret'" in msg and "'cat" not in msg.lower().replace("'dog'", "")
    assert "\n" not in msg


def _clustered(n_per=4, classes=3, dim=16, noise=0.3, seed=0):
    """Keys in tight clusters, one per class; the zero-shot side points every class at the wrong place."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(classes, dim, generator=g), dim=-1)
    y = torch.arange(classes).repeat_interleave(n_per)
    keys = F.normalize(centres[y] + noise * torch.randn(len(y), dim, generator=g) / dim ** 0.5, dim=-1)
    names = [f"c{int(c)}" for c in y]
    return keys, y, names, centres


def _loo_accuracy_by_loop(keys, names, label_names, zero_shot, alpha, beta):
    """Naive reference: remove each example's key, classify it with zero-shot + the rest of the cache."""
    values = one_hot_values(names, label_names)
    counts = values.sum(0)
    hits, n = 0, 0
    for i in range(len(keys)):
        if counts[values[i].argmax()] < 2:
            continue
        rest = [j for j in range(len(keys)) if j != i]
        s = zero_shot[i] + cache_scores(keys[i:i + 1], keys[rest], values[rest], alpha, beta)[0]
        hits += int(s.argmax() == values[i].argmax())
        n += 1
    return hits / n


def test_leave_one_out_uses_the_cache_when_zero_shot_is_wrong():
    keys, y, names, centres = _clustered()
    label_names = ["c0", "c1", "c2"]
    # each class's text points at the next class's images, with CLIP-like small cosine gaps between labels
    zero_shot = 0.25 + 0.05 * (keys @ centres.roll(1, dims=0).T)
    alpha, beta, acc, zs_acc = leave_one_out_search(keys, one_hot_values(names, label_names), zero_shot, 50.0)
    assert zs_acc == 0.0
    assert alpha > 0 and acc == 1.0
    assert acc == pytest.approx(_loo_accuracy_by_loop(keys, names, label_names, zero_shot, alpha, beta))


def test_leave_one_out_keeps_the_cache_weak_when_it_only_adds_noise():
    g = torch.Generator().manual_seed(1)
    keys = F.normalize(torch.randn(12, 16, generator=g), dim=-1)  # images that say nothing about their class
    names = [f"c{i % 3}" for i in range(12)]
    label_names = ["c0", "c1", "c2"]
    values = one_hot_values(names, label_names)
    zero_shot = 0.25 + 0.01 * values  # zero-shot is right for every example, by a small cosine margin
    alpha, beta, acc, zs_acc = leave_one_out_search(keys, values, zero_shot, 50.0)
    assert zs_acc == 1.0 and acc == 1.0
    assert _loo_accuracy_by_loop(keys, names, label_names, zero_shot, 10.0, 0.5) < 1.0  # a strong cache hurts
    assert alpha <= 0.5


def test_single_example_per_class_takes_the_smallest_alpha_that_fits_the_examples():
    keys, y, names, centres = _clustered(n_per=1)
    label_names = ["c0", "c1", "c2"]
    right = fit_cache(keys, names, label_names, keys @ centres.T, 50.0)  # zero-shot already right: no cache
    assert (right.alpha, right.beta, right.chosen_by) == (0.0, DEFAULT_BETA, "fitted")
    wrong = 0.25 + 0.05 * (keys @ centres.roll(1, dims=0).T)  # zero-shot wrong on every example
    fit = fit_cache(keys, names, label_names, wrong, 50.0)
    assert fit.chosen_by == "fitted" and fit.alpha > 0
    assert ((wrong + fit.scores(keys)).argmax(1) == y).all()
    smaller = [a for a in ALPHA_GRID if a < fit.alpha]  # and no smaller alpha on the grid would have done
    assert all(((wrong + cache_scores(keys, keys, fit.values, a, fit.beta)).argmax(1) != y).any() for a in smaller)
    given = fit_cache(keys, names, label_names, keys @ centres.T, 50.0, alpha=0.3, beta=2.0)
    assert (given.alpha, given.beta, given.chosen_by) == (0.3, 2.0, "given")


def test_tip_f_changes_keys_and_does_not_lower_leave_one_out_accuracy():
    keys, y, names, centres = _clustered(n_per=6, classes=4, noise=2.5, seed=3)
    label_names = [f"c{i}" for i in range(4)]
    values = one_hot_values(names, label_names)
    zero_shot = keys @ F.normalize(centres + 1.5 * torch.randn(centres.shape, generator=torch.Generator()
                                                                 .manual_seed(5)), dim=-1).T
    alpha, beta, before, _ = leave_one_out_search(keys, values, zero_shot, 50.0, alphas=(2.0,), betas=(5.5,))
    tuned = finetune_keys(keys, values, zero_shot, 50.0, alpha, beta, steps=100, lr=1e-2)
    assert (tuned - keys).abs().max() > 1e-3
    assert torch.allclose(tuned.norm(dim=-1), torch.ones(len(tuned)), atol=1e-5)
    _, _, after, _ = leave_one_out_search(tuned, values, zero_shot, 50.0, alphas=(2.0,), betas=(5.5,))
    assert before < 1.0  # room to improve
    assert after >= before
    fit = fit_cache(keys, names, label_names, zero_shot, 50.0, alpha=2.0, beta=5.5, finetune_steps=100)
    assert fit.finetune_steps == 100 and (fit.keys - keys).abs().max() > 0


def test_select_shots_is_per_class_and_seeded():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 7)
    idx = select_shots(labels, 4, seed=0)
    assert np.bincount(labels[idx]).tolist() == [4, 3, 4]
    assert np.array_equal(idx, select_shots(labels, 4, seed=0))
    assert not np.array_equal(idx, select_shots(labels, 4, seed=1))
    assert len(select_shots(labels, None)) == 20
    with pytest.raises(SnapsightError):
        select_shots(labels, 0)


# ------------------------------------------------------------------------------------------------ classifier


def test_no_examples_is_exactly_zero_shot(clf):
    ims = random_images(5, seed=2)
    plain = clf.classify(ims, LABELS, top_k=4)
    for empty in ({}, {"cat": []}):
        adapted = clf.with_examples(empty).classify(ims, LABELS, top_k=4)
        assert [r.to_dict() for r in adapted] == [r.to_dict() for r in plain]
    assert clf.cache_adapter is None  # with_examples returned a copy


def test_an_image_that_is_its_own_example_gets_its_label(clf):
    ex = colour_examples(per=2)
    images = [im for ims in ex.values() for im in ims]
    truth = [name for name, ims in ex.items() for _ in ims]
    plain = [r.labels[0] for r in clf.classify(images, LABELS)]
    assert len(set(plain)) == 1  # zero-shot alone gives the same label to every colour
    fs = clf.with_examples(ex)
    results = fs.classify(images, LABELS, top_k=4)
    assert [r.labels[0] for r in results] == truth
    fit = fs.cache_adapter.fit(*clf.label_index(LABELS), clf.logit_scale)
    assert fit.chosen_by == "leave-one-out" and fit.loo_accuracy > fit.loo_zero_shot_accuracy
    for r in results:  # cosines shown stay the zero-shot ones; probabilities carry the cache
        assert abs(sum(r.probs) - 1) < 1e-5
    # one example per label: nothing to choose the weights on by leave-one-out, so they are given
    one_shot = clf.with_examples({k: v[:1] for k, v in ex.items()}, alpha=30.0, beta=12.0)
    assert [r.labels[0] for r in one_shot.classify(images[::2], LABELS)] == truth[::2]


def test_labels_without_examples_keep_their_zero_shot_score(clf):
    ex = colour_examples(per=2)
    images = random_images(3, seed=4)
    plain = clf.classify(images, LABELS, top_k=4)
    adapted = clf.with_examples({"cat": ex["cat"]}, alpha=1.0, beta=5.5).classify(images, LABELS, top_k=4)
    for p, a in zip(plain, adapted):
        assert dict(zip(p.labels, p.scores)) == pytest.approx(dict(zip(a.labels, a.scores)))
        ratio = [dict(zip(a.labels, a.probs))[n] / dict(zip(p.labels, p.probs))[n] for n in ("sunset", "pizza")]
        assert ratio[0] == pytest.approx(ratio[1], rel=1e-4)  # only "cat" moved against the others


def test_example_labels_not_among_the_labels_are_an_error(clf):
    ex = colour_examples(per=1)
    with pytest.raises(SnapsightError, match="'dog'"):
        clf.with_examples({"cat": ex["cat"], "dog": ex["pizza"]}).classify(ex["cat"], LABELS)


def test_multi_label_with_examples_is_refused(clf):
    with pytest.raises(SnapsightError, match="single-label"):
        clf.with_examples(colour_examples(per=1)).classify(random_images(1), LABELS, multi_label=True)


def test_cache_is_saved_and_reused_and_rebuilt_when_a_file_changes(clf, tmp_path):
    folder = _save_folder(tmp_path / "examples", colour_examples(per=2))
    first = clf.with_examples(str(folder)).cache_adapter.cache
    second = clf.with_examples(str(folder)).cache_adapter.cache
    assert not first.from_cache and second.from_cache
    assert torch.equal(first.keys, second.keys) and first.names == second.names
    path = folder / "cat" / "0.png"
    colour_examples(per=1, seed=9)["pizza"][0].save(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = clf.with_examples(str(folder)).cache_adapter.cache
    assert not third.from_cache and not torch.equal(third.keys, first.keys)
    shots = clf.with_examples(str(folder), shots=1, seed=0).cache_adapter.cache
    assert len(shots) == len(COLOURS) and not shots.from_cache


def test_unreadable_examples_are_skipped_with_a_note(clf, tmp_path):
    folder = _save_folder(tmp_path / "examples", colour_examples(per=2))
    (folder / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    fs = clf.with_examples(str(folder))
    assert len(fs.cache_adapter) == 2 * len(COLOURS)
    assert any("could not be read" in n and "broken.jpg" in n for n in fs.notes)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_classifies_with_examples(capsys, tiny_open_clip_dir, tmp_path):
    ex = colour_examples(per=3)
    folder = _save_folder(tmp_path / "examples", {k: v[:2] for k, v in ex.items()})
    queries = tmp_path / "queries"
    queries.mkdir()
    for name, ims in ex.items():
        ims[2].save(queries / f"{name}.png")  # not an example itself: a new image of the same colour
    argv = ["classify", str(queries), "--labels", ", ".join(LABELS), "--model", str(tiny_open_clip_dir),
            "--format", "json", "--no-progress", "--examples", str(folder)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert {os.path.basename(r["image"]): r["labels"][0] for r in rows} == {f"{n}.png": n for n in COLOURS}
    assert "8 example(s) in the cache" in err and "chosen by leave-one-out" in err
    assert main(argv + ["--shots", "1", "--alpha", "1", "--beta", "5.5", "--finetune-steps", "5"]) == 0
    out, err = capsys.readouterr()
    assert "4 example(s) in the cache, keys fine-tuned for 5 steps; alpha 1, beta 5.5 (given" in err


@pytest.mark.parametrize("extra, message", [
    (["--labels", "cat, sunset"], "not among the labels: 'bicycle', 'pizza'"),
    (["--labels", ", ".join(LABELS), "--multi-label"], "single-label"),
    (["--labels", ", ".join(LABELS), "--alpha", "-1"], "--alpha must be"),
])
def test_cli_example_errors_are_one_line(capsys, tiny_open_clip_dir, tmp_path, extra, message):
    folder = _save_folder(tmp_path / "examples", colour_examples(per=1))
    query = tmp_path / "q.png"
    random_images(1)[0].save(query)
    code = main(["classify", str(query), "--model", str(tiny_open_clip_dir), "--examples", str(folder), *extra])
    out, err = capsys.readouterr()
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err


def test_cli_example_options_need_examples(capsys, tiny_open_clip_dir, tmp_path):
    query = tmp_path / "q.png"
    random_images(1)[0].save(query)
    code = main(["classify", str(query), "--model", str(tiny_open_clip_dir), "--labels", "cat, dog", "--shots", "2"])
    _, err = capsys.readouterr()
    assert code == 2 and "error: --shots needs --examples SOURCE" in err


def test_examples_score_every_label_with_an_hnsw_label_index(clf, tiny_open_clip_dir):
    from snapsight.zeroshot.classify import ZeroShotConfig
    from snapsight.zeroshot.index import IndexConfig

    hnsw = ZeroShotClassifier.load(str(tiny_open_clip_dir), device="cpu", precision="fp32",
                                   config=ZeroShotConfig(index=IndexConfig(kind="hnsw", hnsw_candidates=1)))
    ex = colour_examples(per=2)
    images = [ims[0] for ims in ex.values()]
    flat = clf.with_examples(ex).classify(images, LABELS, top_k=4)
    approx = hnsw.with_examples(ex).classify(images, LABELS, top_k=4)
    assert [r.labels for r in approx] == [r.labels for r in flat]  # not only the one nearest label's candidates
    np.testing.assert_allclose([r.probs for r in approx], [r.probs for r in flat], atol=1e-5)
