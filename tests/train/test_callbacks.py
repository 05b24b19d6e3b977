"""Optional parts of a run as callbacks: a step limit that pauses, early stopping that keeps the best weights."""
import json

import pytest
import torch

from snapsight.artifacts.files import load_weights
from snapsight.train.callbacks import Callback, EarlyStopping, StepLimit
from snapsight.train.loop import TrainConfig, fit, latest_checkpoint

from ._tiny import tiny_source, tiny_task


def _cfg(**kw):
    base = dict(epochs=3, batch_size=8, lr=0.5, warmup_epochs=1, log_every=1, progress=False, device="cpu",
                checkpoint_minutes=0, keep_checkpoints=10, precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


def test_step_limit_pauses_without_export_and_resume_finishes_the_same_run(tmp_path):
    src = tiny_source(24)  # 3 steps per epoch
    torch.manual_seed(0)
    full = fit(tiny_task(), src.loader(8, seed=2), _cfg(), tmp_path / "full")

    torch.manual_seed(0)
    paused = fit(tiny_task(), src.loader(8, seed=2), _cfg(), tmp_path / "run", callbacks=[StepLimit(4)])
    assert paused.interrupted and paused.step == 4 and paused.export_path is None
    assert not (tmp_path / "run" / "encoder").exists()
    assert latest_checkpoint(tmp_path / "run").name == "step-000000004"
    assert json.loads((tmp_path / "run" / "train_state.json").read_text())["status"] == "stopped"

    done = fit(tiny_task(seed=3), src.loader(8, seed=2), _cfg(), tmp_path / "run", resume=True,
               callbacks=[StepLimit(100)])  # a limit past the end does not stop the run
    assert not done.interrupted and done.step == full.step == 9 and (tmp_path / "run" / "encoder").is_dir()
    a, b = load_weights(latest_checkpoint(tmp_path / "full") / "model.safetensors"), load_weights(
        latest_checkpoint(tmp_path / "run") / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


class _Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, run):
        self.events.append(("start", run.state.step))

    def on_epoch_end(self, run):
        self.events.append(("epoch", run.state.epoch))

    def on_fit_end(self, run):
        self.events.append(("end", run.state.step))


@pytest.mark.parametrize("scores,stop_epoch,best_epoch", [
    ([0.5, 0.7, 0.6, 0.6, 0.9], 3, 1),  # two epochs without a better score: stop after epoch 3, keep epoch 1
    ([0.5, 0.4, 0.45, 0.3, 0.9], 2, 0),  # training never beats its start: the starting weights come back
    ([0.5, 0.6, 0.6, 0.8], 3, 3),  # the last epoch (scored at the end of the run) is the best
])
def test_early_stopping_keeps_the_best_epoch(tmp_path, scores, stop_epoch, best_epoch):
    src = tiny_source(16)  # 2 steps per epoch
    task = tiny_task()
    start = {k: v.clone() for k, v in task.state_dict().items()}
    given = iter(scores)
    stopper = EarlyStopping(lambda t: next(given), patience=2)
    recorder = _Recorder()
    result = fit(task, src.loader(8), _cfg(epochs=3), tmp_path, callbacks=[stopper, recorder])

    assert [r["epoch"] for r in stopper.history] == list(range(stop_epoch + 1))
    assert [r["score"] for r in stopper.history] == scores[:stop_epoch + 1]
    assert stopper.best_epoch == best_epoch and stopper.best_score == max(scores[:stop_epoch + 1])
    assert result.epoch == stop_epoch
    # every epoch's training loss is reported with its score (none for the start)
    assert stopper.history[0]["train_loss"] is None and all(r["train_loss"] > 0 for r in stopper.history[1:])
    # on_epoch_end is not called for the epoch that ends the run; on_fit_end follows instead
    assert recorder.events[0] == ("start", 0) and recorder.events[-1] == ("end", 2 * stop_epoch)
    best = start if best_epoch == 0 else load_weights(
        tmp_path / "checkpoints" / f"step-{2 * best_epoch:09d}" / "model.safetensors")
    now = task.state_dict()
    assert all(torch.equal(now[k], best[k]) for k in best)
