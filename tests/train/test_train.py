import json
import math

import pytest
import torch
from torch import nn

from snapsight.backbones import load_encoder
from snapsight.errors import SnapsightError
from snapsight.train.loop import LARS, TrainConfig, fit, latest_checkpoint, warmup_cosine
from snapsight.train.monitor import KNNMonitor, read_metrics

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
    result = fit(tiny_task(), src.loader(8), _cfg(epochs=100, snapshot_minutes=[0.0], max_minutes=1e-6), tmp_path)
    assert result.step == 1 and result.interrupted is False
    assert json.loads((tmp_path / "train_state.json").read_text())["status"] == "stopped"
    load_encoder(tmp_path / "snapshots" / "0min")
    load_encoder(tmp_path)


def test_bad_settings_are_reported(tmp_path):
    with pytest.raises(SnapsightError, match="optimizer"):
        fit(tiny_task(), tiny_source(16).loader(8), _cfg(optimizer="adam"), tmp_path)
    with pytest.raises(SnapsightError, match="fp16"):
        fit(tiny_task(), tiny_source(16).loader(8), _cfg(precision="fp16"), tmp_path / "b")
