import pytest
import torch

from snapsight.artifacts.encoder import save_encoder
from snapsight.backbones import check_backbone_name, create_backbone, load_encoder
from snapsight.errors import SnapsightError
from snapsight.preprocessing import Preprocessing

SMOKE = [("small_cnn", 32), ("cifar_resnet18", 32), ("cifar_resnet50", 32), ("resnet18", 64),
         ("resnet50", 64), ("vit_tiny", 32), ("vit_small", 32), ("timm:resnet10t", 64)]


@pytest.mark.parametrize("name,size", SMOKE)
def test_every_backbone_smoke(name, size):
    m = create_backbone(name, image_size=size).eval()
    with torch.no_grad():
        y = m(torch.randn(2, 3, size, size))
    assert y.shape == (2, m.num_features)


def test_unknown_backbone():
    with pytest.raises(SnapsightError, match="unknown backbone 'nope'"):
        create_backbone("nope")
    with pytest.raises(SnapsightError, match="unknown timm model 'resnet1t'"):
        create_backbone("timm:resnet1t")
    check_backbone_name("timm:resnet10t")
    check_backbone_name("small_cnn")


def test_random_encoder_spec():
    model, prep, meta = load_encoder("random:small_cnn@12")
    assert prep.image_size == 12 and meta["backbone"] == "small_cnn" and meta["random_init"]
    assert load_encoder("random:small_cnn")[1].image_size == 32
    with pytest.raises(SnapsightError, match="must be a positive integer"):
        load_encoder("random:small_cnn@twelve")
    with pytest.raises(SnapsightError, match="unknown backbone 'smal_cnn'"):
        load_encoder("random:smal_cnn@12")


def test_encoder_roundtrip(tmp_path):
    m = create_backbone("small_cnn", widths=[8, 8, 16, 16]).eval()
    prep = Preprocessing(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    save_encoder(tmp_path / "run" / "encoder", "small_cnn", m.state_dict(), prep.to_dict(),
                 backbone_kwargs={"widths": [8, 8, 16, 16]}, num_features=m.num_features)
    m2, prep2, meta = load_encoder(tmp_path / "run")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert prep2 == prep
    with pytest.raises(SnapsightError, match="no snapsight encoder"):
        load_encoder(tmp_path)


def test_small_cnn_multi_level_readout():
    """pool=2, stages=2: the 2x2-pooled maps of the last two stages, concatenated, in that order."""
    m = create_backbone("small_cnn", widths=[4, 6, 8, 10], pool=2, stages=2).eval()
    x = torch.randn(3, 3, 28, 28)
    with torch.no_grad():
        third = m.features[:6](x)
        fourth = m.features[6:](third)
        y = m(x)
    pooled = [torch.nn.functional.adaptive_avg_pool2d(f, 2).flatten(1) for f in (third, fourth)]
    assert m.num_features == 4 * (8 + 10) == y.shape[1]
    assert torch.equal(y, torch.cat(pooled, dim=1))
    # the readout has no weights: a checkpoint of the plain network loads into it unchanged
    plain = create_backbone("small_cnn", widths=[4, 6, 8, 10])
    assert plain.state_dict().keys() == m.state_dict().keys()
    with pytest.raises(ValueError, match="stages"):
        create_backbone("small_cnn", widths=[4, 6], stages=3)
