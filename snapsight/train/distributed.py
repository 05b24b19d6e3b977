"""Distributed helpers: process-group set-up from ``torchrun``'s environment and a gradient-keeping all-gather.

``torchrun --nproc_per_node N -m snapsight pretrain ...`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``;
:func:`init_distributed` reads them and starts a process group (``nccl`` on CUDA, ``gloo`` on CPU). Without
them everything here degrades to single-process no-ops, so library code can call these helpers unconditionally.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> torch.device:
    """Start the process group when launched by ``torchrun`` and return this process's device.

    On CUDA each process takes GPU ``LOCAL_RANK`` and the ``nccl`` backend; on CPU the ``gloo`` backend.
    A single-process launch returns ``device`` unchanged.
    """
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return device


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over all processes (a copy; ``x`` itself is untouched). No-op when single-process."""
    if not is_distributed():
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / get_world_size()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums the incoming gradients over processes and returns this rank's slice.

    Each rank's loss uses every rank's embeddings as negatives, so the gradient reaching rank ``r``'s
    embeddings is the sum of all ranks' contributions (SimCLR, Chen et al. 2020, sec. 2.2 "global BN"/
    cross-replica negatives). DDP then averages parameter gradients over ranks, which makes the update
    equal to a single process computing the mean loss over the whole global batch.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        all_grads = torch.stack(grads)
        dist.all_reduce(all_grads, op=dist.ReduceOp.SUM)
        return all_grads[dist.get_rank()]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` ``(n, ...)`` from all processes in rank order -> ``(world_size * n, ...)``,
    keeping gradients to every rank's input. Returns ``x`` itself when single-process."""
    if not is_distributed():
        return x
    return torch.cat(_GatherWithGrad.apply(x), dim=0)


def any_process(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on any process (a collective: every process must call it)."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
