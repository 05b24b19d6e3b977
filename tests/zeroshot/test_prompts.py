import pytest

from snapsight.errors import SnapsightError
from snapsight.labels import (
    CLIP80_TEMPLATES,
    MAX_LABEL_CHARS,
    TEMPLATE_SETS,
    builtin_label_set,
    list_builtin_label_sets,
    load_label_set,
    parse_labels,
    resolve_templates,
)


def test_comma_list_is_cleaned_with_notes():
    labels, notes = parse_labels("  cat,sunset ,, pizza,   Cat , hot   dog ")
    assert labels == ["cat", "sunset", "pizza", "hot dog"]
    assert any("empty" in n for n in notes)
    assert any("duplicate" in n and "'Cat'" in n for n in notes)


def test_newline_text_keeps_commas_inside_labels():
    labels, _ = parse_labels("tench, Tinca tinca\ngoldfish\n\n# a comment\nshark")
    assert labels == ["tench, Tinca tinca", "goldfish", "shark"]


@pytest.mark.parametrize("text", ["", "   ", ",, ,", "\n\n", "# only a comment"])
def test_no_labels_raises_user_error(text):
    with pytest.raises(SnapsightError, match="no labels"):
        parse_labels(text)


def test_synonyms_quoted_prompts_and_per_label_templates():
    ls = load_label_set('cat: kitty | "a photo of my cat" | a {} on a sofa\ndog | puppy')
    cat, dog = ls.labels
    assert (cat.name, cat.names, cat.prompts, cat.templates) == (
        "cat", ("cat", "kitty"), ("a photo of my cat",), ("a {} on a sofa",))
    assert dog.names == ("dog", "puppy")
    texts = cat.texts(("a photo of a {}.",))
    assert texts == ["a photo of a cat.", "a photo of a kitty.", "a cat on a sofa", "a kitty on a sofa",
                     "a photo of my cat"]


def test_python_list_is_taken_literally():
    ls = load_label_set(["Re: Zero", "a | b", " x  "])
    assert ls.names == ["Re: Zero", "a | b", "x"]


def test_non_english_and_emoji_labels_are_kept():
    labels, notes = parse_labels("猫, Straßenbahn, кошка, 🍕, chat noir")
    assert labels == ["猫", "Straßenbahn", "кошка", "🍕", "chat noir"]
    assert notes == []


def test_very_long_label_is_truncated_with_a_note():
    long = "very " * 200 + "long label"
    labels, notes = parse_labels(f"cat, {long}")
    assert len(labels[1]) <= MAX_LABEL_CHARS + 1
    assert any("truncated" in n for n in notes)


def test_hundred_thousand_labels_parse():
    text = "\n".join(f"label number {i}" for i in range(100_000))
    labels, notes = parse_labels(text)
    assert len(labels) == 100_000 and notes == [] and labels[-1] == "label number 99999"


def test_labels_file_and_text_merge(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("\ufeffcat: kitty\n# comment\ndog\n", encoding="utf-8")
    ls = load_label_set("dog, bird", labels_file=f)
    assert ls.names == ["cat", "dog", "bird"]
    with pytest.raises(SnapsightError, match="not found"):
        load_label_set(None, labels_file=tmp_path / "missing.txt")


def test_builtin_sets():
    assert set(list_builtin_label_sets()) >= {"imagenet-1k", "cifar-10", "cifar-100", "fashion-mnist"}
    imagenet = builtin_label_set("imagenet-1k")
    assert len(imagenet) == 1000
    assert imagenet.names[0] == "tench" and imagenet.names[-1] == "toilet paper"
    assert len(set(imagenet.names)) == 1000  # the two repeated CLIP names are disambiguated for display
    dup = [lab for lab in imagenet.labels if lab.name.endswith("(2)")]
    assert sorted(lab.names[0] for lab in dup) == ["missile", "sunglasses"]
    assert len(builtin_label_set("CIFAR10")) == 10
    assert len(load_label_set("builtin:cifar-100")) == 100
    assert load_label_set("builtin:fashion-mnist").names[0] == "T-shirt/top"
    with pytest.raises(SnapsightError, match="available"):
        builtin_label_set("mnist-9000")


def test_builtin_imagenet_matches_open_clip():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    assert [lab.names[0] for lab in builtin_label_set("imagenet-1k").labels] == list(IMAGENET_CLASSNAMES)


def test_templates():
    assert resolve_templates("none") == ("{}",)
    assert len(resolve_templates("clip80")) == 80 == len(CLIP80_TEMPLATES)
    assert CLIP80_TEMPLATES[0] == "a bad photo of a {}."
    assert resolve_templates(None) == TEMPLATE_SETS["default"]
    assert resolve_templates(["itap of a {}."]) == ("itap of a {}.",)
    with pytest.raises(SnapsightError, match="unknown template set"):
        resolve_templates("clip81")
    with pytest.raises(SnapsightError, match="placeholder"):
        resolve_templates(["no placeholder"])


def test_template_text_files_equal_open_clip_templates():
    """The template sets are kept as text so label parsing never imports open_clip; they must stay open_clip's."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    from snapsight.labels import SIMPLE_TEMPLATES

    assert CLIP80_TEMPLATES == tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
    assert SIMPLE_TEMPLATES == tuple(t("{}") for t in SIMPLE_IMAGENET_TEMPLATES)


def test_label_parsing_imports_no_open_clip():
    import subprocess
    import sys

    code = ("import sys, snapsight.labels as L; L.load_label_set('cat, dog'); L.resolve_templates('clip80'); "
            "print(sorted(m for m in ('open_clip', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
