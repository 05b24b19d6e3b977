"""One grammar for model names: :func:`parse_model_spec` turns every string a user types into a :class:`ModelSpec`,
and :func:`detect` says what a folder or file holds. Every entry point (``load_clip``, ``load_feature_encoder``,
``load_encoder``'s ``random:``, the probe's ``--encoder`` pre-check, ``classify --model``, the demo) calls them,
in the manner of open_clip's ``parse_model_name`` (``factory.py``).

==========================================  ====================  ==============================================
text (``pretrained``)                       ``ModelSpec.kind``    meaning
==========================================  ====================  ==============================================
``None``, ``clip:default``                  ``default``           the project's default model
``random:<backbone>[@<size>]``              ``random``            a randomly initialised backbone (32 px default)
``openclip:<model>[:<tag or file>]``        as ``<model>``        ``<model>`` below, weights after the colon
``ViT-B-32`` + tag or weights file          ``open_clip_name``    an open_clip architecture and its weights
``path/to/NAME.json`` + tag or file         ``open_clip_config``  an open_clip model config file (name: its stem)
``local-dir:DIR``, ``DIR``                  ``open_clip_dir``     open_clip folder or a ``snapsight align`` run
``DIR/open_clip_model.safetensors``         ``open_clip_dir``     a weights file beside its open_clip config
``DIR`` with a CLIP ``config.json``         ``hf_clip_dir``       a Hugging Face ``CLIPModel`` folder
``hf-hub:org/repo``, ``org/repo``           ``hub``               a Hub repo: open_clip's, else transformers'
``DIR`` (encoder role)                      ``encoder``           ``snapsight pretrain`` run or encoder folder
==========================================  ====================  ==============================================

The role says what the caller loads: ``"clip"`` (a CLIP model, e.g. ``classify --model``) or ``"encoder"`` (an
image encoder, e.g. ``probe --encoder``: a snapsight backbone or a CLIP image tower). In the encoder role bare
text is always a path, so a mistyped run folder is reported as not found instead of being looked up on the Hub.

Parsing reads at most small JSON files and open_clip's name and tag registry; it never loads weights. A spec
that cannot load for a reason visible here (missing path, wrong kind of folder, unknown open_clip name or tag)
raises one :class:`SnapsightError` sentence.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import SnapsightError
from .classifier import CLASSIFIER_JSON
from .clip_dir import MODEL_SUBDIR, OPEN_CLIP_CONFIG, find_clip_dir, is_hf_clip_dir
from .encoder import CONFIG_NAME, ENCODER_KIND, ENCODER_SUBDIR, find_encoder_dir
from .export import EXPORT_MANIFEST
from .files import read_json

Role = Literal["clip", "encoder"]

DEFAULT_SPEC = "clip:default"
RANDOM_PREFIX = "random:"
OPENCLIP_PREFIX = "openclip:"
LOCAL_DIR_PREFIX = "local-dir:"
HF_HUB_PREFIX = "hf-hub:"
CLIP_PREFIX = "clip:"
RANDOM_IMAGE_SIZE = 32  # random:<backbone> without @<size>
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".npz")
OPEN_CLIP_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")
ENCODER_KINDS = ("random", "encoder")  # snapsight backbones; every other kind is a CLIP model


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model name: what to load, not the model.

    ``kind``: see the module table. ``name``: open_clip model name, Hub repo id, backbone name (``random``) or
    folder name. ``path``: the folder or file to load from (an align run and a pretrain run are resolved to
    their ``model/`` and ``encoder/``). ``pretrained``: an open_clip tag or a weights file. ``image_size``:
    input size of a ``random`` backbone. ``text``: what the user typed (``None`` for the default model).
    """

    kind: str
    name: str | None = None
    path: Path | None = None
    pretrained: str | None = None
    image_size: int | None = None
    text: str | None = None

    @property
    def is_clip(self) -> bool:
        """True for CLIP models (the CLIP loader's kinds); False for snapsight backbones."""
        return self.kind not in ENCODER_KINDS


# ------------------------------------------------------------------------------------------------- detect


