"""Load CLIP models for zero-shot classification, always with the preprocessing and tokenizer of their weights.

:func:`load_clip` accepts every CLIP form of the one model-name grammar, parsed by
:func:`snapsight.artifacts.spec.parse_model_spec` (its module docstring has the table): ``None`` or ``clip:default``
(the project's default model), an open_clip name with a pretrained tag or weights file, an open_clip config file,
``local-dir:DIR`` or a folder (open_clip, a ``snapsight align`` run, a Hugging Face ``CLIPModel``), ``hf-hub:org/repo``
or ``org/repo``, and ``openclip:NAME[:TAG]``.

Every model comes back as a :class:`~snapsight.models.hub.LoadedClip` whose ``model`` has open_clip's interface
(``encode_image``, ``encode_text``, ``logit_scale`` as a log-scale parameter, ``logit_bias``);
Hugging Face models are wrapped by :class:`~snapsight.models.hf_clip.HFCLIPAdapter`. ``preprocess`` turns a PIL image into a
tensor and ``tokenizer`` turns texts into ``(n, context_length)`` token ids, both taken from the
weights' own config.

Offline first: see :mod:`snapsight.models.hub`.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ..artifacts.clip_dir import ALIGN_META, CLIP_KIND, OPEN_CLIP_CONFIG, relocate_clip_dir
from ..artifacts.spec import ModelSpec, parse_model_spec, read_open_clip_config
from ..artifacts.text_encoders import register_text_archs
from ..errors import SnapsightError
from .default import DEFAULT_MODEL_NAME, default_model_dir
from .hf_clip import load_hf_clip
from .hub import LoadedClip, fingerprint, hub_offline, not_available, offline_hub

log = logging.getLogger(__name__)


def _open_clip_bundle(model: nn.Module, preprocess: Callable, tokenizer: Callable, info: dict) -> LoadedClip:
    model.eval()
    visual = getattr(model, "visual", None)
    image_size = getattr(visual, "image_size", None)
    if isinstance(image_size, (tuple, list)):
        image_size = list(image_size)
    info.setdefault("kind", "open_clip")
    info["image_size"] = image_size
    info["context_length"] = int(getattr(tokenizer, "context_length", 0) or getattr(model, "context_length", 77))
    info["preprocess"] = dict(getattr(visual, "preprocess_cfg", {}) or {})
    return LoadedClip(model=model, preprocess=preprocess, tokenizer=tokenizer, info=info)


def _relocated(directory: Path) -> Path:
    """A folder written by ``snapsight align`` names its own absolute path as its text tower; after the folder
    was moved or copied, point it at where it is now (:func:`snapsight.artifacts.clip_dir.relocate_clip_dir`, a no-op
    when already right). Other open_clip folders are left as they are."""

    try:
        kind = json.loads((directory / ALIGN_META).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return directory
    if kind != CLIP_KIND:
        return directory
    try:
        return relocate_clip_dir(directory)
    except OSError as e:
        raise SnapsightError(
            f"{directory} was moved and its open_clip_config.json cannot be updated to the new place "
            f"({e.strerror or e}); copy the folder somewhere writable and pass that"
        ) from e


def _load_open_clip_local_dir(directory: Path, name: str | None = None) -> LoadedClip:
    import open_clip

    register_text_archs()  # an mpnet text tower (the default model's) needs open_clip to know the type
    from open_clip.factory import _find_checkpoint_in_dir

    directory = _relocated(directory)
    ckpt = _find_checkpoint_in_dir(directory)
    if ckpt is None:
        raise SnapsightError(f"{directory} has open_clip_config.json but no weights file (*.safetensors, *.bin, *.pth)")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{directory}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{directory}")
    except (ValueError, RuntimeError, KeyError, OSError) as e:  # OSError: its HF text tower cannot be found
        raise SnapsightError(f"cannot load the open_clip folder {directory}: {str(e).splitlines()[0][:300]}") from e
    info = {"name": name or directory.name, "pretrained": None, "source": str(directory),
            "fingerprint": fingerprint([ckpt, directory / OPEN_CLIP_CONFIG])}
    return _open_clip_bundle(model, preprocess, tokenizer, info)


def _register_config_file(path: Path) -> str:
    """Make an open_clip config file known to open_clip under its stem (as its own ``model_configs/*.json``)."""
    import open_clip

    register_text_archs()  # an mpnet text tower (the default model's) needs open_clip to know the type
    read_open_clip_config(path)  # one sentence when it is not a model config
    open_clip.add_model_config(path)
    return path.stem


def _load_open_clip_named(name: str, pretrained: str, cache_dir: str | None) -> LoadedClip:
    """A registered open_clip model with a pretrained tag or weights file (both checked by the spec parser)."""
    import open_clip

    register_text_archs()  # an mpnet text tower (the default model's) needs open_clip to know the type
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    extra: dict[str, Any] = {"name": name, "pretrained": pretrained}
    tag_cfg: dict[str, Any] = {}
    if os.path.isfile(pretrained):
        ckpt: str = pretrained
        offline = False
    else:
        tag_cfg = get_pretrained_cfg(name, pretrained)
        offline = hub_offline()
        what = f"open_clip weights {name} / {pretrained}"
        try:
            with offline_hub(offline):
                ckpt = download_pretrained(tag_cfg, cache_dir=cache_dir)
        except Exception as e:  # noqa: BLE001 - hub/urllib raise many types; all mean "not available"
            source = tag_cfg.get("hf_hub") or tag_cfg.get("url") or "the Hub"
            raise not_available(
                what, offline,
                f"download them once with network access (from {source}) or pass --pretrained a local weights file",
                e) from e
        if not ckpt:
            raise not_available(what, offline, "pass --pretrained a local weights file")
    # Tags trained with QuickGELU (e.g. "openai") on a config without it only get a warning from open_clip and
    # give different embeddings; follow the tag, as the "-quickgelu" model names do.
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    try:
        with offline_hub(offline):
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, cache_dir=cache_dir, force_quick_gelu=quick_gelu)
        tokenizer = open_clip.get_tokenizer(name)
    except RuntimeError as e:
        raise SnapsightError(f"cannot load {name} with weights {pretrained}: {str(e).splitlines()[0][:300]}") from e
    info = {"name": name, "pretrained": pretrained, "source": str(ckpt), "fingerprint": fingerprint([ckpt], extra)}
    return _open_clip_bundle(model, preprocess, tokenizer, info)


def _load_open_clip_hub(repo: str, cache_dir: str | None) -> LoadedClip | None:
    """open_clip repo on the Hub; None when the repo has no open_clip_config.json (then try transformers)."""
    import open_clip

    register_text_archs()  # an mpnet text tower (the default model's) needs open_clip to know the type
    from huggingface_hub import hf_hub_download
    from open_clip.pretrained import download_pretrained_from_hf

    offline = hub_offline()
    try:
        with offline_hub(offline):
            hf_hub_download(repo, "open_clip_config.json", cache_dir=cache_dir)
    except Exception:  # noqa: BLE001
        return None
    try:
        with offline_hub(offline):
            ckpt = download_pretrained_from_hf(repo, cache_dir=cache_dir)
            model, _, preprocess = open_clip.create_model_and_transforms(f"hf-hub:{repo}", cache_dir=cache_dir)
            tokenizer = open_clip.get_tokenizer(f"hf-hub:{repo}", cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001
        raise not_available(f"the weights of hf-hub:{repo}", offline,
                             "download the repo once with network access or pass --model a local folder", e) from e
    info = {"name": f"hf-hub:{repo}", "pretrained": None, "source": str(ckpt), "fingerprint": fingerprint([ckpt])}
    return _open_clip_bundle(model, preprocess, tokenizer, info)


def load_clip(
    model: str | os.PathLike | ModelSpec | None = None,
    pretrained: str | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | None = None,
) -> LoadedClip:
    """Load a CLIP model with its own preprocessing and tokenizer (see the module docstring for ``model`` forms;
    an already parsed :class:`~snapsight.artifacts.spec.ModelSpec` is taken as it is).

    Raises :class:`SnapsightError` with one sentence when the model cannot be found or loaded.
    """
    spec = model if isinstance(model, ModelSpec) else parse_model_spec(model, pretrained)
    bundle = _load(spec, cache_dir)
    bundle.model.to(device)
    bundle.info["device"] = str(device)
    return bundle


def _load(spec: ModelSpec, cache_dir: str | None) -> LoadedClip:
    if spec.kind == "default":
        return _load_open_clip_local_dir(default_model_dir(), name=DEFAULT_MODEL_NAME)
    if spec.kind == "open_clip_dir":
        return _load_open_clip_local_dir(spec.path)
    if spec.kind == "hf_clip_dir":
        return load_hf_clip(str(spec.path), is_dir=True, cache_dir=cache_dir)
    if spec.kind == "hub":
        bundle = _load_open_clip_hub(spec.name, cache_dir)
        return bundle if bundle is not None else load_hf_clip(spec.name, is_dir=False, cache_dir=cache_dir)
    if spec.kind == "open_clip_config":
        return _load_open_clip_named(_register_config_file(spec.path), spec.pretrained, cache_dir)
    if spec.kind == "open_clip_name":
        return _load_open_clip_named(spec.name, spec.pretrained, cache_dir)
    raise SnapsightError(f"'{spec.text}' is a snapsight image encoder ({spec.kind}), not a CLIP model")
