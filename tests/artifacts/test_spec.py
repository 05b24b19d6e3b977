"""The one model-name grammar: parse_model_spec() on every form users type, and detect() on the folders snapsight
writes. Nothing here loads weights: the weights files the tests write are not even valid safetensors."""
import dataclasses
import json
from pathlib import Path

import pytest

from snapsight.artifacts.classifier import CLASSIFIER_JSON, CLASSIFIER_KIND
from snapsight.artifacts.encoder import ENCODER_KIND
from snapsight.artifacts.spec import ModelSpec, detect, parse_model_spec
from snapsight.errors import SnapsightError

OPEN_CLIP_CFG = {"embed_dim": 8, "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "patch_size": 8},
                 "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1}}
NOT_WEIGHTS = b"parse_model_spec never reads this"


def _write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def tree(tmp_path):
    """Every kind of folder and file the grammar tells apart, written by hand (no model is built)."""
    t = {}
    t["encoder_run"] = tmp_path / "pretrain-run"
    _write_json(t["encoder_run"] / "encoder" / "config.json", {"kind": ENCODER_KIND, "backbone": "small_cnn"})
    (t["encoder_run"] / "encoder" / "model.safetensors").write_bytes(NOT_WEIGHTS)
    t["encoder_dir"] = t["encoder_run"] / "encoder"
    t["classifier"] = tmp_path / "classifier"
    _write_json(t["classifier"] / CLASSIFIER_JSON, {"kind": CLASSIFIER_KIND})
    t["open_clip"] = tmp_path / "oc"
    _write_json(t["open_clip"] / "open_clip_config.json", {"model_cfg": OPEN_CLIP_CFG, "preprocess_cfg": {}})
    (t["open_clip"] / "open_clip_model.safetensors").write_bytes(NOT_WEIGHTS)
    t["align_run"] = tmp_path / "align-run"
    _write_json(t["align_run"] / "model" / "open_clip_config.json", {"model_cfg": OPEN_CLIP_CFG})
    t["hf_clip"] = tmp_path / "hf-clip"
    _write_json(t["hf_clip"] / "config.json", {"model_type": "clip", "architectures": ["CLIPModel"]})
    t["hf_bert"] = tmp_path / "hf-bert"
    _write_json(t["hf_bert"] / "config.json", {"model_type": "bert"})
    t["empty"] = tmp_path / "empty"
    t["empty"].mkdir()
    t["config_file"] = _write_json(tmp_path / "my-arch.json", OPEN_CLIP_CFG)
    t["other_json"] = _write_json(tmp_path / "labels.json", {"cat": 0})
    t["weights"] = tmp_path / "lonely.safetensors"
    t["weights"].write_bytes(NOT_WEIGHTS)
    t["text"] = tmp_path / "notes.txt"
    t["text"].write_text("hello")
    t["missing"] = tmp_path / "missing"
    t["root"] = tmp_path
    return t


@pytest.mark.parametrize("name,kind", [
    ("encoder_run", "encoder"), ("encoder_dir", "encoder"), ("classifier", "classifier"), ("open_clip", "open_clip"),
    ("align_run", "open_clip"), ("hf_clip", "hf_clip"), ("hf_bert", None), ("empty", None),
    ("config_file", "open_clip_config"), ("other_json", None), ("weights", "weights"), ("text", None),
    ("missing", None),
])
def test_detect(tree, name, kind):
    assert detect(tree[name]) == kind
    assert detect(str(tree[name])) == kind


def test_detect_is_not_fooled_by_a_config_json_of_another_kind(tree):
    _write_json(tree["empty"] / "config.json", {"kind": "something-else"})
    assert detect(tree["empty"]) is None
    (tree["empty"] / "config.json").write_text("{not json")
    assert detect(tree["empty"]) is None


# (text, pretrained, role) -> expected fields; {name} is replaced by the path of tree[name].
PARSED = [
    ((None, None, "clip"), dict(kind="default", text=None)),
    (("clip:default", None, "clip"), dict(kind="default", text="clip:default")),
    (("clip:default", None, "encoder"), dict(kind="default")),
    (("random:small_cnn@12", None, "encoder"), dict(kind="random", name="small_cnn", image_size=12)),
    (("random:small_cnn", None, "encoder"), dict(kind="random", name="small_cnn", image_size=32)),
    (("random:timm:resnet10t@64", None, "encoder"), dict(kind="random", name="timm:resnet10t", image_size=64)),
    (("ViT-B-32", "openai", "clip"), dict(kind="open_clip_name", name="ViT-B-32", pretrained="openai")),
    (("ViT-B/32", "openai", "clip"), dict(kind="open_clip_name", name="ViT-B-32", pretrained="openai")),
    (("ViT-B-32", "{weights}", "clip"), dict(kind="open_clip_name", name="ViT-B-32", pretrained="{weights}")),
    (("openclip:ViT-B-32:openai", None, "encoder"), dict(kind="open_clip_name", name="ViT-B-32", pretrained="openai")),
    (("openclip:ViT-B-32:openai", None, "clip"), dict(kind="open_clip_name", name="ViT-B-32", pretrained="openai")),
    (("openclip:ViT-B-32", "openai", "clip"), dict(kind="open_clip_name", name="ViT-B-32", pretrained="openai")),
    (("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K/", None, "clip"),
     dict(kind="hub", name="laion/CLIP-ViT-B-32-laion2B-s34B-b79K")),
    (("hf-hub:org/repo", None, "encoder"), dict(kind="hub", name="org/repo")),
    (("openai/clip-vit-base-patch32", None, "clip"), dict(kind="hub", name="openai/clip-vit-base-patch32")),
    (("local-dir:{open_clip}", None, "clip"), dict(kind="open_clip_dir", path="{open_clip}", name="oc")),
    (("local-dir:{open_clip}", None, "encoder"), dict(kind="open_clip_dir", path="{open_clip}")),
    (("{open_clip}", None, "clip"), dict(kind="open_clip_dir", path="{open_clip}")),
    (("{open_clip}", None, "encoder"), dict(kind="open_clip_dir", path="{open_clip}")),
    (("{align_run}", None, "clip"), dict(kind="open_clip_dir", path="{align_run}/model")),
    (("{align_run}", None, "encoder"), dict(kind="open_clip_dir", path="{align_run}/model")),
    (("{open_clip}/open_clip_model.safetensors", None, "clip"), dict(kind="open_clip_dir", path="{open_clip}")),
    (("{hf_clip}", None, "clip"), dict(kind="hf_clip_dir", path="{hf_clip}")),
    (("{config_file}", "{weights}", "clip"),
     dict(kind="open_clip_config", name="my-arch", path="{config_file}", pretrained="{weights}")),
    (("openclip:{config_file}:{weights}", None, "encoder"), dict(kind="open_clip_config", pretrained="{weights}")),
    (("{encoder_run}", None, "encoder"), dict(kind="encoder", path="{encoder_run}/encoder")),
    (("{encoder_dir}", None, "encoder"), dict(kind="encoder", path="{encoder_dir}")),
]


def _fill(value, tree):
    if not isinstance(value, str):
        return value
    for name, path in tree.items():
        value = value.replace("{" + name + "}", str(path))
    return value


@pytest.mark.parametrize("args,expected", PARSED, ids=[f"{a[2]}:{a[0]}" for a, _ in PARSED])
def test_parse(tree, args, expected):
    text, pretrained, role = (_fill(a, tree) for a in args)
    spec = parse_model_spec(text, pretrained, role=role)
    for field, want in expected.items():
        got = getattr(spec, field)
        want = _fill(want, tree)
        assert (str(got) if isinstance(got, Path) else got) == want, field
    assert spec.is_clip == (spec.kind not in ("random", "encoder"))


def test_model_spec_is_frozen():
    spec = parse_model_spec("random:small_cnn@8", role="encoder")
    assert spec == ModelSpec("random", name="small_cnn", image_size=8, text="random:small_cnn@8")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.kind = "encoder"


def test_bare_text_is_a_path_for_encoders_and_a_hub_id_for_clip(tree, monkeypatch):
    """A mistyped relative run folder must not be looked up on the Hub by `snapsight probe --encoder`."""
    monkeypatch.chdir(tree["root"])
    assert parse_model_spec("runs/pretrian").kind == "hub"
    with pytest.raises(SnapsightError, match="encoder not found"):
        parse_model_spec("runs/pretrian", role="encoder")


ERRORS = [
    (("clip:defualt", None, "clip"), "unknown CLIP model 'clip:defualt'"),
    (("clip:defualt", None, "encoder"), "unknown CLIP encoder 'clip:defualt'"),
    (("random:small_cnn@twelve", None, "encoder"), "must be a positive integer"),
    (("random:small_cnn@0", None, "encoder"), "must be a positive integer"),
    (("random:small_cnn", None, "clip"), "not a CLIP model"),
    (("openclip:", None, "encoder"), "openclip: needs a model name"),
    (("openclip:ViT-B-3:openai", None, "encoder"), "'ViT-B-3' is not an open_clip model name"),
    (("openclip:ViT-B-32", None, "encoder"), "openclip:ViT-B-32 needs weights: openclip:ViT-B-32:<tag>"),
    (("openclip:ViT-B-32:laion2b_typo", None, "encoder"), "'laion2b_typo' is neither a pretrained tag of ViT-B-32"),
    (("ViT-B-32", None, "clip"), "open_clip model 'ViT-B-32' needs --pretrained"),
    (("ViT-B-32", "no-such-tag", "clip"), "'no-such-tag' is neither a pretrained tag of ViT-B-32"),
    (("NoSuchModel-B-99", None, "clip"), "'NoSuchModel-B-99' is neither an open_clip model name"),
    (("hf-hub:", None, "clip"), "hf-hub: needs a repo id"),
    (("local-dir:{missing}", None, "clip"), "is not an open_clip folder (open_clip_config.json missing)"),
    (("local-dir:{missing}", None, "encoder"), "is not an open_clip folder (open_clip_config.json missing)"),
    (("{empty}", None, "clip"), "is neither an open_clip folder"),
    (("{encoder_run}", None, "clip"), "is neither an open_clip folder"),
    (("{weights}", None, "clip"), "is a weights file without an architecture"),
    (("{other_json}", "openai", "clip"), "is not an open_clip model config (needs embed_dim"),
    (("{config_file}", None, "clip"), "open_clip model 'my-arch' needs --pretrained"),
    (("{config_file}", "openai", "clip"), "'openai' is neither a pretrained tag of my-arch (none known)"),
    (("{text}", None, "clip"), "is not a model folder, weights file or open_clip config"),
    (("{missing}/model.safetensors", None, "clip"), "model path not found"),
    (("{missing}", None, "encoder"), "encoder not found"),
    (("{weights}", None, "encoder"), "is a file; --encoder takes"),
    (("{config_file}", None, "encoder"), "is a file; --encoder takes"),
    (("{classifier}", None, "encoder"), "is a trained classifier"),
    (("{hf_clip}", None, "encoder"), "is a Hugging Face CLIP model; probes take open_clip image towers"),
    (("openclip:{hf_clip}", None, "encoder"), "is a Hugging Face CLIP model"),
    (("{empty}", None, "encoder"), "no snapsight encoder found"),
    (("{hf_bert}", None, "encoder"), "no snapsight encoder found"),
]


@pytest.mark.parametrize("args,message", ERRORS, ids=[f"{a[2]}:{a[0]}" for a, _ in ERRORS])
def test_parse_errors_are_one_sentence(tree, args, message):
    text, pretrained, role = (_fill(a, tree) for a in args)
    with pytest.raises(SnapsightError) as err:
        parse_model_spec(text, pretrained, role=role)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_role_is_a_programming_error():
    with pytest.raises(ValueError, match="role"):
        parse_model_spec("ViT-B-32", role="zeroshot")
