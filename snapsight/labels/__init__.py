"""Label sets and prompt templates for zero-shot classification.

A *label set* is what the user types (``"cat, sunset, pizza"``), a text file (one label per line),
or a built-in class list (``builtin:imagenet-1k``). Each label becomes one or more *prompts*
(``"a photo of a cat."``); its embedding is the normalised mean of its prompts' embeddings, as in
CLIP's prompt ensembling (Radford et al. 2021, sec. 3.1.4) and open_clip's
``build_zero_shot_classifier``.

Label syntax (one label per line in files; comma-separated on one line)::

    cat                                  # plain label: every template applied to "cat"
    cat: kitty | kitten                  # synonyms: templates applied to "cat", "kitty" and "kitten"
    cat | kitty                          # same, without the colon
    cat: "a photo of my cat" | kitty     # a quoted text is a complete prompt, used verbatim
    cat: a {} on a sofa                  # a text containing {} is a template for this label only

Templates (global or per label) are plain text with exactly one ``{}``, filled by plain substitution
(:func:`fill_template`); any other brace is refused (:func:`check_template`).

Lines starting with ``#`` are comments. Labels are cleaned: surrounding/multiple whitespace is
collapsed, empty ones dropped, duplicates (case-insensitive) merged, very long ones truncated; each
change produces a note for the user. Any language is fine (what the model understands is up to
the model).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import SnapsightError


def _read_templates(name: str) -> tuple[str, ...]:
    text = (resources.files(__package__) / "templates" / f"{name}.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line.strip())


# CLIP's 80 ImageNet templates (Radford et al. 2021), the same strings as open_clip's OPENAI_IMAGENET_TEMPLATES;
# kept as text so that label parsing never imports open_clip (tests/zeroshot/test_prompts.py compares them).
CLIP80_TEMPLATES: tuple[str, ...] = _read_templates("clip80")
# The 7-template subset that CLIP's prompt-engineering notebook found nearly as good as all 80.
SIMPLE_TEMPLATES: tuple[str, ...] = _read_templates("simple")
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "none": ("{}",),
    "default": ("a photo of a {}.",) + SIMPLE_TEMPLATES,
    "clip80": CLIP80_TEMPLATES,
}


BUILTIN_PREFIX = "builtin:"
MAX_LABEL_CHARS = 300  # longer labels are cut here; the tokenizer cuts again at the model's context length
MAX_TEMPLATE_CHARS = 300  # a prompt template longer than this is refused (the tokenizer would cut it anyway)
PLACEHOLDER = "{}"  # where the label goes in a template
MAX_NOTES = 20  # notes of one kind beyond this are summarised


@dataclass(frozen=True)
class Label:
    """One class: ``name`` is what results show; ``names`` go through the templates; ``prompts`` are verbatim.

    ``templates`` are extra templates for this label only (texts that contained ``{}``).
    """

    name: str
    names: tuple[str, ...]
    prompts: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()

    def texts(self, templates: Sequence[str]) -> list[str]:
        """All prompt strings for this label under the global ``templates``."""
        out = [fill_template(t, n) for t in (tuple(templates) + self.templates) for n in self.names]
        out += list(self.prompts)
        # dedupe while keeping order: "{}" with a verbatim prompt equal to the name would double-weight it
        return list(dict.fromkeys(out))


@dataclass
class LabelSet:
    """Parsed labels plus notes that tell the user what cleaning was done."""

    labels: list[Label]
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    def prompts(self, templates: Sequence[str]) -> tuple[list[str], list[int]]:
        """All prompt strings and, for each, the index of its label."""
        texts: list[str] = []
        owners: list[int] = []
        for i, label in enumerate(self.labels):
            for t in label.texts(templates):
                texts.append(t)
                owners.append(i)
        return texts, owners

    def key(self) -> list:
        """A JSON-able description used in index cache keys (changes whenever any prompt would change)."""
        return [[lab.name, list(lab.names), list(lab.prompts), list(lab.templates)] for lab in self.labels]


def check_template(template: str) -> str:
    """``template`` if it is plain text with exactly one ``{}`` and no other brace; else :class:`SnapsightError`.

    Templates are filled with :func:`fill_template` (``str.replace``), never ``str.format``: a format spec
    typed by a user (``{:>1000000000}``) would otherwise run on the server.
    """
    template = str(template)
    shown = template if len(template) <= 60 else template[:57] + "..."
    rest = template.replace(PLACEHOLDER, "", 1)
    if PLACEHOLDER not in template or "{" in rest or "}" in rest:
        raise SnapsightError(
            f"template {shown!r} must be plain text with exactly one {{}} where the label goes and no other braces"
        )
    if len(template) > MAX_TEMPLATE_CHARS:
        raise SnapsightError(
            f"template {shown!r} is {len(template):,} characters long; the most is {MAX_TEMPLATE_CHARS}")
    return template


def fill_template(template: str, text: str) -> str:
    """``template`` with its ``{}`` replaced by ``text`` (plain substitution; ``text`` may contain braces)."""
    return template.replace(PLACEHOLDER, text, 1)


def resolve_templates(templates: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"none"``/``"default"``/``"clip80"`` or an explicit list of ``{}``-templates -> tuple of templates."""
    if templates is None:
        templates = "default"
    if isinstance(templates, str):
        if templates in TEMPLATE_SETS:
            return TEMPLATE_SETS[templates]
        if "{" in templates or "}" in templates:
            return (check_template(templates),)
        shown = templates if len(templates) <= 60 else templates[:57] + "..."
        raise SnapsightError(
            f"unknown template set '{shown}'; use one of {', '.join(TEMPLATE_SETS)} or a text containing {{}}"
        )
    out = tuple(str(t) for t in templates)
    if not out:
        raise SnapsightError("the template list is empty; use templates='none' to embed labels as they are")
    return tuple(check_template(t) for t in out)


