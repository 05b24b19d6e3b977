"""The WordNet 3 reader: the plain-text format (a tiny database written here), morphy for plurals, sense choice
under an anchor, and, where Debian's wordnet-base is installed, the real senses the default model relies on."""
from __future__ import annotations

import pytest

from snapsight.data.wordnet import WORDNET_DIR, WordNet, find_wordnet_dir
from snapsight.errors import SnapsightError

# entity <- garment <- sweater/jumper ; entity <- person <- jumper (a person who jumps)
_SYNSETS = [
    ("entity", [], "that which exists"),
    ("garment", ["entity"], "an article of clothing"),
    ("person", ["entity"], "a human being"),
    ("jumper_person", ["person"], "a person who jumps"),
    ("sweater jumper", ["garment"], "a knitted garment"),
]


def write_tiny_wordnet(root) -> None:
    """index.noun / data.noun / noun.exc in WordNet's format, with real byte offsets."""
    lines: list[str] = []
    offsets: dict[str, int | None] = {key: None for key, _, _ in _SYNSETS}
    # two passes: offsets are 8 digits wide, so every line has the same length in both and the second pass
    # writes the pointers with the offsets the first one found
    for _ in range(2):
        pos = len(b"  1 licence header line\n")
        lines = []
        for key, parents, gloss in _SYNSETS:
            offsets[key] = pos
            words = ["jumper"] if key == "jumper_person" else key.split()
            children = [k for k, ps, _ in _SYNSETS if key in ps]
            ptrs = [f"@ {offsets[p] or 0:08d} n 0000" for p in parents]
            ptrs += [f"~ {offsets[c] or 0:08d} n 0000" for c in children]
            lexnum = 18 if "person" in key or key == "person" else 6
            line = (f"{pos:08d} {lexnum:02d} n {len(words):02x} " + " ".join(f"{w} 0" for w in words)
                    + f" {len(ptrs):03d} " + " ".join(ptrs) + f" | {gloss}  \n")
            lines.append(line)
            pos += len(line.encode())
    (root / "data.noun").write_text("  1 licence header line\n" + "".join(lines))
    senses = {"entity": ["entity"], "garment": ["garment"], "person": ["person"],
              "jumper": ["jumper_person", "sweater jumper"], "sweater": ["sweater jumper"]}
    index = "  1 licence header line\n" + "".join(
        f"{lemma} n {len(keys)} 1 @ {len(keys)} 0 " + " ".join(f"{offsets[k]:08d}" for k in keys) + "  \n"
        for lemma, keys in sorted(senses.items()))
    (root / "index.noun").write_text(index)
    (root / "noun.exc").write_text("jumpers jumper\n")


def test_reads_synsets_pointers_and_chooses_the_sense_under_an_anchor(tmp_path):
    write_tiny_wordnet(tmp_path)
    wn = WordNet(tmp_path)
    first, second = wn.synsets("jumper")
    assert first.words == ("jumper",) and first.lexname == "noun.person" and first.gloss == "a person who jumps"
    assert second.words == ("sweater", "jumper") and second.lexname == "noun.artifact"
    garment = wn.sense("garment", 1)
    assert wn.senses_under("jumper", [garment]) == [second]  # chosen, not the first sense
    assert wn.senses_under("Jumpers", [garment]) == [second]  # plural via noun.exc, case ignored
    assert [h.name for h in wn.hypernyms(second)] == ["garment"]
    assert [h.words for h in wn.hyponyms(garment)] == [("sweater", "jumper")]
    assert wn.dominant_words(second) == ["sweater"]  # "jumper" mostly means the person
    with pytest.raises(SnapsightError, match="2 noun senses of 'jumper', not a sense 3"):
        wn.sense("jumper", 3)


def test_missing_database_is_one_sentence_with_the_package_name(tmp_path):
    with pytest.raises(SnapsightError, match="apt-get install wordnet-base") as e:
        find_wordnet_dir(tmp_path / "none")
    assert "\n" not in str(e.value)


needs_wordnet = pytest.mark.skipif(not (WORDNET_DIR / "data.noun").is_file(), reason="wordnet-base not installed")


@needs_wordnet
def test_real_wordnet_senses_for_clothes_are_chosen_not_taken_first():
    from snapsight.data.wordnet import load_wordnet

    wn = load_wordnet()
    clothing = [wn.sense("clothing", 1)]
    assert wn.synsets("jumper")[0].lexname == "noun.person"  # the trap the issue names
    [sweater] = wn.senses_under("jumper", clothing)[:1]
    assert "sweater" in sweater.words
    assert wn.is_under(wn.senses_under("corduroys", clothing)[0], [wn.sense("trouser", 1)])
    assert wn.is_under(wn.senses_under("peacoat", clothing)[0], [wn.sense("coat", 1)])
    assert wn.senses_under("trainer", clothing) == []  # WordNet has no shoe sense of "trainer"
