"""The SimCLR recipe choice (load_pretrain_config) and the checks of the typed pretraining configs."""
from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image

from snapsight.config import from_dict, load_config
from snapsight.errors import ConfigError, SnapsightError
from snapsight.ssl.augment import AugmentConfig
from snapsight.ssl.pretrain import load_pretrain_config
from snapsight.ssl.simclr import DataConfig, ModelConfig, PretrainConfig


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(3):
        Image.fromarray(np.full((10, 10, 3), 40 * i, dtype=np.uint8)).save(root / f"{i}.png")
    return str(root)


@pytest.fixture
def cpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)


def test_recipe_by_name_path_or_default(folder, cpu):
    by_name = load_pretrain_config("simclr-folder", data=folder)
    assert by_name == load_pretrain_config("configs/simclr-folder.yaml", [f"data.source={folder}"])
    assert by_name == load_pretrain_config(data=folder)  # the CPU default for a folder
    assert by_name.model.backbone == "small_cnn" and by_name.model.image_size == 64
    fmnist = load_pretrain_config(data="fashion-mnist")
    assert fmnist == load_config(PretrainConfig, "simclr-fashion-mnist")
    with pytest.raises(ConfigError, match="packaged recipes: .*simclr-folder"):
        load_pretrain_config("simclr-nope", data=folder)


def test_gpu_default_is_resnet18_at_96_unless_the_views_are_smaller(folder, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    gpu = load_config(PretrainConfig, "simclr-folder-gpu", [("data.source", folder)])
    assert load_pretrain_config(data=folder) == gpu and gpu.model.backbone == "resnet18"
    small = load_pretrain_config(data=folder, overrides=[("model.image_size", 64)])
    assert small.model.backbone == "small_cnn"
    assert load_pretrain_config(data=folder, overrides=["train.device=cpu"]).model.backbone == "small_cnn"


def test_a_new_image_size_recomputes_the_default_augmentation_only(folder, cpu):
    """Without --config the augmentation is the recommended one for the size; a named recipe keeps its own."""
    cfg = load_pretrain_config(data=folder, overrides=["model.image_size=16"])
    assert cfg.augment == from_dict(AugmentConfig, asdict(AugmentConfig.recommended(16)))
    assert cfg.augment.crop_scale == [0.2, 1.0] and cfg.augment.blur is False  # YAML reads "off" as false
    named = load_pretrain_config("simclr-folder", data=folder, overrides=["model.image_size=16"])
    assert named.augment == load_config(PretrainConfig, "simclr-folder").augment
    gray = load_pretrain_config(data="fashion-mnist", overrides=["model.image_size=32"]).augment
    assert gray == from_dict(AugmentConfig, asdict(AugmentConfig.recommended(32, grayscale=True)))


def test_backbone_arguments_do_not_leak_into_another_backbone(folder, cpu):
    assert load_pretrain_config("simclr-default-model").model.backbone_kwargs == {}  # not the small CNN's widths
    other = load_pretrain_config(data="fashion-mnist", overrides=[("model.backbone", "resnet18")])
    assert other.model.backbone_kwargs == {}
    same = load_pretrain_config(data="fashion-mnist", overrides=[("model.backbone", "small_cnn")])
    assert same.model.backbone_kwargs == {"widths": [16, 32, 64, 128], "pool": 2, "stages": 2}


def test_no_data_or_missing_data_is_a_user_error(tmp_path, cpu):
    with pytest.raises(SnapsightError, match="no data given"):
        load_pretrain_config()
    with pytest.raises(SnapsightError, match="does not exist"):
        load_pretrain_config(data=tmp_path / "nowhere")


@pytest.mark.parametrize("override, key", [
    ("data.kind=folders", "data.kind"),
    ("data.streaming=sometimes", "data.streaming"),
    ("augment.blur=maybe", "augment.blur"),
    ("data.knn=never", "data.knn"),
])
def test_a_fixed_choice_violation_is_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(PretrainConfig, overrides=[override])
    assert f"'{key}'" in str(e.value) and "'auto'" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("override, key", [
    ("model.proj_layers=0", "model.proj_layers"),
    ("model.temperature=0", "model.temperature"),
    ("model.image_size=0", "model.image_size"),
    ("model.std=[0.2, 0.2, 0]", "model.std"),
    ("model.mean=[0.5, 0.5]", "model.mean"),
    ("data.knn_bank_size=0", "data.knn_bank_size"),
    ("data.num_workers=-2", "data.num_workers"),
    ("data.cache_gb=-1", "data.cache_gb"),
    ("augment.crop_scale=[0.5, 0.2]", "augment.crop_scale"),
    ("augment.crop_scale=[0.2, 1.5]", "augment.crop_scale"),
    ("augment.crop_ratio=[0, 1]", "augment.crop_ratio"),
    ("augment.hflip_p=1.5", "augment.hflip_p"),
    ("augment.jitter_strength=-1", "augment.jitter_strength"),
    ("out=", "out"),
])
def test_a_range_violation_is_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(PretrainConfig, overrides=[override])
    assert str(e.value).startswith(f"{key} must ") and "\n" not in str(e.value)


def test_yaml_on_off_read_as_booleans_still_fit_the_choices():
    cfg = load_config(PretrainConfig, overrides=["data.streaming=off", "augment.blur=on", "data.knn=off"])
    assert cfg.data.streaming == "off" and cfg.augment.blur is True and not cfg.data.knn_enabled
    assert load_config(PretrainConfig).data.knn_enabled


def test_configs_built_in_code_are_checked_too():
    with pytest.raises(ConfigError, match="model.proj_layers must be at least 1"):
        ModelConfig(proj_layers=0)
    with pytest.raises(ConfigError, match="data.max_images"):
        DataConfig(max_images=-1)
    AugmentConfig(crop_scale=[1.0, 1.0], crop_ratio=[1.0, 1.0], hflip_p=0.0, jitter_p=0.0, gray_p=0.0)  # identity
