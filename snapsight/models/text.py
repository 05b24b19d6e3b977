"""Text embeddings of CLIP towers at the batch's longest-prompt length instead of the full context."""
from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn

from .hf_clip import HFCLIPAdapter
from .hub import LoadedClip

log = logging.getLogger(__name__)


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
