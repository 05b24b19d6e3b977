import os
import signal

import pytest
import torch

from snapsight.artifacts.files import load_weights
from snapsight.train.loop import TrainConfig, fit, latest_checkpoint
from snapsight.train.run import StepModule

from ._tiny import tiny_source, tiny_task


def _cfg(**kw):
    base = dict(epochs=3, batch_size=8, lr=0.5, warmup_epochs=1, log_every=1, progress=False, device="cpu",
                checkpoint_every=0, checkpoint_minutes=0)
    base.update(kw)
    return TrainConfig(**base)


def _weights(run):
    return load_weights(latest_checkpoint(run) / "model.safetensors")


@pytest.mark.parametrize("stop_at,epoch_after", [(5, 1), (6, 2)], ids=["mid-epoch", "last-batch-of-epoch"])
def test_kill_and_resume_equals_uninterrupted_run(tmp_path, monkeypatch, stop_at, epoch_after):
    src = tiny_source(24)  # 3 steps per epoch, 9 in all
    torch.manual_seed(123)
    full = fit(tiny_task(), src.loader(8, seed=5), _cfg(), tmp_path / "full")

    # Second run: a real SIGTERM arrives during step 5 (mid-epoch) or step 6 (an epoch's last batch, where a resume
    # must start the next epoch rather than skip into an empty one); the loop saves and returns.
    original = StepModule.forward
    calls = {"n": 0}

    def forward_with_signal(self, batch):
        calls["n"] += 1
        if calls["n"] == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, batch)

    monkeypatch.setattr(StepModule, "forward", forward_with_signal)
    torch.manual_seed(123)
    stopped = fit(tiny_task(), src.loader(8, seed=5), _cfg(), tmp_path / "run")
    assert stopped.interrupted and stopped.step == stop_at and stopped.epoch == epoch_after
    assert (tmp_path / "run" / "encoder" / "config.json").is_file()  # an interrupted run still exports
    monkeypatch.setattr(StepModule, "forward", original)

    torch.manual_seed(999)  # a different global RNG at restart: the checkpoint must restore it
    resumed = fit(tiny_task(seed=7), src.loader(8, seed=5), _cfg(), tmp_path / "run", resume=True)
    assert resumed.step == full.step == 9 and resumed.epoch == full.epoch == 3
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "run")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # The metrics history is continuous: one line per step, no duplicates from the killed run.
    import json

    steps = [json.loads(l)["step"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in l]
    assert steps == list(range(1, 10))


def test_checkpoint_is_pickle_free_and_atomic(tmp_path):
    fit(tiny_task(), tiny_source(16).loader(8), _cfg(epochs=1), tmp_path)
    ckpt = latest_checkpoint(tmp_path)
    assert sorted(p.name for p in ckpt.iterdir()) == ["meta.json", "model.safetensors", "state.pt"]
    state = torch.load(ckpt / "state.pt", weights_only=True)
    assert {"optimizer", "scheduler", "rng"} <= state.keys()
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_corrupt_checkpoint_is_refused(tmp_path):
    fit(tiny_task(), tiny_source(16).loader(8), _cfg(epochs=1), tmp_path)
    (latest_checkpoint(tmp_path) / "state.pt").write_bytes(b"garbage")
    from snapsight.errors import SnapsightError

    with pytest.raises(SnapsightError, match="corrupt"):
        fit(tiny_task(), tiny_source(16).loader(8), _cfg(epochs=2), tmp_path, resume=True)
