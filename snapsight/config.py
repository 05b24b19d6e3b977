"""Typed configs: YAML files parsed into dataclasses, with ``--set key=value`` overrides.

Every recipe (``snapsight/recipes/*.yaml``, linked from ``configs/``, loadable by name) maps onto one
dataclass (``PretrainConfig``, ``ProbeConfig``, ...). A misspelt key fails at load time with a message that
names the key and lists the valid ones; an override must parse to the field's declared type, and a
``Literal[...]`` field to one of its choices. Range checks live in the dataclass's ``__post_init__``
(:func:`require`), so a config built in code is checked too. Nested dataclasses are addressed with dots
(``--set optim.lr=0.3``).

Example::

    @dataclass
    class OptimConfig:
        lr: float = 0.3  # peak learning rate

    @dataclass
    class PretrainConfig:
        epochs: int = 10
        optim: OptimConfig = field(default_factory=OptimConfig)

    cfg = load_config(PretrainConfig, "configs/simclr.yaml", overrides=["optim.lr=0.1"])
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import types
import typing
from pathlib import Path
from typing import Any, Iterable, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from .artifacts.files import atomic_write_text
from .errors import ConfigError

T = TypeVar("T")
log = logging.getLogger(__name__)


def _field_types(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _suggest(key: str, valid: Iterable[str]) -> str:
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"{hint} Valid keys: {', '.join(valid)}."


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to type ``tp``; raise ConfigError naming ``key`` on mismatch."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"config key '{key}': {value!r} is not {_type_name(tp)}")
    if origin is typing.Literal:
        choices = get_args(tp)
        if isinstance(value, bool) and ("on" in choices or "off" in choices):
            value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
        if value not in choices:
            raise ConfigError(f"config key '{key}': {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    return value


def _type_name(tp: Any) -> str:
    """``bool | Literal["auto", "on"]`` -> ``"true/false or one of 'auto', 'on'"`` (for error messages)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, get_args(tp)))
    if tp is bool:
        return "true/false"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and mistyped values.

    A class may name keys it no longer has in ``RETIRED_KEYS = {key: why}``: those are skipped with a warning.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {data!r}")
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    retired = getattr(cls, "RETIRED_KEYS", {})
    kwargs = {}
    for key, value in data.items():
        if key in retired and key not in names:
            # config.yaml files saved beside older runs still name it; resuming them must keep working
            log.warning("ignoring config key '%s%s': %s", prefix, key, retired[key])
            continue
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}'.{_suggest(key, names)}")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise  # a range check in __post_init__ already names its key
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid config{(' section ' + prefix.rstrip('.')) if prefix else ''}: {e}") from e


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (JSON/YAML serialisable)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.1"`` -> ``("optim.lr", 0.1)``; the value is parsed as YAML (numbers, bools, lists)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str | tuple[str, Any]]) -> dict[str, Any]:
    """Apply dotted ``key=value`` overrides to a nested dict (validated later by :func:`from_dict`)."""
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{key}': '{part}' is not a section")
        node[parts[-1]] = value
    return data


def require(ok: bool, key: str, must: str, value: Any) -> None:
    """Raise ``ConfigError("<key> must <must>, got <value>")`` unless ``ok``: the one-line range check that
    config classes run in ``__post_init__``, e.g. ``require(n >= 1, "model.proj_layers", "be at least 1", n)``."""
    if not ok:
        raise ConfigError(f"{key} must {must}, got {value!r}")


RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


def list_recipes() -> list[str]:
    """Names of the packaged recipes (``snapsight/recipes/*.yaml``; ``configs/`` links to the same files)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """A YAML file path as given, or a packaged recipe by name (``"simclr-fashion-mnist"``)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    packaged = RECIPES_DIR / f"{path.name[:-5] if path.name.endswith('.yaml') else path.name}.yaml"
    if packaged.is_file() and path.parent in (Path("."), Path("configs")):
        return packaged
    raise ConfigError(f"config file not found: {name_or_path} (packaged recipes: {', '.join(list_recipes())})")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file or packaged recipe (see :func:`recipe_path`)."""
    path = recipe_path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Iterable[str | tuple[str, Any]] = (),
    base: dict[str, Any] | None = None,
) -> T:
    """Load ``cls`` from optional YAML ``path`` (over ``base`` defaults), then apply ``overrides``.

    Flag-style overrides (e.g. ``--epochs 3``) are passed as ``(key, value)`` tuples; text ones as
    ``"key=value"``. Unknown keys and wrong types raise :class:`ConfigError` naming the key.
    """
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data = _deep_merge(data, read_yaml(path))
    data = apply_overrides(data, overrides)
    return from_dict(cls, data)


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the fully resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
