"""``--expand wordnet``: WordNet words added to each label's prompts, with the sense chosen among the labels."""
from __future__ import annotations

import pytest

from snapsight.data.wordnet import WORDNET_DIR
from snapsight.labels import load_label_set

pytestmark = pytest.mark.skipif(not (WORDNET_DIR / "data.noun").is_file(), reason="wordnet-base not installed")


def _names(text: str) -> dict[str, tuple[str, ...]]:
    from snapsight.zeroshot.expand import expand_labels_wordnet

    return {lab.name: lab.names for lab in expand_labels_wordnet(load_label_set(text)).labels}


def test_sense_is_chosen_among_the_other_labels():
    names = _names("jumper, gown, parka, boots, blouse")
    assert "sweater" in names["jumper"]  # not the person who jumps, WordNet's first sense
    assert names["parka"][0] == "parka" and "jacket" in names["parka"]  # own text first, then hypernym


def test_labels_without_a_visible_sense_or_related_sense_stay_as_typed():
    names = _names("astronaut, cat, dog")
    assert names["astronaut"] == ("astronaut",)  # only a person in WordNet
    assert _names("sliders, dress, coat, shirt")["sliders"] == ("sliders",)  # a turtle, unrelated to clothes


def test_a_hypernym_that_is_another_label_is_not_added():
    names = _names("t-shirts, shirts, dresses")
    assert "shirt" not in [n.casefold() for n in names["t-shirts"]]
    assert "shirt" in names["shirts"]


def test_classify_cli_prints_what_was_added(capsys, tiny_open_clip_dir, tmp_path):
    from snapsight.cli import main

    from .conftest import random_images

    random_images(1)[0].save(tmp_path / "a.png")
    code = main(["classify", str(tmp_path / "a.png"), "--labels", "jumper, gown", "--model", str(tiny_open_clip_dir),
                 "--expand", "wordnet", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0 and "note: WordNet expansion: jumper (+ sweater" in err
