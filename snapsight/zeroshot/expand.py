"""``--expand wordnet``: widen each label's prompt ensemble with WordNet words at query time.

A label a model never saw in training ("corduroys") often has a WordNet synonym or a direct hypernym it did see
("trouser"). Each label keeps its own text and gains the dominant synonyms of one chosen sense and that sense's
direct hypernym; its embedding is the mean over all of them (the label syntax's synonyms, ``cat: kitty``).

The sense is *chosen*, with the other labels as context: among a label's senses that are visible things (no
persons, acts, times, ...), WordNet's most frequent one, unless another is clearly closer (mean Wu-Palmer
similarity) to the other labels' senses ("jumper" among garments: the sweater, not the electrical connector).
Labels with no visible sense are left as they are ("trainers": a person or a flight simulator in WordNet), and a
hypernym is not added when it is (an ancestor of) another label's sense ("shirt" for "t-shirts" beside "shirts").
"""
from __future__ import annotations

from functools import lru_cache

from ..data.wordnet import Synset, WordNet, load_wordnet
from ..labels import Label, LabelSet

# Lexicographer files of things one can see in a picture.
VISIBLE_LEXNAMES = ("noun.artifact", "noun.animal", "noun.food", "noun.plant", "noun.object", "noun.body",
                    "noun.substance", "noun.phenomenon")
MIN_SCORE_GAIN = 0.1  # how much closer to the context (mean Wu-Palmer) a less frequent sense must be to be chosen
MAX_SYNONYMS = 3  # dominant synonyms added per label
MIN_CONTEXT_SCORE = 0.4  # with other labels given, a chosen sense less related to them than this is not used


def _depth(wn: WordNet, synset: Synset) -> int:
    return _depth_of(wn, synset.offset)


@lru_cache(maxsize=65536)
def _depth_of(wn: WordNet, offset: int) -> int:
    parents = wn.synset(offset).related(("@", "@i"))
    return 0 if not parents else 1 + min(_depth_of(wn, p) for p in parents)


def wup_similarity(wn: WordNet, a: Synset, b: Synset) -> float:
    """Wu & Palmer (1994) similarity: ``2 * depth(lcs) / (depth(a) + depth(b))``, the deepest common hypernym
    (each synset counts as its own ancestor) relative to how deep the two synsets are; 0 when none is shared."""
    common = (wn.hypernym_closure(a) | {a.offset}) & (wn.hypernym_closure(b) | {b.offset})
    if not common:
        return 0.0
    lcs = max(_depth_of(wn, o) for o in common)
    return 2.0 * lcs / max(1, _depth(wn, a) + _depth(wn, b))


def context_score(wn: WordNet, sense: Synset, others: list[list[Synset]]) -> float:
    """Mean over the other labels (those WordNet knows) of the best :func:`wup_similarity` of ``sense`` with any
    of their visible senses."""
    scores = [max(wup_similarity(wn, sense, o) for o in senses) for senses in others if senses]
    return sum(scores) / len(scores) if scores else 0.0


def choose_sense(wn: WordNet, senses: list[Synset], others: list[list[Synset]]) -> Synset | None:
    """Among the visible senses (:data:`VISIBLE_LEXNAMES`), the most frequent one, or another whose
    :func:`context_score` beats it by :data:`MIN_SCORE_GAIN`; ``None`` when no sense is visible or, with other
    labels given, the chosen one is unrelated to them (score below :data:`MIN_CONTEXT_SCORE`: "sliders" among
    garments is only a turtle in WordNet)."""
    visible = [s for s in senses if s.lexname in VISIBLE_LEXNAMES]
    if not visible:
        return None
    if not any(others):
        return visible[0]
    scored = [(context_score(wn, s, others), -rank, s) for rank, s in enumerate(visible)]
    best = max(scored, key=lambda t: (t[0], t[1]))
    score, _, sense = best if best[0] - scored[0][0] >= MIN_SCORE_GAIN else scored[0]
    return sense if score >= MIN_CONTEXT_SCORE else None


def expand_labels_wordnet(label_set: LabelSet, wn: WordNet | None = None) -> LabelSet:
    """``label_set`` with each label's names widened by WordNet (see the module docstring); labels given with
    verbatim prompts or their own templates keep them. A note lists what was added."""
    wn = wn or load_wordnet()
    senses = [[s for s in wn.synsets(lab.name) if s.lexname in VISIBLE_LEXNAMES] for lab in label_set.labels]
    chosen = [choose_sense(wn, s, senses[:i] + senses[i + 1:]) for i, s in enumerate(senses)]
    out: list[Label] = []
    added: list[str] = []
    for i, (lab, sense) in enumerate(zip(label_set.labels, chosen)):
        if sense is None:
            out.append(lab)
            continue
        have = {n.casefold() for n in lab.names}
        words = [w for w in wn.dominant_words(sense) if w.casefold() not in have][:MAX_SYNONYMS]
        others = [c for j, c in enumerate(chosen) if j != i and c is not None]
        for h in wn.hypernyms(sense)[:1]:
            blurs = any(h.offset == o.offset or h.offset in wn.hypernym_closure(o) for o in others)
            word = (wn.dominant_words(h) or [h.name])[0]
            if not blurs and word.casefold() not in have:
                words.append(word)
        if words:
            added.append(f"{lab.name} (+ {', '.join(words)})")
        out.append(Label(lab.name, tuple(lab.names) + tuple(words), lab.prompts, lab.templates))
    notes = list(label_set.notes)
    if added:
        shown = "; ".join(added[:5]) + (f"; and {len(added) - 5} more" if len(added) > 5 else "")
        notes.append(f"WordNet expansion: {shown}")
    return LabelSet(out, notes)
