"""Labeled sources: folder trees, CSV/JSONL, Hugging Face save_to_disk, Fashion-MNIST; checks and subsets."""
import json

import numpy as np
import pytest
from PIL import Image

from snapsight.data.labeled import align_classes, check_classes, load_labeled, stratified_fraction, stratified_split
from snapsight.errors import ImageError, SnapsightError


def _img(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    for cls, color in (("cat", "red"), ("dog", "blue"), ("class10", "green"), ("class2", "white")):
        for i in range(3):
            _img(root / cls / f"{i}.png", color)
    return root


def test_folder_tree(tree):
    ds = load_labeled(tree)
    assert ds.class_names == ["cat", "class2", "class10", "dog"]  # natural order
    assert len(ds) == 12 and ds.class_counts().tolist() == [3, 3, 3, 3]
    i = int(np.flatnonzero(ds.labels == ds.class_names.index("dog"))[0])
    assert ds.load(i).getpixel((0, 0)) == (0, 0, 255)
    assert "dog" in ds.describe(i)


def test_folder_tree_empty_class_and_loose_images(tmp_path, tree):
    (tree / "empty").mkdir()
    with pytest.raises(SnapsightError, match="'empty' hold no images"):
        load_labeled(tree)
    flat = tmp_path / "flat"
    _img(flat / "a.png", "red")
    with pytest.raises(SnapsightError, match="no class folders.*directly in it"):
        load_labeled(flat)


def test_csv_with_and_without_header(tmp_path):
    d = tmp_path / "csvdata"
    _img(d / "imgs" / "a.png", "red")
    _img(d / "imgs" / "b.png", "blue")
    (d / "with_header.csv").write_text("filename,class\nimgs/a.png,red thing\nimgs/b.png,blue thing\n")
    (d / "no_header.csv").write_text("imgs/a.png,r\nimgs/b.png,b\n")
    ds = load_labeled(d / "with_header.csv")
    assert ds.class_names == ["blue thing", "red thing"] and ds.labels.tolist() == [1, 0]
    assert ds.load(0).getpixel((0, 0)) == (255, 0, 0)  # path relative to the CSV's folder
    ds2 = load_labeled(d / "no_header.csv")
    assert ds2.class_names == ["b", "r"] and len(ds2) == 2
    (d / "bad.csv").write_text("path,label\nimgs/a.png,\n")
    with pytest.raises(SnapsightError, match="bad.csv:2"):
        load_labeled(d / "bad.csv")


def test_jsonl(tmp_path):
    _img(tmp_path / "x" / "a.png", "red")
    _img(tmp_path / "x" / "b.png", "blue")
    f = tmp_path / "labels.jsonl"
    f.write_text(json.dumps({"path": "x/a.png", "label": "red"}) + "\n\n" + json.dumps({"image": "x/b.png", "class": "blue"}) + "\n")
    ds = load_labeled(f)
    assert ds.class_names == ["blue", "red"] and ds.labels.tolist() == [1, 0]
    f.write_text('{"path": "x/a.png"}\n')
    with pytest.raises(SnapsightError, match="no label column"):
        load_labeled(f)


def test_hf_dataset_keeps_classlabel_names(tmp_path):
    import datasets

    feats = datasets.Features({"img": datasets.Image(), "target": datasets.ClassLabel(names=["zebra", "apple", "kiwi"])})
    imgs = [Image.new("RGB", (6, 6), c) for c in ("red", "green", "blue", "white")]
    ds = datasets.Dataset.from_dict({"img": imgs, "target": [0, 1, 2, 0]}, features=feats)
    datasets.DatasetDict({"train": ds, "test": ds.select([0, 1])}).save_to_disk(str(tmp_path / "hf"))
    ld = load_labeled(f"{tmp_path / 'hf'}:train")
    assert ld.class_names == ["zebra", "apple", "kiwi"]  # ClassLabel order, not sorted
    assert ld.labels.tolist() == [0, 1, 2, 0] and ld.load(2).getpixel((0, 0)) == (0, 0, 255)
    assert len(load_labeled(f"{tmp_path / 'hf'}:test")) == 2
    with pytest.raises(SnapsightError, match="has splits"):
        load_labeled(tmp_path / "hf")
    # a plain Dataset with string labels
    ds2 = datasets.Dataset.from_dict({"image": imgs[:2], "label": ["b", "a"]},
                                     features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")}))
    ds2.save_to_disk(str(tmp_path / "hf2"))
    ld2 = load_labeled(tmp_path / "hf2")
    assert ld2.class_names == ["a", "b"] and ld2.labels.tolist() == [1, 0]


def test_fashion_mnist_source():
    from snapsight.data.fashion_mnist import DEBIAN_PATH, is_fashion_mnist_dir

    if not is_fashion_mnist_dir(DEBIAN_PATH):
        pytest.skip("dataset-fashion-mnist not installed")
    ds = load_labeled("fashion-mnist:test")
    assert len(ds) == 10000 and ds.class_names[0] == "T-shirt/top"
    im = ds.load(0)
    assert im.mode == "RGB" and im.size == (28, 28)


def test_corrupt_image_raises_image_error(tmp_path, tree):
    (tree / "cat" / "broken.png").write_bytes(b"nope")
    ds = load_labeled(tree)
    bad = [i for i in range(len(ds)) if "broken" in ds.describe(i)][0]
    with pytest.raises(ImageError, match="broken.png"):
        ds.load(bad)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(SnapsightError, match="labeled data not found"):
        load_labeled(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(SnapsightError, match="unsupported labeled file type"):
        load_labeled(tmp_path / "x.txt")


def test_single_class_and_label_mismatch(tmp_path, tree):
    single = tmp_path / "single"
    _img(single / "only" / "a.png", "red")
    with pytest.raises(SnapsightError, match="single class"):
        check_classes(load_labeled(single))
    train = load_labeled(tree)
    other = tmp_path / "other"
    _img(other / "cat" / "a.png", "red")
    _img(other / "horse" / "a.png", "red")
    with pytest.raises(SnapsightError, match="labels do not match.*horse"):
        align_classes(train, load_labeled(other))
    partial = tmp_path / "partial"
    _img(partial / "dog" / "a.png", "blue")
    _img(partial / "cat" / "a.png", "red")
    aligned, notes = align_classes(train, load_labeled(partial))
    assert aligned.class_names == train.class_names
    assert [aligned.class_names[i] for i in aligned.labels] == ["cat", "dog"]
    assert notes and "class2" in notes[0]


def test_stratified_fraction_and_split():
    labels = np.repeat(np.arange(4), [100, 50, 10, 1])
    idx = stratified_fraction(labels, 0.1, seed=3)
    assert np.bincount(labels[idx]).tolist() == [10, 5, 1, 1]
    assert np.array_equal(idx, stratified_fraction(labels, 0.1, seed=3))  # fixed seed
    assert not np.array_equal(idx, stratified_fraction(labels, 0.1, seed=4))
    keep, held = stratified_split(labels, 0.2, seed=0)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == len(labels)
    assert np.bincount(labels[held], minlength=4).tolist() == [20, 10, 2, 0]
    with pytest.raises(SnapsightError):
        stratified_fraction(labels, 0)
