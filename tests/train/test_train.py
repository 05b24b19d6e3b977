import json
import math

import pytest
import torch
from torch import nn

from snapsight.backbones import load_encoder
from snapsight.errors import SnapsightError
from snapsight.train.callbacks import Snapshots
from snapsight.train.loop import TrainConfig, fit, latest_checkpoint
from snapsight.train.monitor import KNNMonitor, read_metrics
from snapsight.train.optim import LARS, warmup_cosine

from ._tiny import tiny_source, tiny_task


def _cfg(**kw):
    base = dict(epochs=2, batch_size=8, lr=0.5, warmup_epochs=1, log_every=1, progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_warmup_cosine_schedule():
    values = [warmup_cosine(s, 4, 20, 0.1) for s in range(20)]
    assert values[:4] == [0.25, 0.5, 0.75, 1.0]
    assert values[4] == pytest.approx(1.0) and values[-1] > 0.1
    assert warmup_cosine(20, 4, 20, 0.1) == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values[3:], values[4:]))


def test_lars_trust_ratio_scales_the_step():
    w = nn.Parameter(torch.full((2, 2), 2.0))
    w.grad = torch.full((2, 2), 100.0)
    LARS([{"params": [w], "lars_exclude": False, "weight_decay": 0.0}], lr=1.0, eta=0.001).step()
    # trust = eta * ||w|| / ||g|| = 0.001 * 4 / 200, so the step is 0.002 per entry
    assert torch.allclose(w, torch.full((2, 2), 2.0 - 100 * 0.001 * 4 / 200))


@pytest.mark.parametrize("optimizer,precision", [("lars", "fp32"), ("sgd", "bf16"), ("adamw", "fp32")])
def test_fit_writes_a_complete_run(tmp_path, optimizer, precision):
    src = tiny_source()
    knn = KNNMonitor(*src.labeled_sample(16), *src.labeled_sample(8, exclude=16), k=5)
    result = fit(tiny_task(), src.loader(8), _cfg(optimizer=optimizer, precision=precision), tmp_path, knn=knn)
    assert result.step == 8 and result.epoch == 2 and not result.interrupted
    records = read_metrics(tmp_path / "metrics.jsonl")
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert all(math.isfinite(r["loss"]) and r["lr"] > 0 and r["images_per_s"] > 0 for r in steps)
    assert [r["epoch"] for r in records if "knn_acc" in r] == [1, 2]
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000
    assert json.loads((tmp_path / "train_state.json").read_text())["status"] == "completed"
    assert latest_checkpoint(tmp_path).name == "step-000000008"
    model, prep, meta = load_encoder(tmp_path)
    assert meta["method"] == "simclr" and prep.image_size == 8
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, model.num_features)


def test_existing_run_needs_resume_and_resume_needs_a_checkpoint(tmp_path):
    src = tiny_source(16)
    with pytest.raises(SnapsightError, match="nothing to resume"):
        fit(tiny_task(), src.loader(8), _cfg(epochs=1), tmp_path / "new", resume=True)
    fit(tiny_task(), src.loader(8), _cfg(epochs=1), tmp_path / "run")
    with pytest.raises(SnapsightError, match="--resume"):
        fit(tiny_task(), src.loader(8), _cfg(epochs=1), tmp_path / "run")


def test_time_budget_and_snapshots(tmp_path):
    src = tiny_source(16)
    result = fit(tiny_task(), src.loader(8), _cfg(epochs=100, max_minutes=1e-6), tmp_path,
                 callbacks=[Snapshots(minutes=[0.0])])
    assert result.step == 1 and result.interrupted is False
    assert json.loads((tmp_path / "train_state.json").read_text())["status"] == "stopped"
    load_encoder(tmp_path / "snapshots" / "0min")
    assert json.loads((tmp_path / "snapshots" / "0min" / "snapshot.json").read_text())["step"] == 1
    load_encoder(tmp_path)


