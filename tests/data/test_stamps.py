"""Tux Paint stamps: listing (descriptions, names, topics), the deterministic held-out split, rendering, and the
WordNet sense chosen under a stamp's topic."""
from __future__ import annotations

import pytest
from PIL import Image

from snapsight.data.stamps import STAMPS_DIR, Stamp, list_stamps, render_stamp, split_stamps, stamp_name
from snapsight.data.wordnet import WORDNET_DIR
from snapsight.errors import SnapsightError


def _stamp(root, rel: str, text: str | None, size=(40, 20)):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGBA", (100, 80), (0, 0, 0, 0))
    img.paste(Image.new("RGBA", size, (200, 30, 30, 255)), (10, 30))
    img.save(path)
    if text is not None:
        path.with_suffix(".txt").write_text(text + "\nfr.utf8=Un kangourou rouge.\n", encoding="utf-8")
    return path


def test_lists_png_stamps_with_description_name_topic_and_folders(tmp_path):
    _stamp(tmp_path, "animals/marsupials/kangaroo.png", "A red kangaroo. It hops.")
    _stamp(tmp_path, "animals/marsupials/cartoon/koala-2.png", "A koala\u2019s baby.")
    _stamp(tmp_path, "animals/marsupials/kangaroo_mirror.png", "A red kangaroo.")  # a mirrored twin
    _stamp(tmp_path, "food/apple.png", None)  # no description: skipped
    stamps = list_stamps(tmp_path)
    assert [s.key for s in stamps] == ["animals/marsupials/cartoon/koala-2.png", "animals/marsupials/kangaroo.png"]
    koala, kangaroo = stamps
    assert kangaroo.description == "A red kangaroo." and kangaroo.name == "red kangaroo"
    assert kangaroo.topic == "animals" and kangaroo.folders == ("marsupials",)
    assert koala.name == "koala's baby" and koala.folders == ("marsupials",)  # "cartoon" is not a topic word
    assert koala.stem_words == "koala"
    assert stamp_name("An owl!") == "owl"


def test_missing_stamps_folder_is_one_sentence(tmp_path):
    with pytest.raises(SnapsightError, match="apt-get install tuxpaint-stamps-default"):
        list_stamps(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SnapsightError, match="no PNG stamp"):
        list_stamps(tmp_path / "empty")


def test_split_is_deterministic_by_path_and_disjoint(tmp_path):
    stamps = [Stamp(tmp_path / f"{i}.png", f"topic/{i}.png", "A thing.", "thing", "topic", ()) for i in range(300)]
    train, held = split_stamps(stamps)
    assert {s.key for s in held} == {s.key for s in split_stamps(stamps[::-1])[1]}  # order does not matter
    assert {s.key for s in held} == {s.key for s in split_stamps(stamps[:150])[1]} | {
        s.key for s in split_stamps(stamps[150:])[1]}  # each stamp's side depends on its own path only
    assert not {s.key for s in held} & {s.key for s in train} and 15 <= len(held) <= 50


def test_render_crops_the_cut_out_onto_a_white_square(tmp_path):
    path = _stamp(tmp_path, "x/box.png", "A box.", size=(40, 20))
    img = render_stamp(path)
    assert img.mode == "RGB" and img.width == img.height and 40 <= img.width <= 46
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((img.width // 2, img.height // 2)) == (200, 30, 30)


needs_data = pytest.mark.skipif(not (WORDNET_DIR / "data.noun").is_file() or not STAMPS_DIR.is_dir(),
                                reason="wordnet-base or tuxpaint-stamps-default not installed")


@needs_data
def test_real_stamp_senses_follow_their_folder():
    from snapsight.data.stamps import stamp_sense, stamp_wordnet_words
    from snapsight.data.wordnet import load_wordnet

    wn = load_wordnet()
    by_key = {s.key: s for s in list_stamps()}
    _, sense = stamp_sense(wn, by_key["animals/fish/seahorse.png"])
    assert "walrus" not in sense.words and wn.is_under(sense, [wn.sense("fish", 1)])
    _, hypernyms = stamp_wordnet_words(wn, by_key["clothes/hats/sombrero.png"])
    assert hypernyms == ["hat"]
