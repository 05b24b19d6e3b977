import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from snapsight.backbones import load_encoder
from snapsight.cli import main

TINY = ["--image-size", "8", "--batch-size", "8", "--set", "model.backbone_kwargs.widths=[4,8]",
        "--set", "model.proj_hidden_dim=16", "--set", "model.proj_out_dim=8", "--set", "train.progress=false",
        "--set", "data.knn_bank_size=8", "--set", "data.knn_query_size=8", "--device", "cpu"]


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for i in range(20):
        sub = root / ("red" if i % 2 else "blue")
        sub.mkdir(parents=True, exist_ok=True)
        arr = (rng.random((14, 11, 3)) * 255).astype("uint8")
        arr[..., 0 if i % 2 else 2] = 255
        Image.fromarray(arr).convert(["RGB", "L", "RGBA", "P"][i % 4]).save(sub / f"{i}.png")
    (root / "red" / "notes.txt").write_text("not an image, not an image extension either")
    (root / "red" / "broken.png").write_bytes(b"\x89PNG truncated")
    return root


def test_end_to_end_pretrain_on_a_folder(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(image_folder), "--out", str(out), "--epochs", "2", *TINY]) == 0
    text = capsys.readouterr()
    assert "encoder saved in" in text.out and "--encoder" in text.out
    for name in ("config.yaml", "metrics.jsonl", "loss_curve.png", "train_state.json", "encoder/config.json"):
        assert (out / name).is_file(), name
    model, prep, meta = load_encoder(out)
    assert prep.image_size == 8 and meta["backbone"] == "small_cnn"
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 8)
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("knn_acc" in r for r in records)  # labels from the class folders feed the kNN monitor
    import yaml

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["source"] == str(image_folder) and saved["augment"]["blur"] in (False, "off")