def test_bad_settings_are_reported(tmp_path):
    with pytest.raises(SnapsightError, match="optimizer"):
        fit(tiny_task(), tiny_source(16).loader(8), _cfg(optimizer="adam"), tmp_path)
    with pytest.raises(SnapsightError, match="fp16"):
        fit(tiny_task(), tiny_source(16).loader(8), _cfg(precision="fp16"), tmp_path / "b")


@pytest.mark.parametrize("precision,native,expected", [
    ("auto", True, torch.bfloat16),  # AVX512-BF16 / AMX: bf16 autocast
    ("auto", False, None),  # AVX2 only: bf16 would be emulated, ~9x slower than fp32
    ("bf16", False, torch.bfloat16),  # an explicit choice is honoured
])
def test_precision_auto_asks_the_cpu(tmp_path, monkeypatch, precision, native, expected):
    from snapsight import runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    task = tiny_task()
    seen, step = [], task.training_step

    def recording_step(batch):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return step(batch)

    task.training_step = recording_step
    fit(task, tiny_source(16).loader(8), _cfg(epochs=1, precision=precision), tmp_path)
    assert seen == [expected, expected]


def test_settings_are_checked_where_the_config_is_read():
    from snapsight.config import from_dict
    from snapsight.errors import ConfigError

    with pytest.raises(ConfigError, match="train.batch_size must be at least 1, got 0"):
        from_dict(TrainConfig, {"batch_size": 0}, prefix="train.")
    with pytest.raises(ConfigError, match="'train.optimizer': 'adam' is not one of"):
        from_dict(TrainConfig, {"optimizer": "adam"}, prefix="train.")
    with pytest.raises(ConfigError, match="'train.precision'"):
        from_dict(TrainConfig, {"precision": "fp8"}, prefix="train.")
    with pytest.raises(ConfigError, match="train.log_every must be at least 1"):
        TrainConfig(log_every=0)
    with pytest.raises(ConfigError, match="train.min_lr_ratio must be between 0 and 1"):
        TrainConfig(min_lr_ratio=1.5)
    with pytest.raises(ConfigError, match="train.betas"):
        TrainConfig(betas=[0.9])
    assert from_dict(TrainConfig, {"optimizer": "adamw", "precision": "bf16"}).precision == "bf16"


class _PoisonGrad(torch.autograd.Function):
    """Identity forward; the gradient it sends back is NaN on the steps listed (a finite loss all the same)."""

    @staticmethod
    def forward(ctx, x, poison):
        ctx.poison = poison
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return (torch.full_like(g, float("nan")) if ctx.poison else g), None


class _PoisonTask(nn.Module):
    def __init__(self, bad_steps):
        super().__init__()
        self.w = nn.Parameter(torch.ones(4))
        self.bad_steps, self.calls = set(bad_steps), 0

    def training_step(self, batch):
        poison = self.calls in self.bad_steps
        self.calls += 1
        return {"loss": (_PoisonGrad.apply(self.w, poison) * batch).sum() ** 2}

    def export(self, out_dir):
        return None


@pytest.mark.parametrize("bad_steps,raises", [({1}, False), (set(range(2, 12)), True)])
def test_bf16_steps_with_non_finite_gradients_are_skipped(tmp_path, bad_steps, raises):
    """A NaN gradient under a finite loss never reaches the weights; a run of them stops with one sentence."""
    data = [torch.full((4,), 0.1)] * 12
    task = _PoisonTask(bad_steps)
    cfg = TrainConfig(epochs=1, optimizer="sgd", lr=0.1, lr_scaling="none", warmup_steps=0, precision="bf16",
                      device="cpu", progress=False, checkpoint_minutes=0, steps_per_epoch=12)
    if raises:
        with pytest.raises(SnapsightError, match="not finite in 5 steps in a row"):
            fit(task, data, cfg, tmp_path / "run")
        assert torch.isfinite(task.w).all()
        return
    fit(task, data, cfg, tmp_path / "run")
    assert torch.isfinite(task.w).all() and not torch.equal(task.w.detach(), torch.ones(4))
