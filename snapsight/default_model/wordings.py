"""Captions of the default model: many everyday wordings per Fashion-MNIST class, and the held-out lists.

Caption diversity decides whether words a user types generalise. EVAL_WORDINGS and TEST_WORDINGS are held
out: no training caption contains any of them (checked by :func:`check_heldout_wordings`), so
benchmarks/align_eval.py measures wordings the model never saw.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from ..data.emoji import Emoji, list_emoji
from ..data.stamps import Stamp, list_stamps, split_stamps, stamp_wordnet_words
from ..data.wordnet import Synset, WordNet

TRAIN_WORDINGS: dict[str, tuple[str, ...]] = {
    "T-shirt/top": ("t-shirt", "tshirt", "plain top", "top", "short-sleeved top", "tank top", "crew neck t-shirt",
                    "sleeveless top", "cotton top", "casual top", "short sleeve t-shirt", "basic top",
                    "graphic t-shirt", "v-neck t-shirt", "undershirt", "camisole", "halter top", "tube top",
                    "muscle top", "summer top", "white t-shirt", "sports top"),
    "Trouser": ("trousers", "trouser", "pair of trousers", "jeans", "blue jeans", "denim", "joggers",
                "sweatpants", "cargo trousers", "long trousers", "chino trousers", "tracksuit bottoms",
                "culottes", "capris", "flared trousers", "skinny jeans", "bottoms", "wide-leg trousers",
                "khakis", "jeggings", "dress trousers", "trackpants"),
    "Pullover": ("pullover", "knit pullover", "jersey", "cardigan", "long-sleeved pullover", "turtleneck",
                 "fleece", "knitted top", "woollen pullover", "crewneck pullover", "warm knit", "knit",
                 "knitwear", "cable knit", "polo neck", "roll neck", "fleece top", "long-sleeved knit top",
                 "wool jersey", "pullover top", "v-neck pullover", "winter knit"),
    "Dress": ("dress", "frock", "maxi dress", "cocktail dress", "party dress", "mini dress", "long dress",
              "sleeveless dress", "day dress", "shift dress", "wrap dress", "dress for women", "slip dress",
              "midi dress", "shirt dress", "tunic", "skater dress", "bodycon dress", "floral dress",
              "women's dress", "robe", "pinafore"),
    "Coat": ("coat", "winter coat", "trench coat", "long coat", "wool coat", "overcoat", "peacoat",
             "duffle coat", "outerwear", "warm coat", "puffer coat", "topcoat", "windbreaker", "blazer",
             "trench", "mac", "cagoule", "quilted coat", "padded coat", "bomber", "puffer", "car coat"),
    "Sandal": ("sandal", "strappy sandal", "summer sandal", "open-toe shoe", "gladiator sandal", "slingback",
               "heeled sandal", "flat sandal", "beach shoe", "open shoe", "sandal with straps", "espadrille",
               "mule", "wedge sandal", "sport sandal", "toe-post sandal", "beach sandal", "open-toe sandal",
               "strappy heel", "pool shoe", "summer shoe", "thong sandal"),
    "Shirt": ("shirt", "long-sleeved shirt", "collared shirt", "checked shirt", "plaid shirt", "oxford shirt",
              "formal shirt", "work shirt", "striped shirt", "denim shirt", "shirt with buttons", "business shirt",
              "casual shirt", "linen shirt", "office shirt", "cotton shirt", "tailored shirt", "men's shirt",
              "women's shirt", "long sleeve top with collar", "smart shirt", "check shirt"),
    "Sneaker": ("sneaker", "athletic shoe", "sports shoe", "canvas shoe", "low-top shoe", "gym shoe",
                "training shoe", "jogging shoe", "casual shoe", "lace-up sports shoe", "basketball shoe", "kicks",
                "skate shoe", "sports footwear", "plimsoll", "workout shoe", "walking shoe", "athletic sneaker",
                "sneaker shoe", "lace-up shoe", "sport shoe", "runner"),
    "Bag": ("bag", "handbag", "purse", "shopping bag", "leather bag", "backpack", "messenger bag", "tote",
            "bag with handles", "carry bag", "ladies bag", "travel bag", "briefcase", "crossbody bag",
            "bucket bag", "evening bag", "pouch", "sack", "hobo bag", "weekend bag", "bag for women", "holdall"),
    "Ankle boot": ("ankle boot", "boot", "leather boot", "heeled boot", "winter boot", "short boot",
                   "suede boot", "zip-up boot", "lace-up boot", "combat boot", "boot for women", "bootie",
                   "desert boot", "western boot", "cowboy boot", "biker boot", "work boot", "platform boot",
                   "rain boot", "snow boot", "heeled ankle boot", "bootee"),
}
EVAL_WORDINGS: dict[str, tuple[str, ...]] = {
    "T-shirt/top": ("tee", "crop top", "vest top", "singlet"),
    "Trouser": ("pants", "slacks", "leggings", "chinos"),
    "Pullover": ("sweater", "jumper", "sweatshirt", "hoodie"),
    "Dress": ("gown", "sundress", "summer dress", "evening dress"),
    "Coat": ("jacket", "parka", "raincoat", "anorak"),
    "Sandal": ("sandals", "flip-flops", "slides", "flip flops"),
    "Shirt": ("button-down shirt", "blouse", "dress shirt", "flannel shirt"),
    "Sneaker": ("sneakers", "trainers", "running shoes", "tennis shoes"),
    "Bag": ("satchel", "shoulder bag", "clutch", "duffel bag"),
    "Ankle boot": ("boots", "chelsea boots", "booties", "ankle boots"),
}
# A second held-out list, frozen before any recipe was tuned against it: EVAL_WORDINGS is a development set that
# recipes are tuned on (it was enlarged knowing which words failed); TEST_WORDINGS is scored once, at the end.
# Everyday words a shopper types, none of them in TRAIN_WORDINGS or EVAL_WORDINGS, none inside a training caption
# (check_heldout_wordings) or an EVAL wording.
TEST_WORDINGS: dict[str, tuple[str, ...]] = {
    "T-shirt/top": ("t-shirts", "cami", "short sleeve top", "racerback top"),
    "Trouser": ("corduroys", "bootcut jeans", "flares", "cargos"),
    "Pullover": ("cashmere", "mock neck", "quarter zip", "hooded top"),
    "Dress": ("dresses", "prom dress", "little black dress", "wedding dress"),
    "Coat": ("coats", "pea coat", "mackintosh", "shearling coat"),
    "Sandal": ("sliders", "gladiators", "strappy heels", "jelly shoes"),
    "Shirt": ("shirts", "button up shirt", "overshirt", "chambray shirt"),
    "Sneaker": ("runners", "high tops", "gym shoes", "slip-ons"),
    "Bag": ("handbags", "rucksack", "tote bag", "laptop bag"),
    "Ankle boot": ("chukkas", "sock boot", "wellies", "block heel boot"),
}
# Caption templates for Fashion-MNIST and emoji; none is one of the zero-shot prompts used at evaluation.
FMNIST_TEMPLATES: tuple[str, ...] = (
    "{}", "a {}", "a picture of a {}", "an image of a {}", "a black and white photo of a {}",
    "a product photo of a {}", "a low resolution picture of a {}", "a {} on a plain background",
)
EMOJI_TEMPLATES: tuple[str, ...] = ("{}", "an emoji of a {}", "a {} icon")
STAMP_TEMPLATES: tuple[str, ...] = ("{}", "a picture of a {}", "a cut-out of a {}")
EMOJI_HOLDOUT_FRACTION = 0.1  # emoji never shown in training, for the retrieval evaluation
EMOJI_HOLDOUT_SEED = 0
STAMP_HOLDOUT_FRACTION = 0.1  # stamps never shown in training (by a hash of their path), for the evaluation
STAMP_HOLDOUT_SEED = 0

# WordNet senses that widen each Fashion-MNIST class, as (lemma, WordNet 3 sense number): chosen by hand from the
# glosses (tests check each is a garment, footwear or bag sense), because the first sense is often wrong here
# ("jumper": a person). Their dominant words and those of their hyponyms (two levels) become extra training
# wordings, except synsets holding a word near a held-out wording (their hyponyms are still visited) and synsets
# that also fall under another class's anchors.
FMNIST_WORDNET_ANCHORS: dict[str, tuple[tuple[str, int], ...]] = {
    "T-shirt/top": (("t-shirt", 1), ("undershirt", 1), ("tank top", 1)),
    "Trouser": (("trouser", 1),),
    "Pullover": (("sweater", 1), ("pullover", 1)),
    "Dress": (("dress", 1),),
    "Coat": (("coat", 1),),
    "Sandal": (("sandal", 1),),
    "Shirt": (("shirt", 1),),
    "Sneaker": (("sneaker", 1),),
    "Bag": (("handbag", 1),),
    "Ankle boot": (("boot", 1),),
}
WORDNET_DEPTH = 2  # hyponym levels below each anchor
WORDNET_MAX_PER_CLASS = 16  # extra wordings per class, so the curated ones keep most of the caption draws


def _words(s: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", s.lower().replace("-", " "))


def contains_phrase(text: str, phrase: str) -> bool:
    """True when ``phrase``'s words occur consecutively in ``text`` (case, hyphens and punctuation ignored)."""
    t, p = _words(text), _words(phrase)
    return bool(p) and any(t[i:i + len(p)] == p for i in range(len(t) - len(p) + 1))