def list_builtin_label_sets() -> list[str]:
    files = resources.files(__package__) / "builtin"
    return sorted(p.name[: -len(".txt")] for p in files.iterdir() if p.name.endswith(".txt"))


def _normalise_builtin_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def builtin_label_set(name: str) -> LabelSet:
    """Built-in class lists, in their datasets' class-index order (``imagenet-1k``, ``cifar-10``, ...).

    Names are kept verbatim (no label syntax). ImageNet's CLIP-cleaned list has two repeated names
    (``missile``, ``sunglasses``): their second occurrence is shown as ``"missile (2)"`` but prompted
    with the plain name, so class indices stay aligned with the dataset.
    """
    available = list_builtin_label_sets()
    wanted = _normalise_builtin_name(name)
    match = [a for a in available if _normalise_builtin_name(a) == wanted]
    if not match:
        raise SnapsightError(f"unknown built-in label set '{name}'; available: {', '.join(available)}")
    text = (resources.files(__package__) / "builtin" / f"{match[0]}.txt").read_text(encoding="utf-8")
    labels: list[Label] = []
    seen: dict[str, int] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        seen[line] = seen.get(line, 0) + 1
        shown = line if seen[line] == 1 else f"{line} ({seen[line]})"
        labels.append(Label(name=shown, names=(line,)))
    return LabelSet(labels)


_WS = re.compile(r"\s+")


