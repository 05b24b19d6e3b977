"""A model's tokenizer as one ``tokenizers`` file (``tokenizer.json``) that gives the torch path's token ids.

- open_clip's ``SimpleTokenizer`` (CLIP BPE) is rebuilt from its own vocabulary and merges through transformers'
  CLIP tokenizer, padded with 0 as open_clip pads; truncation keeps the start and end tokens, as open_clip does.
- Hugging Face tokenizers (MiniLM, the default model's mpnet, ``CLIPModel`` folders) already have a ``tokenizers``
  backend; padding to the context length and truncation are set on it as the torch path calls it.

open_clip also cleans the text first (``ftfy``, HTML entities, whitespace, lower case); a ``tokenizers`` file
cannot express that, so :func:`clean_mode` names it for the manifest and :mod:`snapsight.ondevice.text` applies it on
the device. The tests compare token ids on a set of strings (punctuation, unicode, text longer than the context).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import SnapsightError


def _clip_bpe_backend(simple_tokenizer: Any) -> Any:
    from transformers import CLIPTokenizer

    st = simple_tokenizer
    specials = {st.sot_token_id: "<|startoftext|>", st.eot_token_id: "<|endoftext|>"}
    vocab = {specials.get(v, k): v for k, v in st.encoder.items()}
    merges = [tuple(m) for m, _ in sorted(st.bpe_ranks.items(), key=lambda kv: kv[1])]
    return CLIPTokenizer(vocab=vocab, merges=merges).backend_tokenizer


def clean_mode(tokenizer: Any) -> str:
    """The open_clip clean-up ``tokenizer`` applies before tokenizing: ``none`` (Hugging Face tokenizers called
    directly), ``whitespace`` or ``lower`` (see :mod:`snapsight.ondevice.text`)."""
    fn = getattr(tokenizer, "clean_fn", None)
    if fn is None:
        return "none"
    name = getattr(fn, "__name__", "")
    modes = {"_clean_lower": "lower", "_clean_whitespace": "whitespace"}
    if name not in modes:
        raise SnapsightError(f"the tokenizer's text clean-up ({name or fn!r}) has no on-device twin; it cannot be "
                             "exported")
    return modes[name]


def build_tokenizer(tokenizer: Any, context_length: int) -> Any:
    """A ``tokenizers.Tokenizer`` that pads and truncates to ``context_length`` exactly like ``tokenizer`` (the
    torch path's: open_clip ``SimpleTokenizer``/``HFTokenizer`` or snapsight's ``HFTokenizer``)."""
    from tokenizers import Tokenizer

    if hasattr(tokenizer, "bpe_ranks") and hasattr(tokenizer, "sot_token_id"):  # open_clip SimpleTokenizer
        if getattr(tokenizer, "reduction_fn", None) is not None:
            raise SnapsightError("this open_clip tokenizer drops tokens to fit (reduction mask); it cannot be exported")
        backend, pad_id, pad_token = _clip_bpe_backend(tokenizer), 0, "!"
    else:
        hf = getattr(tokenizer, "tokenizer", None)
        if hf is None or not hasattr(hf, "backend_tokenizer"):
            raise SnapsightError(f"cannot export the tokenizer {type(tokenizer).__name__}: it has no `tokenizers` "
                                 "backend")
        if getattr(tokenizer, "strip_sep_token", False) or getattr(tokenizer, "tokenizer_mode", "") not in ("", None):
            raise SnapsightError("this open_clip tokenizer post-processes token ids; it cannot be exported")
        backend, pad_id, pad_token = hf.backend_tokenizer, hf.pad_token_id, hf.pad_token
        if pad_id is None:
            raise SnapsightError("the text tower's tokenizer has no padding token; it cannot be exported")
    tk = Tokenizer.from_str(backend.to_str())
    tk.enable_truncation(max_length=int(context_length))
    tk.enable_padding(length=int(context_length), pad_id=int(pad_id), pad_token=str(pad_token))
    return tk


def save_tokenizer(tokenizer: Any, context_length: int, path: Path) -> Path:
    build_tokenizer(tokenizer, context_length).save(str(path))
    return path
