from dataclasses import dataclass, field

import pytest

from snapsight.config import load_config, save_config
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
