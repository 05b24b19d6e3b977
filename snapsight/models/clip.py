"""Load CLIP models for zero-shot classification, always with the preprocessing and tokenizer of their weights.

:func:`load_clip` accepts every CLIP form of the one model-name grammar, parsed by
:func:`snapsight.artifacts.spec.parse_model_spec` (its module docstring has the table): ``None`` or ``clip:default``
(the project's default model), an open_clip name with a pretrained tag or weights file, an open_clip config file,
``local-dir:DIR`` or a folder (open_clip, a ``snapsight align`` run, a Hugging Face ``CLIPModel``), ``hf-hub:org/repo``
or ``org/repo``, and ``openclip:NAME[:TAG]``.

Every model comes back as a :class:`LoadedClip` whose ``model`` has open_clip's interface
(``encode_image``, ``encode_text``, ``logit_scale`` as a log-scale parameter, ``logit_bias``);
Hugging Face models are wrapped by :class:`HFCLIPAdapter`. ``preprocess`` turns a PIL image into a
tensor and ``tokenizer`` turns texts into ``(n, context_length)`` token ids, both taken from the
weights' own config.

Offline: with ``HF_HUB_OFFLINE=1``, or when the Hub cannot be reached (checked once with a 2-second
connection attempt instead of the Hub client's ~20 s of retries), models in the local Hugging Face
cache load; a model that is not cached raises :class:`SnapsightError` saying what to download or pass.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from ..artifacts.clip_dir import ALIGN_META, CLIP_KIND, OPEN_CLIP_CONFIG, relocate_clip_dir
from ..artifacts.files import state_dict_hash
from ..artifacts.spec import WEIGHT_SUFFIXES, ModelSpec, parse_model_spec, read_open_clip_config
from ..errors import SnapsightError
from .default import DEFAULT_MODEL_NAME, default_model_dir

log = logging.getLogger(__name__)


@dataclass
class LoadedClip:
    """A CLIP model with the transforms that belong to its weights.

    ``model``: open_clip-style module; ``preprocess``: PIL -> ``(3, H, W)`` tensor;
    ``tokenizer``: ``list[str]`` -> ``(n, context_length)`` int64; ``info``: name, pretrained, source,
    kind (``open_clip`` | ``hf``), image size, context length, weights fingerprint.
    """

    model: nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    preprocess_batch_fn: Callable[[list[Image.Image]], torch.Tensor] | None = None

    def preprocess_batch(self, images: list[Image.Image]) -> torch.Tensor:
        """PIL images -> ``(batch, 3, H, W)`` float tensor."""
        if self.preprocess_batch_fn is not None:
            return self.preprocess_batch_fn(images)
        return torch.stack([self.preprocess(im) for im in images])


# --------------------------------------------------------------------------------------------- offline


def _hub_host() -> str:
    try:
        from huggingface_hub import constants

        return urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    except Exception:  # noqa: BLE001
        return "huggingface.co"


@functools.lru_cache(maxsize=1)
def _hub_reachable() -> bool:
    try:
        with socket.create_connection((_hub_host(), 443), timeout=2.0):
            return True
    except OSError:
        return False


def hub_offline() -> bool:
    """True when the Hub must not be contacted: ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` set, or no route."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return True
    return not _hub_reachable()


@contextlib.contextmanager
def _offline_hub(enabled: bool) -> Iterator[None]:
    """Make huggingface_hub answer from its cache only (its own ``HF_HUB_OFFLINE`` switch, read per call)."""
    if not enabled:
        yield
        return
    from huggingface_hub import constants

    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def _not_available(what: str, offline: bool, hint: str, err: Exception | None = None) -> SnapsightError:
    where = "is not in the local cache and the Hugging Face Hub cannot be reached" if offline else "could not be downloaded"
    detail = f" ({type(err).__name__})" if err is not None and not offline else ""
    return SnapsightError(f"{what} {where}{detail}; {hint}")


# --------------------------------------------------------------------------------------------- fingerprints


def file_fingerprint(path: str | Path) -> str:
    """Cheap identity of a weights file: size, mtime and a hash of its first and last MiB.

    Hashing a 600 MB checkpoint on every start would cost a second; this changes whenever the file
    is rewritten, which is what the label-index cache needs to know.
    """
    path = Path(path)
    st = path.stat()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > (2 << 20):
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return h.hexdigest()


def _fingerprint(paths: list[str | Path], extra: Any = None) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    for p in sorted(str(p) for p in paths):
        h.update(file_fingerprint(p).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- open_clip


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
            "fingerprint": _fingerprint([ckpt, directory / OPEN_CLIP_CONFIG])}
    return _open_clip_bundle(model, preprocess, tokenizer, info)


def _register_config_file(path: Path) -> str:
    """Make an open_clip config file known to open_clip under its stem (as its own ``model_configs/*.json``)."""
    import open_clip

    read_open_clip_config(path)  # one sentence when it is not a model config
    open_clip.add_model_config(path)
    return path.stem


def _load_open_clip_named(name: str, pretrained: str, cache_dir: str | None) -> LoadedClip:
    """A registered open_clip model with a pretrained tag or weights file (both checked by the spec parser)."""
    import open_clip
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
            with _offline_hub(offline):
                ckpt = download_pretrained(tag_cfg, cache_dir=cache_dir)
        except Exception as e:  # noqa: BLE001 - hub/urllib raise many types; all mean "not available"
            source = tag_cfg.get("hf_hub") or tag_cfg.get("url") or "the Hub"
            raise _not_available(
                what, offline,
                f"download them once with network access (from {source}) or pass --pretrained a local weights file",
                e) from e
        if not ckpt:
            raise _not_available(what, offline, "pass --pretrained a local weights file")
    # Tags trained with QuickGELU (e.g. "openai") on a config without it only get a warning from open_clip and
    # give different embeddings; follow the tag, as the "-quickgelu" model names do.
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    try:
        with _offline_hub(offline):
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, cache_dir=cache_dir, force_quick_gelu=quick_gelu)
        tokenizer = open_clip.get_tokenizer(name)
    except RuntimeError as e:
        raise SnapsightError(f"cannot load {name} with weights {pretrained}: {str(e).splitlines()[0][:300]}") from e
    info = {"name": name, "pretrained": pretrained, "source": str(ckpt), "fingerprint": _fingerprint([ckpt], extra)}
    return _open_clip_bundle(model, preprocess, tokenizer, info)


def _load_open_clip_hub(repo: str, cache_dir: str | None) -> LoadedClip | None:
    """open_clip repo on the Hub; None when the repo has no open_clip_config.json (then try transformers)."""
    import open_clip
    from huggingface_hub import hf_hub_download
    from open_clip.pretrained import download_pretrained_from_hf

    offline = hub_offline()
    try:
        with _offline_hub(offline):
            hf_hub_download(repo, "open_clip_config.json", cache_dir=cache_dir)
    except Exception:  # noqa: BLE001
        return None
    try:
        with _offline_hub(offline):
            ckpt = download_pretrained_from_hf(repo, cache_dir=cache_dir)
            model, _, preprocess = open_clip.create_model_and_transforms(f"hf-hub:{repo}", cache_dir=cache_dir)
            tokenizer = open_clip.get_tokenizer(f"hf-hub:{repo}", cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001
        raise _not_available(f"the weights of hf-hub:{repo}", offline,
                             "download the repo once with network access or pass --model a local folder", e) from e
    info = {"name": f"hf-hub:{repo}", "pretrained": None, "source": str(ckpt), "fingerprint": _fingerprint([ckpt])}
    return _open_clip_bundle(model, preprocess, tokenizer, info)


# --------------------------------------------------------------------------------------------- Hugging Face


class HFCLIPAdapter(nn.Module):
    """open_clip's interface over a transformers ``CLIPModel`` (``get_image_features``/``get_text_features``).

    ``logit_scale`` is the model's log-scale parameter, as in open_clip (``logit_scale.exp()`` multiplies
    cosines). transformers 5 returns ``BaseModelOutputWithPooling`` from ``get_*_features``; the projected
    embedding is its ``pooler_output``.
    """

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model
        self.logit_scale = hf_model.logit_scale
        self.logit_bias = getattr(hf_model, "logit_bias", None)
        text_cfg = hf_model.config.text_config
        self.context_length = int(text_cfg.max_position_embeddings)
        self.eos_token_id = getattr(text_cfg, "eos_token_id", None)

    @staticmethod
    def _pooled(out: Any) -> torch.Tensor:
        return out.pooler_output if hasattr(out, "pooler_output") else out

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = self._pooled(self.hf.get_image_features(pixel_values=image))
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = self._pooled(self.hf.get_text_features(input_ids=text))
        return F.normalize(x, dim=-1) if normalize else x


class HFTokenizer:
    """transformers tokenizer -> open_clip-style ``(n, context_length)`` token ids (padded, truncated)."""

    def __init__(self, tokenizer: Any, context_length: int):
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.pad_token_id = tokenizer.pad_token_id
        self.eos_token_id = tokenizer.eos_token_id

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = self.tokenizer(texts, padding="max_length", truncation=True,
                             max_length=context_length or self.context_length, return_tensors="pt")
        return out["input_ids"]


def _load_hf(source: str, is_dir: bool, cache_dir: str | None) -> LoadedClip:
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    offline = False if is_dir else hub_offline()
    kwargs: dict[str, Any] = {"cache_dir": cache_dir} if cache_dir else {}
    if offline:
        kwargs["local_files_only"] = True
    try:
        with _offline_hub(offline):
            hf_model = CLIPModel.from_pretrained(source, **kwargs)
            tok = AutoTokenizer.from_pretrained(source, **kwargs)
            processor = AutoImageProcessor.from_pretrained(source, **kwargs)
            if is_dir:
                folder = Path(source)
            else:
                from huggingface_hub import hf_hub_download

                folder = Path(hf_hub_download(source, "config.json", **kwargs)).parent
    except (OSError, ValueError) as e:
        if is_dir:
            raise SnapsightError(f"cannot load the Hugging Face CLIP folder {source}: {str(e).splitlines()[0][:300]}") from e
        raise _not_available(f"the Hugging Face model {source}", offline,
                             "download it once with network access or pass --model a local folder", e) from e
    hf_model.eval()
    adapter = HFCLIPAdapter(hf_model)
    tokenizer = HFTokenizer(tok, adapter.context_length)

    def preprocess_batch(images: list[Image.Image]) -> torch.Tensor:
        return processor(images=list(images), return_tensors="pt")["pixel_values"]

    def preprocess(image: Image.Image) -> torch.Tensor:
        return preprocess_batch([image])[0]

    weights = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    info = {
        "name": source if not is_dir else folder.name,
        "pretrained": None,
        "source": str(folder),
        "kind": "hf",
        "image_size": int(hf_model.config.vision_config.image_size),
        "context_length": adapter.context_length,
        "preprocess": {k: v for k, v in processor.to_dict().items() if not k.startswith("_")},
        "fingerprint": _fingerprint(weights + [folder / "config.json"]) if weights else state_dict_hash(hf_model)[:32],
    }
    return LoadedClip(model=adapter, preprocess=preprocess, tokenizer=tokenizer, info=info,
                      preprocess_batch_fn=preprocess_batch)


# --------------------------------------------------------------------------------------------- dispatch


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
        return _load_hf(str(spec.path), is_dir=True, cache_dir=cache_dir)
    if spec.kind == "hub":
        bundle = _load_open_clip_hub(spec.name, cache_dir)
        return bundle if bundle is not None else _load_hf(spec.name, is_dir=False, cache_dir=cache_dir)
    if spec.kind == "open_clip_config":
        return _load_open_clip_named(_register_config_file(spec.path), spec.pretrained, cache_dir)
    if spec.kind == "open_clip_name":
        return _load_open_clip_named(spec.name, spec.pretrained, cache_dir)
    raise SnapsightError(f"'{spec.text}' is a snapsight image encoder ({spec.kind}), not a CLIP model")


# --------------------------------------------------------------------------------------------- text encoding


def _open_clip_text_parts(model: nn.Module) -> dict[str, Any] | None:
    """The pieces of an open_clip causal text tower, or None when trimming padding would not be exact."""
    try:
        from open_clip.transformer import TextTransformer
    except ImportError:  # pragma: no cover
        return None
    owner = None
    if hasattr(model, "token_embedding") and hasattr(model, "ln_final"):  # open_clip.CLIP
        owner = model
        parts = dict(pool=model.text_pool_type, eos=getattr(model, "text_eos_id", None), mask=model.attn_mask)
    elif isinstance(getattr(model, "text", None), TextTransformer):  # CustomTextCLIP with a built-in text tower
        owner = model.text
        if owner.cls_emb is not None or getattr(owner, "use_pad_mask", False):
            return None
        parts = dict(pool=owner.pool_type, eos=getattr(owner, "eos_id", None), mask=owner.attn_mask)
    else:
        return None
    if parts["mask"] is None or parts["pool"] not in ("argmax", "eos"):
        return None  # bidirectional attention or last-token pooling: padding changes the result
    parts.update(token_embedding=owner.token_embedding, positional_embedding=owner.positional_embedding,
                 transformer=owner.transformer, ln_final=owner.ln_final, text_projection=owner.text_projection)
    return parts


def _content_length(tokens: torch.Tensor, pool: str, eos: int | None) -> int:
    """Length that keeps every row's pooled token: up to the last row's EOT (argmax) / first EOS."""
    if pool == "argmax":
        pos = tokens.argmax(dim=-1)
    else:
        pos = (tokens == eos).int().argmax(dim=-1)
    return int(pos.max().item()) + 1


def token_lengths(bundle: LoadedClip, tokens: torch.Tensor) -> torch.Tensor:
    """Per-row content length ``(n,)``: tokens up to and including the pooled end-of-text token.

    A row whose length equals the context length was (or may have been) truncated by the tokenizer.
    """
    model = bundle.model
    if isinstance(model, HFCLIPAdapter):
        eos = model.eos_token_id
        if eos == 2 or eos is None:
            return tokens.argmax(dim=-1) + 1
        return (tokens == eos).int().argmax(dim=-1) + 1
    parts = _open_clip_text_parts(model)
    if parts is not None and parts["pool"] == "eos":
        return (tokens == parts["eos"]).int().argmax(dim=-1) + 1
    if parts is not None:
        return tokens.argmax(dim=-1) + 1
    nonzero = tokens != 0  # open_clip tokenizers pad with 0
    positions = torch.arange(1, tokens.shape[1] + 1).expand_as(tokens)
    return torch.where(nonzero, positions, torch.zeros_like(positions)).max(dim=1).values


def encode_text_trimmed(bundle: LoadedClip, tokens: torch.Tensor) -> torch.Tensor:
    """Text embeddings (unnormalised) computed at the batch's longest-prompt length instead of full context.

    Exact for causal text towers that pool at the end-of-text token (CLIP): position ``i`` attends
    only to positions ``<= i``, so the padding after the EOT token never reaches it. Proven equal to
    the full-length encoding in ``tests/zeroshot/test_models.py``; other towers use the full length.
    """
    model = bundle.model
    if isinstance(model, HFCLIPAdapter):
        eos = model.eos_token_id
        if eos == 2 or eos is None:  # legacy CLIP configs pool with argmax (see transformers' CLIPTextModel)
            length = _content_length(tokens, "argmax", None)
        else:
            length = _content_length(tokens, "eos", eos)
        return model.encode_text(tokens[:, :length])
    parts = _open_clip_text_parts(model)
    if parts is None:
        return model.encode_text(tokens)
    from open_clip.transformer import text_global_pool

    length = _content_length(tokens, parts["pool"], parts["eos"])
    t = tokens[:, :length]
    cast_dtype = parts["transformer"].get_cast_dtype()
    x = parts["token_embedding"](t).to(cast_dtype)
    x = x + parts["positional_embedding"][:length].to(cast_dtype)
    x = parts["transformer"](x, attn_mask=parts["mask"][:length, :length])
    x = parts["ln_final"](x)
    x = text_global_pool(x, t, parts["pool"], eos_token_id=parts["eos"])
    proj = parts["text_projection"]
    if proj is not None:
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
    return x
