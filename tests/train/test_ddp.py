"""Two CPU processes (gloo) give the same loss, gradients and trained weights as one process on the
same global batch: negatives are gathered across ranks with gradients, DDP averages the rest."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from snapsight.data.sources import TensorSource
from snapsight.preprocessing import Preprocessing
from snapsight.ssl.augment import AugmentConfig, SimCLRViewTransform
from snapsight.ssl.heads import SimCLRProjectionHead
from snapsight.ssl.simclr import SimCLRTask
from snapsight.train.loop import TrainConfig, fit
from snapsight.train.run import StepModule

pytestmark = pytest.mark.slow

SIZE = 8
IDENTITY_AUG = AugmentConfig(crop_scale=[1.0, 1.0], crop_ratio=[1.0, 1.0], hflip_p=0.0, jitter_p=0.0,
                             gray_p=0.0, blur="off")


class _NoBNBackbone(nn.Module):
    """BatchNorm statistics are per process under DDP, so the equivalence is shown on a BN-free encoder."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.num_features = 24

    def forward(self, x):
        return self.net(x)


class _TwoFixedViews(SimCLRViewTransform):
    """Deterministic views (the image, and its darker mirror image): per-process augmentation randomness
    would otherwise make the two set-ups see different pixels."""

    def forward(self, images):
        x = self.to_float(images.to(self.mean.device))
        return self.view(x), self.view(x.flip(-1) * 0.8)


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (16, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)


def _make_task():
    torch.manual_seed(0)
    prep = Preprocessing(image_size=SIZE, mean=(0.5,) * 3, std=(0.25,) * 3)
    return SimCLRTask(_NoBNBackbone(), SimCLRProjectionHead(24, 16, 8, batch_norm=False),
                      _TwoFixedViews(IDENTITY_AUG, prep), prep, temperature=0.5, backbone_name="test")


def _cfg():
    # fp32: bf16 rounding (precision auto on a CPU with native bf16) differs between a sum over one and two shards
    return TrainConfig(epochs=2, batch_size=8, optimizer="sgd", lr=0.5, warmup_epochs=0, log_every=1,
                       progress=False, device="cpu", knn_every=0, checkpoint_minutes=0, precision="fp32")


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from snapsight.train import distributed as du

    du.init_distributed(torch.device("cpu"))
    images = _data()
    # (1) one step: loss and gradients
    task = _make_task()
    ddp = nn.parallel.DistributedDataParallel(StepModule(task))
    shard = images[:8][rank * 4:(rank + 1) * 4]
    loss = ddp({"images": shard})["loss"]
    loss.backward()
    mean_loss = du.all_reduce_mean(loss.detach())
    if rank == 0:
        torch.save({"loss": mean_loss, "grads": {n: p.grad for n, p in task.named_parameters()}},
                   os.path.join(out_dir, "step.pt"))
    # (2) a short fit through the shared loop
    src = TensorSource(images)
    fit(_make_task(), src.loader(8, seed=3, rank=rank, world_size=world), _cfg(), os.path.join(out_dir, "run"))
    du.cleanup_distributed()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)

    images = _data()
    task = _make_task()
    out = task.training_step({"images": images[:8]})
    out["loss"].backward()
    step = torch.load(tmp_path / "step.pt", weights_only=True)
    assert torch.allclose(step["loss"], out["loss"].detach(), atol=1e-6)
    for name, p in task.named_parameters():
        assert torch.allclose(step["grads"][name], p.grad, atol=1e-6), name

    single = _make_task()
    fit(single, TensorSource(images).loader(8, seed=3), _cfg(), tmp_path / "single")
    from snapsight.artifacts.files import load_weights
    from snapsight.train.loop import latest_checkpoint

    a = load_weights(latest_checkpoint(tmp_path / "run") / "model.safetensors")
    b = load_weights(latest_checkpoint(tmp_path / "single") / "model.safetensors")
    for k in b:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
