"""Run-config files: resolve short names against ``configs/``, list the files a config is stacked
from, and read one section of the result.

A run config may name the configs it builds on in ``parts`` (``parts: [w32_coco.yaml,
model/w48.yaml]``). They are applied before it, in order, each after its own parts, exactly as
LightningCLI applies several ``--config`` files: later files override single values of earlier
ones (``model.net.num_keypoints``) and keep the rest. A part is looked up next to the config that
names it, then in ``configs/``. LightningCLI has no include that overrides single values
(``model: model/w32.yaml`` replaces the whole section), hence this list, which
``scripts/train.py`` turns into several ``--config`` arguments.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
PARTS_KEY = "parts"


def resolve_config_path(name: str | Path, directory: Path = CONFIG_DIR, kind: str = "config") -> Path:
    """``w48.yaml`` / ``w48`` -> ``directory/w48.yaml`` when it is not a path that exists as given."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (directory / path, directory / path.with_suffix(".yaml")):
        if candidate.is_file():
            return candidate
    available = sorted(p.name for p in directory.glob("*.yaml"))
    raise FileNotFoundError(f"{kind} {str(name)!r} not found as a path nor in {directory}; available: {available}")


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a run config must be a mapping of sections, got {type(data).__name__}")
    return data


def _part_path(name: Any, owner: Path) -> Path:
    if not isinstance(name, str):
        raise ValueError(f"{owner}: {PARTS_KEY} must be a list of config file names, got {name!r}")
    for candidate in (owner.parent / name, CONFIG_DIR / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{owner}: part {name!r} not found next to it nor in {CONFIG_DIR}")


def config_stack(config: str | Path) -> list[Path]:
    """The files that make up ``config`` (a path or a name in ``configs/``), in the order they
    apply: the files of each of its ``parts`` (recursively), then ``config`` itself."""
    return _stack(resolve_config_path(config), ())


def _stack(path: Path, chain: tuple[Path, ...]) -> list[Path]:
    if path.resolve() in chain:
        raise ValueError(f"config parts form a loop: {' -> '.join(str(p) for p in (*chain, path.resolve()))}")
    parts = _read(path).get(PARTS_KEY) or []
    if not isinstance(parts, list):
        raise ValueError(f"{path}: {PARTS_KEY} must be a list of config file names, got {parts!r}")
    files: list[Path] = []
    for name in parts:
        files += _stack(_part_path(name, path), (*chain, path.resolve()))
    return [*files, path]


def _merge(base: Any, override: Any) -> Any:
    """``override`` over ``base`` value by value, as jsonargparse merges two ``--config`` files:
    mappings key by key, anything else (lists included) replaced; a different ``class_path``
    replaces the whole object."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    if "class_path" in override and override["class_path"] != base.get("class_path"):
        return override
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if key in base else value
    return merged


def _section_value(path: Path, section: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    nested = (path.parent / value).resolve()  # a section in its own file: ``data: data/coco.yaml``
    if not nested.is_file():
        raise FileNotFoundError(f"{path}: {section}: {value!r} does not exist (looked at {nested})")
    with open(nested) as f:
        return yaml.safe_load(f) or {}


def load_section(config: str | Path, section: str) -> dict[str, Any]:
    """One top-level section of a run config with its parts applied, following a section kept in
    its own file (``data: data/coco.yaml``, relative to the config naming it) and unwrapping
    ``class_path``/``init_args``."""
    stack = config_stack(config)
    files = [(path, _read(path)) for path in stack]
    values = [_section_value(path, section, data[section]) for path, data in files if section in data]
    if not values:
        keys = sorted({key for _, data in files for key in data} - {PARTS_KEY})
        raise KeyError(f"{stack[-1]}: no {section!r} section (has {keys})")
    value = functools.reduce(_merge, values)
    if isinstance(value, dict) and "init_args" in value:
        value = value["init_args"]
    if not isinstance(value, dict):
        raise ValueError(f"{stack[-1]}: section {section!r} must be a mapping, got {type(value).__name__}")
    return value
