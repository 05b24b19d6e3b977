"""A small reader of the WordNet 3 noun database in its plain text format (Debian ``wordnet-base``).

Reads ``index.noun`` (lemma -> synset offsets, most frequent sense first), ``data.noun`` (one synset per line,
found by its byte offset: words, pointers, gloss) and ``noun.exc`` (irregular plurals). Debian's package lacks the
``lexnames`` file that nltk's reader expects; the lexicographer file of a synset is its two-digit number in
``data.noun``, named here from WordNet's documented fixed table (``lexnames(5WN)``).

Senses are *chosen*, never taken first: WordNet's first sense of "jumper" is a person and of "trainer" a leader.
:meth:`WordNet.senses_under` keeps the senses whose hypernym closure reaches a given anchor synset (e.g. clothing),
which is how the default model's captions pick the garment sense.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import SnapsightError

WORDNET_DIR = Path("/usr/share/wordnet")

# lexnames(5WN), noun files only: the number stored in each data.noun line names the lexicographer file.
NOUN_LEXNAMES: dict[int, str] = {
    3: "noun.Tops", 4: "noun.act", 5: "noun.animal", 6: "noun.artifact", 7: "noun.attribute", 8: "noun.body",
    9: "noun.cognition", 10: "noun.communication", 11: "noun.event", 12: "noun.feeling", 13: "noun.food",
    14: "noun.group", 15: "noun.location", 16: "noun.motive", 17: "noun.object", 18: "noun.person",
    19: "noun.phenomenon", 20: "noun.plant", 21: "noun.possession", 22: "noun.process", 23: "noun.quantity",
    24: "noun.relation", 25: "noun.shape", 26: "noun.state", 27: "noun.substance", 28: "noun.time",
}
# Noun suffix rules of WordNet's morphy (morph(3WN)), tried in order when a word is not a lemma itself.
_NOUN_SUFFIXES = (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
                  ("ies", "y"), ("s", ""))
HYPERNYM_POINTERS = ("@", "@i")  # hypernym, instance hypernym
HYPONYM_POINTERS = ("~", "~i")


@dataclass(frozen=True)
class Synset:
    """One noun synset: its byte offset in ``data.noun`` (the id), words (spaces, not underscores), the
    lexicographer file, pointers ``(symbol, offset)`` to other noun synsets, and the gloss."""

    offset: int
    words: tuple[str, ...]
    lexname: str
    pointers: tuple[tuple[str, int], ...]
    gloss: str

    @property
    def name(self) -> str:
        """The first word, as a short readable id (``"sweater"``)."""
        return self.words[0]

    def related(self, symbols: Sequence[str]) -> list[int]:
        """Offsets of the synsets this one points to with any of ``symbols`` (e.g. ``("@",)``: hypernyms)."""
        return [o for s, o in self.pointers if s in symbols]


def find_wordnet_dir(path: str | os.PathLike | None = None) -> Path:
    """The WordNet 3 database folder, or a one-sentence error saying how to install it."""
    p = Path(path) if path else Path(os.environ.get("SNAPSIGHT_WORDNET", WORDNET_DIR))
    if not all((p / f).is_file() for f in ("index.noun", "data.noun")):
        raise SnapsightError(f"the WordNet database is not at {p}: install it with `apt-get install wordnet-base` "
                             "or set SNAPSIGHT_WORDNET to a folder holding index.noun and data.noun")
    return p


def _lemma_key(word: str) -> str:
    return re.sub(r"\s+", "_", word.strip().lower())


class WordNet:
    """Nouns of one WordNet database folder. Synsets are read from ``data.noun`` on demand (by byte offset)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = find_wordnet_dir(path)
        self._index: dict[str, tuple[int, ...]] = {}
        with open(self.path / "index.noun", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(" "):  # licence header
                    continue
                parts = line.split()
                # lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt synset_offset...
                n_synsets, n_ptr = int(parts[2]), int(parts[3])
                self._index[parts[0]] = tuple(int(o) for o in parts[6 + n_ptr:6 + n_ptr + n_synsets])
        self._exceptions: dict[str, list[str]] = {}
        exc = self.path / "noun.exc"
        if exc.is_file():
            for line in exc.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    self._exceptions.setdefault(parts[0], []).extend(parts[1:])
        self._data = open(self.path / "data.noun", "rb")  # noqa: SIM115 - held for the reader's life
        self._cache: dict[int, Synset] = {}

    def close(self) -> None:
        self._data.close()

    # ------------------------------------------------------------------ lookup
    def lemmas(self, word: str) -> list[str]:
        """The lemmas ``word`` may be an inflection of (morphy for nouns): itself, irregular plurals, suffixes."""
        w = _lemma_key(word)
        out = [w] if w in self._index else []
        out += [b for b in self._exceptions.get(w, []) if b in self._index]
        for suffix, repl in _NOUN_SUFFIXES:
            if w.endswith(suffix) and len(w) > len(suffix) + 1:
                base = w[: len(w) - len(suffix)] + repl
                if base in self._index:
                    out.append(base)
        return list(dict.fromkeys(out))

    def synsets(self, word: str) -> list[Synset]:
        """Every noun sense of ``word`` (or of its lemma), most frequent first (WordNet's order)."""
        return [self.synset(o) for lemma in self.lemmas(word) for o in self._index[lemma]]

    def synset(self, offset: int) -> Synset:
        """The synset stored at ``offset`` in ``data.noun``."""
        s = self._cache.get(offset)
        if s is None:
            self._data.seek(offset)
            s = _parse_data_line(self._data.readline().decode("utf-8", errors="replace"))
            if s.offset != offset:
                raise SnapsightError(f"{self.path / 'data.noun'}: no synset at byte {offset} (damaged database?)")
            self._cache[offset] = s
        return s

    def sense(self, word: str, number: int) -> Synset:
        """``word``'s ``number``-th sense (1-based, WordNet's ``word.n.NN``)."""
        senses = self._index.get(_lemma_key(word), ())
        if not 1 <= number <= len(senses):
            raise SnapsightError(f"WordNet has {len(senses)} noun senses of {word!r}, not a sense {number}")
        return self.synset(senses[number - 1])

    # ------------------------------------------------------------------ hierarchy
    def hypernym_closure(self, synset: Synset) -> set[int]:
        """Offsets of every ancestor of ``synset`` (hypernyms and instance hypernyms, transitively)."""
        return set(self._closure(synset.offset))

    @lru_cache(maxsize=65536)  # noqa: B019 - one reader per process; the cache lives as long as it does
    def _closure(self, offset: int) -> frozenset[int]:
        out: set[int] = set()
        for parent in self.synset(offset).related(HYPERNYM_POINTERS):
            out.add(parent)
            out |= self._closure(parent)
        return frozenset(out)

    def is_under(self, synset: Synset, anchors: Iterable[Synset]) -> bool:
        """Whether ``synset`` is one of ``anchors`` or below one of them."""
        ids = {a.offset for a in anchors}
        return synset.offset in ids or bool(self.hypernym_closure(synset) & ids)

    def senses_under(self, word: str, anchors: Sequence[Synset]) -> list[Synset]:
        """The senses of ``word`` below any of ``anchors`` (the sense choice), most frequent first."""
        return [s for s in self.synsets(word) if self.is_under(s, anchors)]

    def dominant_words(self, synset: Synset) -> list[str]:
        """The words of ``synset`` whose most frequent noun sense is this synset (so "white", whose first sense is
        a colour, is not offered as a word for white trousers, nor "turtle" for a turtleneck)."""
        out = []
        for w in synset.words:
            senses = self._index.get(_lemma_key(w), ())
            if senses and senses[0] == synset.offset:
                out.append(w)
        return out

    def hypernyms(self, synset: Synset) -> list[Synset]:
        """Direct hypernyms (and instance hypernyms)."""
        return [self.synset(o) for o in synset.related(HYPERNYM_POINTERS)]

    def hyponyms(self, synset: Synset, depth: int = 1) -> list[Synset]:
        """Hyponyms down to ``depth`` levels, breadth first, each once."""
        out: list[Synset] = []
        seen = {synset.offset}
        frontier = [synset]
        for _ in range(depth):
            nxt = []
            for s in frontier:
                for o in s.related(HYPONYM_POINTERS):
                    if o not in seen:
                        seen.add(o)
                        nxt.append(self.synset(o))
            out += nxt
            frontier = nxt
        return out


def _parse_data_line(line: str) -> Synset:
    """One ``data.noun`` line: ``offset lex_filenum ss_type w_cnt word lex_id ... p_cnt ptr... | gloss``."""
    head, _, gloss = line.partition(" | ")
    parts = head.split()
    offset, lexnum, w_cnt = int(parts[0]), int(parts[1]), int(parts[3], 16)
    words = tuple(re.sub(r"\(.*\)$", "", parts[4 + 2 * i]).replace("_", " ") for i in range(w_cnt))
    k = 4 + 2 * w_cnt
    p_cnt = int(parts[k])
    pointers = []
    for j in range(p_cnt):
        symbol, target, pos = parts[k + 1 + 4 * j: k + 4 + 4 * j]
        if pos == "n":
            pointers.append((symbol, int(target)))
    return Synset(offset, words, NOUN_LEXNAMES.get(lexnum, f"noun.{lexnum}"), tuple(pointers), gloss.strip())


@lru_cache(maxsize=2)
def load_wordnet(path: str | None = None) -> WordNet:
    """A shared :class:`WordNet` reader of ``path`` (default: ``$SNAPSIGHT_WORDNET`` or /usr/share/wordnet)."""
    return WordNet(path)