def _singular(word: str) -> str:
    for suffix, repl in (("ies", "y"), ("ches", "ch"), ("shes", "sh"), ("ses", "s"), ("xes", "x"), ("zes", "z")):
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            return word[: -len(suffix)] + repl
    return word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 3 else word


def near_heldout(text: str, phrases: Sequence[str]) -> str | None:
    """The first of ``phrases`` that occurs in ``text`` up to plurals ("tennis shoe" is near "tennis shoes"), or
    None. Stricter than :func:`check_heldout_wordings`: used to keep *added* vocabulary (WordNet, stamps) clear of
    the held-out wordings and of their singular or plural forms."""
    t = [_singular(w) for w in _words(text)]
    for p in phrases:
        q = [_singular(w) for w in _words(p)]
        if q and any(t[i:i + len(q)] == q for i in range(len(t) - len(q) + 1)):
            return p
    return None


def heldout_phrases(sets: Sequence[str] = ("eval", "test")) -> list[str]:
    """The held-out wordings of ``sets`` ("eval": the development list, "test": the frozen test list), flat."""
    lists = {"eval": EVAL_WORDINGS, "test": TEST_WORDINGS}
    return [w for name in sets for ws in lists[name].values() for w in ws]


def check_heldout_wordings(train_texts: Sequence[str],
                           heldout: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """Pairs ``(held_out_phrase, train_text)`` where a held-out wording occurs inside a training caption or
    wording. ``heldout`` defaults to every held-out wording (EVAL_WORDINGS and TEST_WORDINGS)."""
    heldout = heldout_phrases() if heldout is None else list(heldout)
    words = [_words(t) for t in train_texts]
    longest = max((len(_words(h)) for h in heldout), default=0)
    grams = {tuple(w[i:i + n]) for w in words for n in range(1, longest + 1) for i in range(len(w) - n + 1)}
    return [(h, t) for h in heldout if tuple(_words(h)) in grams
            for t, w in zip(train_texts, words) if contains_phrase(t, h)]


def check_heldout_lists() -> list[tuple[str, str]]:
    """Pairs ``(test_wording, eval_wording)`` where one contains the other: the two lists must stay apart."""
    test, dev = heldout_phrases(("test",)), heldout_phrases(("eval",))
    return [(t, e) for t in test for e in dev if contains_phrase(t, e) or contains_phrase(e, t)]


def split_emoji(emojis: Sequence[Any], fraction: float = EMOJI_HOLDOUT_FRACTION,
                seed: int = EMOJI_HOLDOUT_SEED) -> tuple[list[Any], list[Any]]:
    """Deterministic ``(train, held_out)`` split of the emoji list (by a hash of each name)."""
    def score(e: Any) -> float:
        h = hashlib.sha256(f"{seed}:{e.name}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    held = [e for e in emojis if score(e) < fraction]
    return [e for e in emojis if score(e) >= fraction], held


def training_emoji(eval_phrases: Sequence[str] | None = None) -> tuple[list[Any], list[Any]]:
    """``(train, held_out)`` emoji; emoji whose name or synonym contains a held-out Fashion-MNIST wording
    (default: every EVAL and TEST wording) are left out of both (so those wordings stay unseen)."""
    eval_phrases = heldout_phrases() if eval_phrases is None else eval_phrases
    clean = [e for e in list_emoji() if not any(contains_phrase(n, p) for n in e.names for p in eval_phrases)]
    return split_emoji(clean)


def _anchor(wn: WordNet, word: str, number: int) -> Synset:
    return wn.sense(word, number)


def fmnist_wordnet_wordings(wn: WordNet, heldout: Sequence[str] | None = None,
                            max_per_class: int = WORDNET_MAX_PER_CLASS) -> dict[str, tuple[str, ...]]:
    """Extra wordings per Fashion-MNIST class from WordNet (see :data:`FMNIST_WORDNET_ANCHORS`): dominant words of
    each anchor and its hyponyms (breadth first, :data:`WORDNET_DEPTH` levels), lower case, none near a held-out
    wording (:func:`near_heldout`), none already a training wording of any class, at most ``max_per_class``."""
    heldout = heldout_phrases() if heldout is None else list(heldout)
    anchors = {c: [_anchor(wn, w, n) for w, n in pairs] for c, pairs in FMNIST_WORDNET_ANCHORS.items()}
    taken = {w.lower() for ws in TRAIN_WORDINGS.values() for w in ws}
    out: dict[str, tuple[str, ...]] = {}
    for cls, own in anchors.items():
        others = [a for c, a_list in anchors.items() if c != cls for a in a_list]
        words: list[str] = []
        seen: set[int] = set()
        frontier = list(own)
        for depth in range(WORDNET_DEPTH + 1):
            nxt = []
            for syn in frontier:
                if syn.offset in seen:
                    continue
                seen.add(syn.offset)
                if wn.is_under(syn, others):
                    continue  # belongs (also) to another class
                if depth < WORDNET_DEPTH:
                    nxt += wn.hyponyms(syn)
                if not any(near_heldout(w, heldout) for w in syn.words):  # a synset holding one gives no word
                    words += [w.lower() for w in wn.dominant_words(syn)]
            frontier = nxt
        fresh = [w for w in dict.fromkeys(words) if w not in taken and not re.search(r"\d", w)]
        taken |= set(fresh[:max_per_class])
        out[cls] = tuple(fresh[:max_per_class])
    return out


EMOJI_WORDNET_LEXNAMES = ("noun.artifact", "noun.animal", "noun.food", "noun.plant", "noun.object")


def emoji_with_wordnet(emojis: Sequence[Emoji], wn: WordNet, heldout: Sequence[str] | None = None) -> list[Emoji]:
    """``emojis`` with WordNet synonyms of their names added: only when the name's most frequent noun sense is a
    thing, animal, food or plant (:data:`EMOJI_WORDNET_LEXNAMES`; "taurus" and "pick" are not widened), its
    dominant words, none near a held-out wording. Other emoji are returned unchanged."""
    heldout = heldout_phrases() if heldout is None else list(heldout)
    out = []
    for e in emojis:
        senses = wn.synsets(e.name) if wn.lemmas(e.name) == [e.name.replace(" ", "_")] else []
        extra: list[str] = []
        if senses and senses[0].lexname in EMOJI_WORDNET_LEXNAMES:
            extra = [w.lower() for w in wn.dominant_words(senses[0])
                     if w.lower() not in e.names and not near_heldout(w, heldout)]
        out.append(Emoji(e.char, e.name, tuple(dict.fromkeys(e.synonyms + tuple(extra)))) if extra else e)
    return out


def stamp_captions(stamp: Stamp, wn: WordNet | None, heldout: Sequence[str] | None = None) -> tuple[str, ...]:
    """Training captions of one stamp: its description, its name in :data:`STAMP_TEMPLATES`, WordNet synonyms of
    its noun (sense chosen under its topic) in the same templates, "name (hypernym)" and "name (topic, folders)";
    WordNet words near a held-out wording are left out."""
    heldout = heldout_phrases() if heldout is None else list(heldout)
    synonyms, hypernyms = stamp_wordnet_words(wn, stamp) if wn is not None else ([], [])
    names = [stamp.name] + [w.lower() for w in synonyms if not near_heldout(w, heldout)]
    caps = [stamp.description] + [t.format(n) for n in dict.fromkeys(names) for t in STAMP_TEMPLATES]
    caps += [f"{stamp.name} ({h.lower()})" for h in hypernyms if not near_heldout(h, heldout)]
    caps.append(f"{stamp.name} ({', '.join((stamp.topic,) + stamp.folders)})")
    return tuple(dict.fromkeys(caps))


def training_stamps(eval_phrases: Sequence[str] | None = None,
                    stamps: Sequence[Stamp] | None = None) -> tuple[list[Stamp], list[Stamp]]:
    """``(train, held_out)`` stamps (deterministic split by path, :func:`snapsight.data.stamps.split_stamps`);
    stamps whose description, name or file name is near a held-out Fashion-MNIST wording ("pair of pants") are
    left out of both, as the emoji are."""
    eval_phrases = heldout_phrases() if eval_phrases is None else eval_phrases
    stamps = list_stamps() if stamps is None else list(stamps)
    clean = [s for s in stamps if not any(near_heldout(t, eval_phrases)
                                          for t in (s.description, s.name, s.stem_words))]
    return split_stamps(clean, STAMP_HOLDOUT_FRACTION, STAMP_HOLDOUT_SEED)
