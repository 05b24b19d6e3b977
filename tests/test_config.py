from dataclasses import dataclass, field
from typing import Literal

import pytest

from snapsight.config import RECIPES_DIR, load_config, read_yaml, recipe_path, require, save_config
from snapsight.errors import ConfigError


@dataclass
class Optim:
    lr: float = 0.3
    name: str = "lars"


@dataclass
class Cfg:
    epochs: int = 10
    amp: bool = True
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    data: str | None = None
    optim: Optim = field(default_factory=Optim)


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 3\noptim:\n  lr: 0.1\n")
    cfg = load_config(Cfg, p, overrides=["optim.name=sgd", "amp=false", ("sizes", "4,5")])
    assert cfg.epochs == 3 and cfg.optim.lr == 0.1 and cfg.optim.name == "sgd"
    assert cfg.amp is False and cfg.sizes == [4, 5] and cfg.data is None


def test_unknown_key_names_key_and_suggests(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'epoch'.*Did you mean 'epochs'"):
        load_config(Cfg, p)
    with pytest.raises(ConfigError, match=r"optim.lrr"):
        load_config(Cfg, overrides=["optim.lrr=1"])


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"'epochs'.*integer"):
        load_config(Cfg, overrides=["epochs=ten"])
    with pytest.raises(ConfigError, match=r"'optim.lr'.*number"):
        load_config(Cfg, overrides=["optim.lr=fast"])


def test_roundtrip(tmp_path):
    cfg = load_config(Cfg, overrides=["epochs=7"])
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(Cfg, tmp_path / "out.yaml") == cfg


@dataclass
class Typed:
    mode: Literal["auto", "on", "off"] = "auto"
    blur: bool | Literal["auto"] = "auto"
    workers: int = 1

    def __post_init__(self):
        require(self.workers >= 1, "workers", "be at least 1", self.workers)


def test_literal_violation_is_one_line_listing_the_choices():
    with pytest.raises(ConfigError) as e:
        load_config(Typed, overrides=["mode=sometimes"])
    assert str(e.value) == "config key 'mode': 'sometimes' is not one of 'auto', 'on', 'off'"
    with pytest.raises(ConfigError) as e:
        load_config(Typed, overrides=["blur=maybe"])
    assert str(e.value) == "config key 'blur': 'maybe' is not true/false or one of 'auto'"


def test_yaml_on_off_fit_a_literal_on_off_choice():
    """YAML 1.1 reads a bare on/off as a boolean; a choice of "on"/"off" takes it back."""
    assert load_config(Typed, overrides=["mode=off"]).mode == "off"
    assert load_config(Typed, overrides=["mode=on", "blur=on"]) == Typed(mode="on", blur=True)


def test_range_violation_is_one_line_naming_the_key():
    with pytest.raises(ConfigError) as e:
        load_config(Typed, overrides=["workers=0"])
    assert str(e.value) == "workers must be at least 1, got 0"  # not wrapped as "invalid config: ..."


def test_packaged_recipe_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # names resolve without a configs/ folder in the working directory
    assert recipe_path("simclr-folder") == RECIPES_DIR / "simclr-folder.yaml"
    assert recipe_path("configs/simclr-folder.yaml") == RECIPES_DIR / "simclr-folder.yaml"
    assert read_yaml("simclr-folder")["model"]["backbone"] == "small_cnn"
    with pytest.raises(ConfigError, match="config file not found: simclr-nope .*packaged recipes: .*simclr-folder"):
        recipe_path("simclr-nope")
    (tmp_path / "mine.yaml").write_text("epochs: 4\n")
    assert load_config(Cfg, "mine.yaml").epochs == 4  # a file in the working directory is a path


def test_retired_keys_of_saved_configs_are_ignored_with_a_warning(caplog):
    """config.yaml files saved beside older runs name keys the recipe no longer has: resuming them still works."""
    import dataclasses

    from snapsight.config import from_dict

    @dataclasses.dataclass
    class Cfg:
        RETIRED_KEYS = {"old": "replaced by new"}
        new: int = 1

    with caplog.at_level("WARNING"):
        assert from_dict(Cfg, {"old": 3, "new": 2}) == Cfg(new=2)
    assert "replaced by new" in caplog.text
    with pytest.raises(ConfigError, match="unknown config key 'olde'"):
        from_dict(Cfg, {"olde": 3})