def _clean(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _parse_entry(entry: str) -> Label | None:
    """``"cat: kitty | \\"a photo of my cat\\""`` -> Label; None when the entry is empty."""
    entry = _clean(entry)
    if not entry:
        return None
    head, alternatives = entry, []
    if ": " in entry or entry.endswith(":"):
        head, rest = entry.split(":", 1)
        alternatives = rest.split("|")
    if "|" in head:
        head, *more = head.split("|")
        alternatives = more + alternatives
    name = _clean(head).strip('"')
    names, prompts, templates = [name] if name else [], [], []
    for alt in (_clean(a) for a in alternatives):
        if not alt:
            continue
        if len(alt) >= 2 and alt[0] == alt[-1] == '"':
            prompts.append(alt[1:-1])
        elif PLACEHOLDER in alt:
            templates.append(check_template(alt))
        else:
            names.append(alt)
    if not name:
        if not (names or prompts):
            return None
        name = names[0] if names else prompts[0]
    return Label(name=name, names=tuple(dict.fromkeys(names)), prompts=tuple(prompts), templates=tuple(templates))


def _truncate(label: Label, limit: int) -> Label:
    cut = lambda s: s if len(s) <= limit else s[:limit].rstrip() + "…"  # noqa: E731
    return Label(
        name=cut(label.name),
        names=tuple(cut(n) for n in label.names),
        prompts=tuple(cut(p) for p in label.prompts),
        templates=label.templates,
    )


def _summarise(kind: str, items: list[str]) -> list[str]:
    if not items:
        return []
    shown = ", ".join(repr(i if len(i) <= 40 else i[:37] + "...") for i in items[:5])
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return [f"{len(items)} {kind}: {shown}{more}"]


def split_label_text(text: str) -> list[str]:
    """One entry per line when ``text`` has several lines (commas then belong to labels), else comma-split."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    if len([ln for ln in lines if ln.strip()]) > 1:
        return lines
    return ",".join(lines).split(",") if lines else []


def build_label_set(entries: Iterable[str], parse_syntax: bool = True) -> LabelSet:
    """Clean a sequence of label entries into a :class:`LabelSet` with notes (see module docstring).

    With ``parse_syntax=False`` every entry is taken as a plain label name (used for Python lists,
    where ``"Re: Zero"`` should stay one label).
    """
    labels: list[Label] = []
    seen: set[str] = set()
    empty = 0
    duplicates: list[str] = []
    truncated: list[str] = []
    for entry in entries:
        entry = str(entry)
        if parse_syntax:
            label = _parse_entry(entry)
        else:
            name = _clean(entry)
            label = Label(name=name, names=(name,)) if name else None
        if label is None:
            empty += 1
            continue
        if len(label.name) > MAX_LABEL_CHARS or any(len(t) > MAX_LABEL_CHARS for t in label.names + label.prompts):
            truncated.append(label.name)
            label = _truncate(label, MAX_LABEL_CHARS)
        key = label.name.casefold()
        if key in seen:
            duplicates.append(label.name)
            continue
        seen.add(key)
        labels.append(label)
    notes: list[str] = []
    if empty:
        notes.append(f"ignored {empty} empty label{'s' if empty > 1 else ''}")
    notes += _summarise("duplicate labels merged (case-insensitive)", duplicates)
    notes += _summarise(f"labels longer than {MAX_LABEL_CHARS} characters truncated", truncated)
    return LabelSet(labels, notes)


def load_label_set(
    labels: str | Sequence[str] | LabelSet | None = None, labels_file: str | Path | None = None
) -> LabelSet:
    """Labels from text (comma/newline list or ``builtin:NAME``), a Python list, and/or a text file.

    Raises :class:`SnapsightError` when the result has no labels.
    """
    if isinstance(labels, LabelSet):
        result = labels
    else:
        parts: list[LabelSet] = []
        if labels_file is not None:
            path = Path(labels_file)
            if not path.is_file():
                raise SnapsightError(f"labels file not found: {path}")
            try:
                text = path.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as e:
                raise SnapsightError(f"labels file {path} is not UTF-8 text") from e
            lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
            parts.append(build_label_set(lines))
        if isinstance(labels, str):
            stripped = labels.strip()
            if stripped.startswith(BUILTIN_PREFIX):
                parts.append(builtin_label_set(stripped[len(BUILTIN_PREFIX):]))
            else:
                parts.append(build_label_set(split_label_text(labels)))
        elif labels is not None:
            parts.append(build_label_set(labels, parse_syntax=False))
        if len(parts) == 1:
            result = parts[0]
        else:  # text + file: merge, deduplicating across both
            merged = build_label_set([], parse_syntax=False)
            seen: set[str] = set()
            dup = 0
            for part in parts:
                merged.notes += part.notes
                for lab in part.labels:
                    if lab.name.casefold() in seen:
                        dup += 1
                        continue
                    seen.add(lab.name.casefold())
                    merged.labels.append(lab)
            if dup:
                merged.notes.append(f"{dup} labels given both in --labels and the labels file were merged")
            result = merged
    if not result.labels:
        raise SnapsightError(
            "no labels given: pass labels such as --labels \"cat, sunset, pizza\", a --labels-file with one "
            f"label per line, or a built-in set ({', '.join(BUILTIN_PREFIX + n for n in list_builtin_label_sets())})"
        )
    return result


def parse_labels(text: str) -> tuple[list[str], list[str]]:
    """Split ``text`` on commas (or newlines when it has several lines), clean it, and return ``(labels, notes)``.

    ``builtin:NAME`` returns that built-in set. Raises :class:`SnapsightError` when no label remains.
    """
    label_set = load_label_set(text)
    return label_set.names, label_set.notes
