"""The CLIP loss: symmetric InfoNCE over image-text pairs, negatives gathered from every process."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..train import distributed as dist_utils


def clip_contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (Radford et al. 2021, fig. 3; open_clip ``ClipLoss`` with ``local_loss``).

    ``image_features``, ``text_features``: ``(batch, dim)``, L2-normalised, this process's pairs (row ``i``
    of each is a pair). ``logit_scale``: the temperature's inverse, already exponentiated. Under DDP the
    features of every process are gathered (with gradients) and serve as negatives.

    ``groups``: ``(batch,)`` int class ids or None. Pairs with the same id ``>= 0`` are positives of each
    other (the target row is uniform over them, UniCL), ``-1`` means "only my own caption". Without
    groups this is exactly ``ClipLoss``: ``(CE(s * I T^T, arange) + CE(s * T I^T, arange)) / 2``.
    """
    all_img = dist_utils.gather_with_grad(image_features)
    all_txt = dist_utils.gather_with_grad(text_features)
    b = image_features.shape[0]
    offset = dist_utils.get_rank() * b
    logits_per_image = logit_scale * image_features @ all_txt.T  # (b, world * b)
    logits_per_text = logit_scale * text_features @ all_img.T
    if groups is None:
        target = torch.arange(b, device=image_features.device) + offset
        return 0.5 * (F.cross_entropy(logits_per_image, target) + F.cross_entropy(logits_per_text, target))
    all_groups = dist_utils.gather_with_grad(groups.view(-1, 1).float()).view(-1).long() if \
        dist_utils.is_distributed() else groups
    n = all_groups.shape[0]
    rows = torch.arange(b, device=image_features.device)
    own = torch.zeros(b, n, dtype=torch.bool, device=image_features.device)
    own[rows, rows + offset] = True
    same = (groups.view(-1, 1) == all_groups.view(1, -1)) & (groups.view(-1, 1) >= 0)
    target = (own | same).float()
    target = target / target.sum(dim=1, keepdim=True)
    loss_i = -(target * F.log_softmax(logits_per_image, dim=1)).sum(dim=1).mean()
    loss_t = -(target * F.log_softmax(logits_per_text, dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_i + loss_t)
