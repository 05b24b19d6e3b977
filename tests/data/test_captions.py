"""Image-text pair sources: CSV/TSV/JSONL tables, sidecar captions, HF datasets, class-labeled data."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image

from snapsight.data.captions import (
    ConcatPairs,
    class_captions,
    clean_class_name,
    in_memory_pairs,
    open_pairs,
    read_synonyms,
    repeat_pairs,
)
from snapsight.errors import SnapsightError


def _img(path, value=100):
    Image.fromarray(np.full((12, 12, 3), value, dtype=np.uint8)).save(path)


def test_tsv_as_open_clip_trainer_reads_it(tmp_path):
    (tmp_path / "imgs").mkdir()
    _img(tmp_path / "imgs" / "a.png")
    _img(tmp_path / "imgs" / "b.png", 200)
    (tmp_path / "train.csv").write_text("filepath\ttitle\nimgs/a.png\ta grey square\nimgs/b.png\ta light square\n")
    pairs = open_pairs(tmp_path / "train.csv")
    assert len(pairs) == 2
    assert pairs.caption(1) == "a light square"
    assert pairs.load(0).size == (12, 12) and pairs.load(0).mode == "RGB"
    assert (pairs.groups == -1).all()


def test_comma_csv_and_jsonl_with_alternative_captions(tmp_path):
    _img(tmp_path / "a.png")
    (tmp_path / "p.csv").write_text("image,caption\na.png,\"a square, grey\"\n")
    assert open_pairs(tmp_path / "p.csv").caption(0) == "a square, grey"
    (tmp_path / "p.jsonl").write_text(json.dumps({"image": "a.png", "caption": ["one", "two"]}) + "\n")
    pairs = open_pairs(tmp_path / "p.jsonl")
    assert pairs.captions[0] == ("one", "two")
    assert {pairs.caption(0, random.Random(s)) for s in range(20)} == {"one", "two"}


def test_table_without_caption_column_is_a_clear_error(tmp_path):
    (tmp_path / "p.csv").write_text("image,label\na.png,cat\n")
    with pytest.raises(SnapsightError, match="caption column"):
        open_pairs(tmp_path / "p.csv")


def test_sidecar_captions(tmp_path):
    _img(tmp_path / "x.jpg")
    _img(tmp_path / "y.jpg")
    (tmp_path / "x.txt").write_text("a photo of x\n\nanother caption of x\n")
    pairs = open_pairs(tmp_path)
    assert len(pairs) == 1  # y has no caption file
    assert pairs.captions[0] == ("a photo of x", "another caption of x")


def test_class_folders_become_template_captions_with_synonyms(tmp_path):
    for cls in ("ankle_boot", "bag"):
        (tmp_path / cls).mkdir()
        _img(tmp_path / cls / "1.png")
        _img(tmp_path / cls / "2.png")
    syn = tmp_path / "syn.txt"
    syn.write_text("# wordings\nbag: handbag | purse\n")
    assert read_synonyms(syn) == {"bag": ["handbag", "purse"]}
    pairs = open_pairs(tmp_path, templates=("a photo of a {}", "{}"), synonyms=read_synonyms(syn))
    assert len(pairs) == 4
    boot = [c for c, g in zip(pairs.captions, pairs.groups) if pairs.group_names[g] == "ankle_boot"][0]
    bag = [c for c, g in zip(pairs.captions, pairs.groups) if pairs.group_names[g] == "bag"][0]
    assert boot == ("a photo of a ankle boot", "ankle boot")
    assert set(bag) == {"a photo of a handbag", "a photo of a purse", "handbag", "purse"}
    assert sorted(set(pairs.groups.tolist())) == [0, 1]


def test_hf_dataset_with_image_and_text_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    imgs = [Image.fromarray(np.full((8, 8, 3), v, dtype=np.uint8)) for v in (10, 240)]
    ds = datasets.Dataset.from_dict({"image": imgs, "text": ["dark", "bright"]},
                                    features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")}))
    ds.save_to_disk(str(tmp_path / "hf"))
    pairs = open_pairs(tmp_path / "hf")
    assert [pairs.caption(i) for i in range(2)] == ["dark", "bright"]
    assert pairs.load(1).getpixel((0, 0)) == (240, 240, 240)


def test_clean_class_name_and_class_captions():
    assert clean_class_name("T-shirt/top") == "t-shirt or top"
    caps = class_captions(["Bag"], ("{}", "a {}"), {"Bag": ["purse"]})
    assert caps == [("purse", "a purse")]


def test_concat_and_repeat_keep_groups_apart():
    a = in_memory_pairs("a", [np.zeros((4, 4, 3), np.uint8)] * 2, [("x",), ("y",)], [0, 1], ["x", "y"])
    b = in_memory_pairs("b", [np.zeros((4, 4, 3), np.uint8)], [("z",)], [0], ["z"])
    both = ConcatPairs([a, repeat_pairs(b, 3)])
    assert len(both) == 5
    assert both.groups.tolist() == [0, 1, 2, 2, 2]
    assert both.group_names == ["x", "y", "z"]
    assert both.load(4).size == (4, 4)


def test_unknown_spec_is_a_clear_error(tmp_path):
    with pytest.raises(SnapsightError, match="not found"):
        open_pairs(tmp_path / "missing.csv")
