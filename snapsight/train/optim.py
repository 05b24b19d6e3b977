"""Optimizers and the learning-rate schedule of the training loop: LARS, parameter groups, warm-up + cosine."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import SnapsightError
from .config import TrainConfig


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017), as used by SimCLR (Chen et al. 2020, sec. B.1).

    Each weight's update ``g + wd * w`` is rescaled by the trust ratio ``eta * ||w|| / ||g + wd * w||``
    before SGD-with-momentum. Groups with ``lars_exclude=True`` (biases, norm layers) take a plain SGD step.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=False))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                dp = p.grad
                if not group["lars_exclude"]:
                    if group["weight_decay"]:
                        dp = dp.add(p, alpha=group["weight_decay"])
                    p_norm, d_norm = torch.norm(p), torch.norm(dp)
                    one = torch.ones_like(p_norm)
                    trust = torch.where(p_norm > 0, torch.where(d_norm > 0, group["eta"] * p_norm / d_norm, one), one)
                    dp = dp.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(dp).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(dp)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def default_param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weights get weight decay; biases and norm parameters (``ndim <= 1``) get none and no LARS scaling."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "lars_exclude": False}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True})
    return [g for g in groups if g["params"]]


def peak_lr(cfg: TrainConfig) -> float:
    """``cfg.lr`` scaled to the global batch (``lr * f(batch_size / 256)``, ``f`` from ``cfg.lr_scaling``)."""
    ratio = cfg.batch_size / 256
    if cfg.lr_scaling == "linear":
        return cfg.lr * ratio
    if cfg.lr_scaling == "sqrt":
        return cfg.lr * math.sqrt(ratio)
    if cfg.lr_scaling == "none":
        return cfg.lr
    raise SnapsightError(f"train.lr_scaling must be linear, sqrt or none, got '{cfg.lr_scaling}'")


def build_optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optimizer`` over ``groups``.

    A group's own ``lr`` or ``weight_decay`` entry wins over the config's (a task's lower lr for a pretrained
    part); ``lars_exclude`` is read by LARS only.
    """
    lr = peak_lr(cfg)
    name = cfg.optimizer.lower()
    if name == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    clean = [{k: v for k, v in g.items() if k != "lars_exclude"} for g in groups]
    if name == "sgd":
        return torch.optim.SGD(clean, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(clean, lr=lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise SnapsightError(f"train.optimizer must be lars, sgd or adamw, got '{cfg.optimizer}'")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr at ``step``: linear warm-up, then half-cosine decay to ``min_ratio``
    (SGDR, Loshchilov & Hutter 2017, without restarts)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, progress))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_steps(cfg: TrainConfig, steps_per_epoch: int, total_steps: int) -> int:
    """Warm-up length in steps: ``warmup_steps``, else ``warmup_epochs`` epochs; always shorter than the run."""
    warmup = cfg.warmup_steps or int(round(cfg.warmup_epochs * steps_per_epoch))
    return min(warmup, max(0, total_steps - 1))


def build_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step warm-up + cosine on every group's own lr (stepped once per optimizer step)."""
    warmup = warmup_steps(cfg, steps_per_epoch, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup, total_steps, cfg.min_lr_ratio))