def test_backbone_flag_drops_the_recipes_backbone_arguments(image_folder, tmp_path):
    """A recipe for small_cnn (with its widths) plus --backbone <another> must build the other network."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  backbone: small_cnn\n  backbone_kwargs: {widths: [4, 8], pool: 2, stages: 2}\n")
    small = ["--image-size", "16", *TINY[2:4], *TINY[6:]]  # TINY without its small_cnn widths
    out = tmp_path / "run"
    assert main(["pretrain", "--config", str(recipe), "--data", str(image_folder), "--out", str(out),
                 "--backbone", "timm:test_resnet", "--max-steps", "1", *small]) == 0
    import yaml

    model = yaml.safe_load((out / "config.yaml").read_text())["model"]
    assert model["backbone"] == "timm:test_resnet" and model["backbone_kwargs"] == {}
    # the same backbone as the recipe keeps its arguments; an explicit --set still wins
    out2 = tmp_path / "run2"
    assert main(["pretrain", "--config", str(recipe), "--data", str(image_folder), "--out", str(out2),
                 "--backbone", "small_cnn", "--max-steps", "1", *TINY]) == 0
    saved = yaml.safe_load((out2 / "config.yaml").read_text())["model"]["backbone_kwargs"]
    assert saved == {"widths": [4, 8], "pool": 2, "stages": 2}


def test_config_typo_and_bad_data_are_one_line_errors(image_folder, tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train:\n  epocs: 3\n")
    assert main(["pretrain", "--config", str(cfg), "--data", str(image_folder)]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.epocs'" in err and "Did you mean 'epochs'" in err
    assert main(["pretrain", "--data", str(image_folder), "--set", "train.lr=fast"]) == 2
    assert "train.lr" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["pretrain", "--data", str(tmp_path / "empty")]) == 2
    assert "no image files" in capsys.readouterr().err
    assert main(["pretrain"]) == 2
    assert "--data" in capsys.readouterr().err
    # these three printed tracebacks (ZeroDivisionError, ValueError, ValueError)
    out = str(tmp_path / "run")
    assert main(["pretrain", "--data", str(image_folder), "--out", out, "--batch-size", "0"]) == 2
    assert "train.batch_size must be at least 1" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(image_folder), "--out", out, "--set", "augment.blur=maybe"]) == 2
    err = capsys.readouterr().err
    assert "config key 'augment.blur'" in err and "'auto', 'on', 'off'" in err
    assert main(["pretrain", "--data", str(image_folder), "--out", out, "--set", "model.proj_layers=0"]) == 2
    assert "model.proj_layers" in capsys.readouterr().err


def test_failed_start_leaves_out_as_it_was(image_folder, tmp_path, capsys):
    """A run that fails at start-up wrote OUT/config.yaml first: a directory that looked like a run, and after
    a failed --resume a saved recipe that broke every later --resume."""
    out = tmp_path / "run"
    common = ["pretrain", "--data", str(image_folder), "--out", str(out), *TINY, "--set", "data.knn=off"]
    (tmp_path / "empty").mkdir()
    for bad in (["--backbone", "resnet_nope"], ["--set", "model.proj_layers=0"], ["--set", "augment.blur=maybe"],
                ["--batch-size", "0"], ["--data", str(tmp_path / "empty")]):
        assert main([*common, *bad]) == 2, bad
        assert "error:" in capsys.readouterr().err
        assert not out.exists(), bad
    out.mkdir()  # a folder the user made keeps exactly what it held
    (out / "notes.txt").write_text("mine")
    assert main([*common, "--backbone", "resnet_nope"]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    # the correct command then just works, without --resume
    assert main([*common, "--epochs", "3", "--max-steps", "2"]) == 0
    assert (out / "encoder" / "config.json").is_file()
    saved = (out / "config.yaml").read_text()
    # a --resume that fails at start-up leaves the saved recipe (and the rest) untouched ...
    names = sorted(p.name for p in out.iterdir())
    assert main(["pretrain", "--out", str(out), "--resume", "--max-steps", "4", "--set", "model.proj_layers=0"]) == 2
    assert (out / "config.yaml").read_text() == saved and sorted(p.name for p in out.iterdir()) == names
    # ... so the plain --resume still continues the run
    assert main(["pretrain", "--out", str(out), "--resume", "--max-steps", "4"]) == 0
    assert json.loads((out / "train_state.json").read_text())["step"] == 4
    capsys.readouterr()
    (tmp_path / "a-file").write_text("x")  # was a FileExistsError traceback
    assert main([*common, "--out", str(tmp_path / "a-file")]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "a-file").read_text() == "x"


def test_shipped_configs_load():
    from snapsight.config import list_recipes, load_config
    from snapsight.ssl.simclr import PretrainConfig

    names = [n for n in list_recipes() if n.startswith("simclr-")]
    assert {"simclr-fashion-mnist", "simclr-folder", "simclr-folder-gpu", "simclr-default-model"} <= set(names)
    for name in names:  # by name and through the configs/ link: the same file
        cfg = load_config(PretrainConfig, name)
        assert cfg == load_config(PretrainConfig, os.path.join(os.path.dirname(__file__), "..", "..", "configs",
                                                               f"{name}.yaml"))
        assert cfg.train.batch_size > 0 and cfg.train.precision == "auto", name


def test_cli_default_is_the_packaged_recipe(image_folder, tmp_path, monkeypatch, capsys):
    """Without --config the CLI trains exactly the packaged recipe that suits the data (plus the flags)."""
    import snapsight.ssl.pretrain as pretrain
    from snapsight.config import load_config
    from snapsight.ssl.simclr import PretrainConfig
    from snapsight.train.loop import FitResult

    seen = []

    def fake_run(cfg, resume=False):
        seen.append(cfg)
        return FitResult(step=1, epoch=1, interrupted=False, out_dir=tmp_path, loss=1.0)

    monkeypatch.setattr(pretrain, "run_pretrain", fake_run)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    out = str(tmp_path / "run")
    assert main(["pretrain", "--data", "fashion-mnist", "--out", out]) == 0
    assert seen[-1] == load_config(PretrainConfig, "simclr-fashion-mnist", [("out", out)])
    assert main(["pretrain", "--data", str(image_folder), "--out", out]) == 0
    assert seen[-1] == load_config(PretrainConfig, "simclr-folder", [("data.source", str(image_folder)), ("out", out)])
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert main(["pretrain", "--data", str(image_folder), "--out", out]) == 0
    assert seen[-1] == load_config(PretrainConfig, "simclr-folder-gpu",
                                   [("data.source", str(image_folder)), ("out", out)])
    assert main(["pretrain", "--config", "simclr-folder", "--data", str(image_folder), "--out", out]) == 0
    assert seen[-1] == load_config(PretrainConfig, "simclr-folder", [("data.source", str(image_folder)), ("out", out)])
    assert "done: step 1" in capsys.readouterr().out


def test_resume_of_a_completed_run_says_so_and_runs_nothing(image_folder, tmp_path, monkeypatch, capsys):
    import snapsight.ssl.pretrain as pretrain

    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(image_folder), "--out", str(out), *TINY, "--epochs", "1",
                 "--max-steps", "2"]) == 0
    state = json.loads((out / "train_state.json").read_text())
    assert state["status"] == "completed" and state["step"] == 2
    capsys.readouterr()
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def no_fit(*args, **kwargs):
        raise AssertionError("a completed run was trained again")

    monkeypatch.setattr(pretrain, "fit", no_fit)
    assert main(["pretrain", "--out", str(out), "--resume"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "the run is complete (step 2" in lines[0] and "no loss logged" not in lines[0]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    # a longer schedule is not complete: it trains (here, into the stub)
    with pytest.raises(AssertionError, match="trained again"):
        main(["pretrain", "--out", str(out), "--resume", "--max-steps", "3"])


@pytest.mark.slow
def test_sigterm_saves_and_resume_finishes(image_folder, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "snapsight", "pretrain", "--data", str(image_folder), "--out", str(out),
           "--epochs", "400", *TINY, "--set", "train.checkpoint_minutes=0", "--set", "data.knn=off"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (out / "checkpoints" / "latest.json").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "continue with: snapsight pretrain" in stdout
    state = json.loads((out / "train_state.json").read_text())
    assert state["status"] == "interrupted" and 0 < state["step"] < 800
    assert main(["pretrain", "--out", str(out), "--resume", "--max-steps", str(state["step"] + 2)]) == 0
    assert json.loads((out / "train_state.json").read_text())["step"] == state["step"] + 2
