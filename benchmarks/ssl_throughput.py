"""SimCLR training throughput: snapsight next to lightly, and data pipeline next to model step.

Same backbone (the Fashion-MNIST recipe's small CNN), batch, augmentation recipe (crop min-scale 0.2,
flip, jitter strength 0.5 with p=0.8, grayscale p=0.2, no blur), projection head (features-512-128), NT-Xent
(t=0.5), LARS and precision for both:

* snapsight: uint8 batches from memory, augmented as whole tensors in the training process
  (``SimCLRViewTransform``), then the model step.
* lightly: its per-image ``SimCLRTransform`` on PIL images in DataLoader workers (its documented
  set-up), then the model step with lightly's head, loss and LARS.

Also measured: each data pipeline alone and the model step alone (on pre-made views), in images/s
(one image = one pair of views). Needs ``pip install lightly`` (the ``bench`` extra).

    .venv/bin/python benchmarks/ssl_throughput.py --batch-size 512 --steps 8
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def _timed(step, steps: int, warmup: int, batch: int) -> float:
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


class _PILDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i]).convert("RGB"))


def main() -> None:
    from snapsight.runtime import describe_cpu

    print(f"cpu: {describe_cpu()}", flush=True)  # figures depend on it: name it beside them
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/simclr-fashion-mnist.yaml")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="lightly's DataLoader workers")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the training process")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--out", default="runs/ssl/throughput")
    args = ap.parse_args()

    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead as LightlyHead
    from lightly.transforms import SimCLRTransform
    from lightly.utils.lars import LARS as LightlyLARS

    from snapsight.backbones import create_backbone
    from snapsight.config import load_config
    from snapsight.data.fashion_mnist import load_fashion_mnist
    from snapsight.ssl.simclr import PretrainConfig, SimCLRTask
    from snapsight.train.loop import build_optimizer, default_param_groups

    torch.set_num_threads(args.threads)
    cfg = load_config(PretrainConfig, args.config)
    cfg.train.batch_size = args.batch_size
    bs = args.batch_size
    raw = load_fashion_mnist("train")[0]
    n_needed = bs * (args.steps + args.warmup + 2)
    raw = raw[:n_needed]
    uint8 = torch.from_numpy(raw.copy()).unsqueeze(1)
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")  # noqa: E731
    results = {"batch_size": bs, "steps": args.steps, "threads": args.threads, "precision": args.precision,
               "workers_lightly": args.workers, "note": "2-core CPU shared with other jobs"}

    # ---------------- snapsight
    torch.manual_seed(0)
    task = SimCLRTask.from_config(cfg.model, cfg.augment)
    opt = build_optimizer(default_param_groups(task, cfg.train.weight_decay), cfg.train)
    batches = [uint8[i * bs:(i + 1) * bs] for i in range(len(uint8) // bs)]
    it = {"i": 0}

    def next_batch():
        b = batches[it["i"] % len(batches)]
        it["i"] += 1
        return b

    def ours_step():
        with autocast():
            loss = task.training_step({"images": next_batch()})["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    results["snapsight_train_images_per_s"] = _timed(ours_step, args.steps, args.warmup, bs)
    results["snapsight_augment_images_per_s"] = _timed(lambda: task.transform(next_batch()), args.steps,
                                                       args.warmup, bs)
    views = task.transform(batches[0])

    def ours_model_step():
        with autocast():
            z = task.head(task.backbone(torch.cat(views)))
            from snapsight.ssl.loss import nt_xent_loss

            loss = nt_xent_loss(*z.chunk(2), task.temperature)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    results["snapsight_model_step_images_per_s"] = _timed(ours_model_step, args.steps, args.warmup, bs)
    print(json.dumps({k: round(v) for k, v in results.items() if k.startswith("snapsight")}), flush=True)

    # ---------------- lightly
    aug = cfg.augment
    transform = SimCLRTransform(
        input_size=cfg.model.image_size, cj_prob=aug.jitter_p, cj_strength=aug.jitter_strength,
        min_scale=aug.crop_scale[0], random_gray_scale=aug.gray_p, gaussian_blur=0.0, hf_prob=aug.hflip_p,
        normalize={"mean": list(cfg.model.mean), "std": list(cfg.model.std)})
    loader = torch.utils.data.DataLoader(_PILDataset(raw, transform), batch_size=bs, shuffle=True, drop_last=True,
                                         num_workers=args.workers, persistent_workers=args.workers > 0)
    torch.manual_seed(0)
    backbone = create_backbone(cfg.model.backbone, image_size=cfg.model.image_size, **cfg.model.backbone_kwargs)
    head = LightlyHead(backbone.num_features, cfg.model.proj_hidden_dim, cfg.model.proj_out_dim)
    criterion = NTXentLoss(temperature=cfg.model.temperature)
    params = list(backbone.parameters()) + list(head.parameters())
    lopt = LightlyLARS(params, lr=cfg.train.lr * bs / 256, momentum=0.9, weight_decay=cfg.train.weight_decay)
    state = {"it": iter(loader)}

    def lightly_batch():
        try:
            return next(state["it"])
        except StopIteration:
            state["it"] = iter(loader)
            return next(state["it"])

    def lightly_step():
        (x0, x1) = lightly_batch()
        with autocast():
            z0, z1 = head(backbone(x0)), head(backbone(x1))  # lightly's examples: one pass per view
            loss = criterion(z0, z1)
        loss.backward()
        lopt.step()
        lopt.zero_grad()

    results["lightly_train_images_per_s"] = _timed(lightly_step, args.steps, args.warmup, bs)
    results["lightly_loader_images_per_s"] = _timed(lightly_batch, args.steps, args.warmup, bs)
    x0, x1 = lightly_batch()

    def lightly_model_step():
        with autocast():
            loss = criterion(head(backbone(x0)), head(backbone(x1)))
        loss.backward()
        lopt.step()
        lopt.zero_grad()

    results["lightly_model_step_images_per_s"] = _timed(lightly_model_step, args.steps, args.warmup, bs)
    results = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in results.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    table = "\n".join([
        f"| SimCLR, batch {bs}, {args.precision}, {args.threads} thread(s) | snapsight | lightly 1.x |",
        "|---|---|---|",
        f"| training (data + model), images/s | {results['snapsight_train_images_per_s']:.0f} | "
        f"{results['lightly_train_images_per_s']:.0f} |",
        f"| data pipeline alone, images/s | {results['snapsight_augment_images_per_s']:.0f} (batched tensors, "
        f"in-process) | {results['lightly_loader_images_per_s']:.0f} (PIL, {args.workers} workers) |",
        f"| model step alone, images/s | {results['snapsight_model_step_images_per_s']:.0f} | "
        f"{results['lightly_model_step_images_per_s']:.0f} |",
    ])
    (out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