def detect(path: str | os.PathLike) -> str | None:
    """What ``path`` holds: ``"export"`` (an ONNX export), ``"classifier"``, ``"open_clip"``, ``"encoder"``, ``"hf_clip"``,
    ``"open_clip_config"``, ``"weights"``, or ``None`` (missing, or nothing snapsight knows).

    A file name only one artifact writes decides by itself (``classifier.json``, ``open_clip_config.json``, also
    in an align run's ``model/``); a shared one (``config.json``) by its content: a snapsight encoder (also in a
    pretrain run's ``encoder/``) or a Hugging Face CLIP model. The loaders check the rest.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / EXPORT_MANIFEST).is_file():
            return "export"
        if (p / CLASSIFIER_JSON).is_file():
            return "classifier"
        if any((d / OPEN_CLIP_CONFIG).is_file() for d in (p, p / MODEL_SUBDIR)):
            return "open_clip"
        if any(_is_encoder_dir(d) for d in (p, p / ENCODER_SUBDIR)):
            return "encoder"
        if is_hf_clip_dir(p):
            return "hf_clip"
        return None
    if p.is_file():
        if p.suffix == ".json":
            try:
                read_open_clip_config(p)
            except SnapsightError:
                return None
            return "open_clip_config"
        if p.suffix in WEIGHT_SUFFIXES:
            return "weights"
    return None


def _is_encoder_dir(d: Path) -> bool:
    if not (d / CONFIG_NAME).is_file():
        return False
    try:
        return read_json(d / CONFIG_NAME).get("kind") == ENCODER_KIND
    except (SnapsightError, AttributeError):
        return False


def read_open_clip_config(path: str | os.PathLike) -> dict[str, Any]:
    """The model config in an open_clip config file (bare, or under ``model_cfg`` as in a local-dir folder)."""
    path = Path(path)
    try:
        cfg = read_json(path)
    except SnapsightError as e:
        raise SnapsightError(f"cannot read the model config {path}: {e}") from e
    cfg = cfg.get("model_cfg", cfg) if isinstance(cfg, dict) else None
    if not isinstance(cfg, dict) or not all(k in cfg for k in OPEN_CLIP_CONFIG_KEYS):
        raise SnapsightError(f"{path} is not an open_clip model config (needs {', '.join(OPEN_CLIP_CONFIG_KEYS)})")
    return cfg


# ------------------------------------------------------------------------------------------------- parse


def parse_model_spec(text: str | os.PathLike | None, pretrained: str | None = None, *,
                     role: Role = "clip") -> ModelSpec:
    """Parse ``text`` (and the separate ``pretrained`` tag or weights file) into a :class:`ModelSpec`.

    ``role`` is ``"clip"`` for a CLIP model or ``"encoder"`` for an image encoder (see the module docstring).
    Raises :class:`SnapsightError` with one sentence when the spec cannot name anything loadable.
    """
    if role not in ("clip", "encoder"):
        raise ValueError(f"role must be 'clip' or 'encoder', got {role!r}")
    if text is None:
        return ModelSpec("default")
    text = str(text)
    if text.startswith(CLIP_PREFIX):
        if text != DEFAULT_SPEC:
            what = "encoder" if role == "encoder" else "model"
            raise SnapsightError(f"unknown CLIP {what} '{text}'; use clip:default, openclip:<model>[:<pretrained>] "
                                 "or local-dir:<folder>")
        return ModelSpec("default", text=text)
    if text.startswith(RANDOM_PREFIX):
        if role != "encoder":
            raise SnapsightError(f"'{text}' is a randomly initialised image encoder (for `snapsight probe "
                                 "--encoder`), not a CLIP model")
        return _parse_random(text)
    if text.startswith(OPENCLIP_PREFIX):
        name, _, tag = text[len(OPENCLIP_PREFIX):].partition(":")
        if not name:
            raise SnapsightError("openclip: needs a model name, e.g. openclip:ViT-B-32:laion2b_s34b_b79k")
        spec = _parse_clip(name, tag or pretrained, text, via_openclip=True)
    elif role == "encoder" and not text.startswith((LOCAL_DIR_PREFIX, HF_HUB_PREFIX)):
        spec = _parse_encoder_path(text)
    else:
        spec = _parse_clip(text, pretrained, text, via_openclip=False)
    if role == "encoder" and spec.kind == "hf_clip_dir":
        raise SnapsightError(f"{text} is a Hugging Face CLIP model; probes take open_clip image towers "
                             "(openclip:<model>, local-dir:<folder>, clip:default)")
    return spec


def _parse_random(text: str) -> ModelSpec:
    name, _, size = text[len(RANDOM_PREFIX):].partition("@")
    if size and not (size.isdigit() and int(size) > 0):
        raise SnapsightError(f"{text}: the image size after '@' must be a positive integer")
    return ModelSpec("random", name=name, image_size=int(size) if size else RANDOM_IMAGE_SIZE, text=text)


def _parse_encoder_path(text: str) -> ModelSpec:
    """Bare text in the encoder role: a pretrain run or encoder folder, or an open_clip folder / align run."""
    path = Path(text).expanduser()
    if not path.exists():
        raise SnapsightError(
            f"encoder not found: {path} (pass a `snapsight pretrain` run directory, its encoder/ folder, "
            "random:<backbone>@<size>, or openclip:<model>)"
        )
    if path.is_file():
        raise SnapsightError(
            f"{path} is a file; --encoder takes a `snapsight pretrain` run directory or an encoder folder "
            "(holding config.json and model.safetensors), not a bare weights or checkpoint file"
        )
    kind = detect(path)
    if kind == "export":
        raise SnapsightError(_export_not_torch(path))
    if kind == "classifier":
        raise SnapsightError(
            f"{path} is a trained classifier (snapsight probe output), not an encoder; use it with "
            "`snapsight classify --model`, or pass the encoder it was trained from"
        )
    if kind == "open_clip":
        folder = find_clip_dir(path)
        return ModelSpec("open_clip_dir", name=folder.name, path=folder, text=text)
    if kind == "hf_clip":
        return ModelSpec("hf_clip_dir", name=path.name, path=path, text=text)
    folder = find_encoder_dir(path)  # raises "no snapsight encoder found in ..." for any other folder
    return ModelSpec("encoder", name=folder.name, path=folder, text=text)


def _parse_clip(model: str, pretrained: str | None, text: str, via_openclip: bool) -> ModelSpec:
    """The CLIP grammar: prefixes, then what an existing path holds, then open_clip names and Hub ids."""
    if model.startswith(LOCAL_DIR_PREFIX):
        folder = Path(model[len(LOCAL_DIR_PREFIX):]).expanduser()
        if not (folder / OPEN_CLIP_CONFIG).is_file():
            raise SnapsightError(f"{folder} is not an open_clip folder ({OPEN_CLIP_CONFIG} missing)")
        return ModelSpec("open_clip_dir", name=folder.name, path=folder, text=text)
    if model.startswith(HF_HUB_PREFIX):
        repo = model[len(HF_HUB_PREFIX):].strip("/")
        if not repo:
            raise SnapsightError("hf-hub: needs a repo id, e.g. hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
        return ModelSpec("hub", name=repo, text=text)
    path = Path(model).expanduser()
    if path.is_dir():
        kind = detect(path)
        if kind == "open_clip":
            folder = find_clip_dir(path)
            return ModelSpec("open_clip_dir", name=folder.name, path=folder, text=text)
        if kind == "hf_clip":
            return ModelSpec("hf_clip_dir", name=path.name, path=path, text=text)
        if kind == "export":
            raise SnapsightError(_export_not_torch(path))
        raise SnapsightError(
            f"{path} is neither an open_clip folder (open_clip_config.json + weights) "
            "nor a Hugging Face CLIP folder (config.json with model_type clip)"
        )
    if path.is_file():
        if path.suffix == ".json":
            read_open_clip_config(path)  # raises when it is not one
            pretrained = _check_weights(path.stem, pretrained, via_openclip)
            return ModelSpec("open_clip_config", name=path.stem, path=path, pretrained=pretrained, text=text)
        if path.suffix in WEIGHT_SUFFIXES:
            if (path.parent / OPEN_CLIP_CONFIG).is_file():
                return ModelSpec("open_clip_dir", name=path.parent.name, path=path.parent, text=text)
            raise SnapsightError(
                f"{path} is a weights file without an architecture; pass --model NAME (e.g. ViT-B-32) "
                f"--pretrained {path}"
            )
        raise SnapsightError(f"{path} is not a model folder, weights file or open_clip config")
    name = model.replace("/", "-")  # OpenAI spells ViT-B/32; open_clip ViT-B-32
    if name in _open_clip_names():
        return ModelSpec("open_clip_name", name=name, pretrained=_check_weights(name, pretrained, via_openclip),
                         text=text)
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        return ModelSpec("hub", name=model, text=text)
    if any(sep in model for sep in ("/", os.sep)) or model.endswith(WEIGHT_SUFFIXES + (".json",)):
        raise SnapsightError(f"model path not found: {model}")
    see = "see `python -c \"import open_clip; print(open_clip.list_models())\"`"
    if via_openclip:
        raise SnapsightError(f"{text}: '{name}' is not an open_clip model name; {see}")
    raise SnapsightError(f"'{name}' is neither an open_clip model name, a local file/folder nor a hf-hub: id; {see}")


def _export_not_torch(path: Path) -> str:
    return (f"{path} is an ONNX export (snapsight export), which runs without torch: pass it to `snapsight classify "
            "--model` or `snapsight demo --model`, or load it with snapsight.load_export()")


def _open_clip_names() -> list[str]:
    import open_clip

    return open_clip.list_models()


def _check_weights(name: str, pretrained: str | None, via_openclip: bool) -> str:
    """``pretrained`` for open_clip model ``name``: an existing file (returned expanded) or a known tag."""
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    if not pretrained:
        tags = ", ".join(list_pretrained_tags_by_model(name)[:6])
        if via_openclip:
            raise SnapsightError(f"openclip:{name} needs weights: openclip:{name}:<tag> ({tags or 'no tag known'}) "
                                 "or a weights file")
        raise SnapsightError(f"open_clip model '{name}' needs --pretrained: a tag ({tags or 'none known'}) or a "
                             "weights file")
    file = Path(pretrained).expanduser()
    if file.is_file():
        return str(file)
    if not get_pretrained_cfg(name, pretrained):
        tags = list_pretrained_tags_by_model(name)
        known = ", ".join(tags[:8]) + (", ..." if len(tags) > 8 else "") if tags else "none known"
        raise SnapsightError(f"'{pretrained}' is neither a pretrained tag of {name} ({known}) nor a file")
    return pretrained
