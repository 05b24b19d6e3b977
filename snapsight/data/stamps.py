"""Tux Paint's stamps (Debian ``tuxpaint-stamps-default``): ~800 cut-out pictures, many of them photographs, each
with a one-line English description in a ``.txt`` beside it ("A red kangaroo."), in topic folders (animals, food,
plants, vehicles, clothes, household, people, sports, space, town, ...).

:func:`list_stamps` reads the PNG stamps (the SVG ones need an SVG renderer that snapsight does not depend on) with
their description, name, topic and folder words. :func:`stamp_wordnet_words` adds WordNet synonyms and a hypernym of
each stamp's noun, with the sense *chosen* under its topic's anchor synsets (an animal sense for a stamp in
``animals/``, clothing for ``clothes/``), never WordNet's first sense blindly. :func:`render_stamp` composites the
cut-out onto a plain background, as the emoji are.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from ..errors import SnapsightError
from .images import open_image
from .wordnet import Synset, WordNet

STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")

# Anchor synsets per topic folder, as (lemma, WordNet 3 sense number), in tiers: a stamp's noun takes its most
# frequent sense under the first tier that has one. Sense numbers are checked against their glosses in the tests.
TOPIC_ANCHORS: dict[str, tuple[tuple[tuple[str, int], ...], ...]] = {
    "animals": ((("animal", 1),),),
    "cartoon": ((("animal", 1), ("person", 1)), (("artifact", 1),)),
    "clothes": ((("clothing", 1), ("headdress", 1), ("accessory", 1)), (("artifact", 1),)),
    "food": ((("food", 1), ("food", 2), ("plant part", 1)), (("plant", 2),)),
    "hobbies": ((("artifact", 1),),),
    "household": ((("artifact", 1),),),
    "medical": ((("artifact", 1),), (("physical entity", 1),)),
    "military": ((("vehicle", 1),), (("artifact", 1),)),
    "naturalforces": ((("natural phenomenon", 1), ("natural object", 1)), (("physical entity", 1),)),
    "people": ((("person", 1), ("body part", 1)), (("artifact", 1),)),
    "plants": ((("plant", 2), ("plant part", 1)), (("organism", 1),)),
    "seasonal": ((("artifact", 1), ("food", 1), ("food", 2)), (("plant", 2),)),
    "space": ((("celestial body", 1),), (("natural object", 1), ("artifact", 1))),
    "sports": ((("artifact", 1),), (("act", 2),)),
    "symbols": (),  # letters, coins and signs: their nouns' WordNet senses are rarely the picture
    "town": ((("structure", 1), ("conveyance", 3)), (("artifact", 1),)),
    "vehicles": ((("conveyance", 3),), (("artifact", 1),)),
}
_ARTICLE = re.compile(r"^(a|an|the|some)\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Stamp:
    """One stamp: ``path`` of its PNG, ``key`` (path relative to the stamps folder, the split's id), its English
    ``description`` (first sentence of the ``.txt``), ``name`` (the description without article and full stop,
    lower case), ``topic`` (top folder) and ``folders`` (the sub-folder words, e.g. ``("birds",)``)."""

    path: Path
    key: str
    description: str
    name: str
    topic: str
    folders: tuple[str, ...]

    @property
    def stem_words(self) -> str:
        """The file name as words: ``"adelaide-rosella.png"`` -> ``"adelaide rosella"`` (digits dropped)."""
        words = re.split(r"[\s_\-.]+", re.sub(r"\d+", " ", self.path.stem.lower()))
        return " ".join(w for w in words if len(w) > 1)


def find_stamps_dir(path: str | os.PathLike | None = None) -> Path:
    """The Tux Paint stamps folder, or a one-sentence error saying how to install it."""
    p = Path(path) if path else Path(os.environ.get("SNAPSIGHT_STAMPS", STAMPS_DIR))
    if not p.is_dir():
        raise SnapsightError(f"the Tux Paint stamps are not at {p}: install them with "
                             "`apt-get install tuxpaint-stamps-default` or set SNAPSIGHT_STAMPS to their folder")
    return p


def _first_sentence(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = line.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
    m = re.match(r"(.+?[.!?])(\s|$)", line)
    return (m.group(1) if m else line).strip()


def stamp_name(description: str) -> str:
    """``"A red kangaroo."`` -> ``"red kangaroo"``: lower case, no leading article, no closing full stop."""
    s = _ARTICLE.sub("", description.strip()).rstrip(".!? ")
    return re.sub(r"\s+", " ", s).lower()


def list_stamps(root: str | os.PathLike | None = None) -> list[Stamp]:
    """Every PNG stamp with an English description, sorted by ``key``. Mirrored twins (``*_mirror.png``) and
    stamps without a ``.txt`` are skipped."""
    root = find_stamps_dir(root)
    out = []
    for p in sorted(root.rglob("*.png")):
        if p.stem.endswith("_mirror") or ".thumb" in p.name:
            continue
        txt = p.with_suffix(".txt")
        if not txt.is_file():
            continue
        desc = _first_sentence(txt.read_text(encoding="utf-8", errors="replace"))
        rel = p.relative_to(root)
        parts = rel.parts[:-1]
        if not desc or not parts:
            continue
        folders = tuple(f.replace("_", " ") for f in parts[1:] if f != "cartoon")
        out.append(Stamp(p, rel.as_posix(), desc, stamp_name(desc), parts[0], folders))
    if not out:
        raise SnapsightError(f"{root}: no PNG stamp with a .txt description (is tuxpaint-stamps-default installed?)")
    return out


def render_stamp(stamp: Stamp | str | os.PathLike, pad_fraction: float = 0.06) -> Image.Image:
    """The stamp's cut-out on white (as :func:`~snapsight.data.images.open_image` composites transparency),
    cropped to the picture and centred in a square with a small margin, RGB."""
    path = stamp.path if isinstance(stamp, Stamp) else Path(stamp)
    img = open_image(path)
    box = ImageOps.invert(img.convert("L")).getbbox()  # the non-white part
    if box is not None:
        img = img.crop(box)
    side = int(max(img.size) * (1 + 2 * pad_fraction)) + 1
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return square


def topic_anchors(wn: WordNet, topic: str) -> list[list[Synset]]:
    """The anchor synsets of ``topic`` in tiers (see :data:`TOPIC_ANCHORS`); unknown topics have none."""
    return [[wn.sense(w, n) for w, n in tier] for tier in TOPIC_ANCHORS.get(topic, ())]


_NOT_NOUNS = {"photo", "cartoon", "toy", "silo", "new", "old", "profile", "mirror", "left", "right"}


def _candidate_nouns(stamp: Stamp) -> list[str]:
    """Phrases that may name the stamp's thing, best first: each part of the name ("pair of cherries" -> the part
    after "of" first), then the file name's words, each part read from its longest tail ("red kangaroo", then
    "kangaroo")."""
    parts: list[str] = []
    for clause in re.split(r"[,;(\u2014\-]| called | with | in | on | is | means | lets | to ", stamp.name)[:1]:
        before, sep, after = clause.partition(" of ")
        parts += [after, before] if sep else [before]
    parts.append(" ".join(w for w in stamp.stem_words.split() if w not in _NOT_NOUNS))
    out: list[str] = []
    for phrase in parts:
        words = re.findall(r"[a-z][a-z']*", phrase.lower())
        out += [" ".join(words[i:]) for i in range(len(words))]
    return list(dict.fromkeys(c for c in out if c))


def stamp_sense(wn: WordNet, stamp: Stamp) -> tuple[str, Synset] | None:
    """``(noun, synset)`` for the stamp: the first candidate noun (:func:`_candidate_nouns`) that has a sense under
    the topic's anchors, taking its most frequent such sense. A sub-folder word that itself has a sense under the
    topic ("fish" in ``animals/fish``) is tried first as a narrower anchor, so a seahorse in ``fish/`` is the fish,
    not the walrus. ``None`` when no candidate has one (the stamp then gets no WordNet words)."""
    tiers = topic_anchors(wn, stamp.topic)
    if not tiers:
        return None
    narrow = []
    for folder in stamp.folders:
        senses = [s for tier in tiers[:1] for s in wn.senses_under(folder, tier)]
        narrow += senses[:1]
    candidates = _candidate_nouns(stamp)
    for tier in ([narrow] if narrow else []) + tiers:
        for noun in candidates:
            senses = wn.senses_under(noun, tier)
            if senses:
                return noun, senses[0]
    return None


def stamp_wordnet_words(wn: WordNet, stamp: Stamp) -> tuple[list[str], list[str]]:
    """``(synonyms, hypernyms)`` of the stamp's chosen sense (:func:`stamp_sense`): the synset's dominant words
    other than the noun itself, and the dominant words of its direct hypernyms. Empty when no sense was chosen."""
    found = stamp_sense(wn, stamp)
    if found is None:
        return [], []
    noun, sense = found
    synonyms = [w for w in wn.dominant_words(sense) if w.lower() != noun]
    hypernyms = [w for h in wn.hypernyms(sense) for w in wn.dominant_words(h)[:1]]
    return synonyms, hypernyms


def split_stamps(stamps: Sequence[Stamp], fraction: float = 0.1, seed: int = 0) -> tuple[list[Stamp], list[Stamp]]:
    """Deterministic ``(train, held_out)`` split by a hash of each stamp's ``key`` (its path under the stamps
    folder), so the split does not depend on which other stamps are installed."""
    import hashlib

    def score(s: Stamp) -> float:
        h = hashlib.sha256(f"{seed}:{s.key}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    return [s for s in stamps if score(s) >= fraction], [s for s in stamps if score(s) < fraction]
