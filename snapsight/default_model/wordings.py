"""Captions of the default model: many everyday wordings per Fashion-MNIST class, and the held-out lists.

Caption diversity decides whether words a user types generalise. EVAL_WORDINGS and TEST_WORDINGS are held
out: no training caption contains any of them (checked by :func:`check_heldout_wordings`), so
benchmarks/align_eval.py measures wordings the model never saw.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Sequence

from ..data.emoji import list_emoji

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
EMOJI_HOLDOUT_FRACTION = 0.1  # emoji never shown in training, for the retrieval evaluation
EMOJI_HOLDOUT_SEED = 0


def _words(s: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", s.lower().replace("-", " "))


def contains_phrase(text: str, phrase: str) -> bool:
    """True when ``phrase``'s words occur consecutively in ``text`` (case, hyphens and punctuation ignored)."""
    t, p = _words(text), _words(phrase)
    return bool(p) and any(t[i:i + len(p)] == p for i in range(len(t) - len(p) + 1))


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
