"""Prompt ensembling with torch: label and image embeddings for zero-shot classification.

Label sets and templates (pure text, no torch) live in :mod:`snapsight.labels`; they are re-exported here.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..labels import (  # noqa: F401  (re-exported)
    BUILTIN_PREFIX,
    CLIP80_TEMPLATES,
    MAX_LABEL_CHARS,
    SIMPLE_TEMPLATES,
    TEMPLATE_SETS,
    Label,
    LabelSet,
    build_label_set,
    builtin_label_set,
    check_template,
    fill_template,
    list_builtin_label_sets,
    load_label_set,
    parse_labels,
    resolve_templates,
    split_label_text,
)


def mean_prompt_embeddings(prompt_emb: torch.Tensor, owners: Sequence[int], num_labels: int) -> torch.Tensor:
    """``(num_labels, dim)``: each label's normalised mean over its prompts' normalised embeddings.

    Prompt ensembling as open_clip's ``build_zero_shot_classifier`` (Radford et al. 2021, sec. 3.1.4), for
    labels with any number of prompts. ``prompt_emb``: ``(num_prompts, dim)``, normalised;
    ``owners[i]``: the label of prompt ``i``. Stays on ``prompt_emb``'s device, float32.
    """
    owner = torch.as_tensor(list(owners), dtype=torch.long, device=prompt_emb.device)
    sums = torch.zeros(num_labels, prompt_emb.shape[1], dtype=torch.float32, device=prompt_emb.device)
    sums.index_add_(0, owner, prompt_emb.float())
    return torch.nn.functional.normalize(sums, dim=-1)  # mean and sum have the same direction


@torch.no_grad()
def text_embeddings(model: nn.Module, tokenizer: Any, labels: Sequence[Sequence[str]], templates: Sequence[str],
                    batch_size: int = 256) -> torch.Tensor:
    """One L2-normalised embedding per label: the mean over its wordings x templates (CLIP prompt
    ensembling). ``labels[c]`` lists class ``c``'s wordings. Returns ``(num_labels, dim)``."""
    device = next(model.parameters()).device
    prompts, owner = [], []
    for c, wordings in enumerate(labels):
        for w in wordings:
            for t in templates:
                prompts.append(fill_template(t, w))
                owner.append(c)
    feats = []
    for i in range(0, len(prompts), batch_size):
        feats.append(F.normalize(model.encode_text(tokenizer(prompts[i:i + batch_size]).to(device)).float(), dim=-1))

    return mean_prompt_embeddings(torch.cat(feats), owner, len(labels))


@torch.no_grad()
def image_embeddings(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Preprocessed ``(N, 3, S, S)`` -> L2-normalised ``(N, dim)``."""
    device = next(model.parameters()).device
    out = [F.normalize(model.encode_image(images[i:i + batch_size].to(device)).float(), dim=-1)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)
