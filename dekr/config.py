"""Run-config files: resolve short names against ``configs/`` and read the model section."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


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


def load_section(config: str | Path, section: str) -> dict[str, Any]:
    """One top-level section of a run config, following a nested-file reference
    (``data: data/coco.yaml``, relative to the config) and unwrapping ``class_path``/``init_args``."""
    path = resolve_config_path(config)
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if section not in data:
        raise KeyError(f"{path}: no {section!r} section (has {sorted(data)})")
    value = data[section]
    if isinstance(value, str):
        nested = (path.parent / value).resolve()
        if not nested.is_file():
            raise FileNotFoundError(f"{path}: {section}: {value!r} does not exist (looked at {nested})")
        with open(nested) as f:
            value = yaml.safe_load(f) or {}
    if isinstance(value, dict) and "init_args" in value:
        value = value["init_args"]
    if not isinstance(value, dict):
        raise ValueError(f"{path}: section {section!r} must be a mapping, got {type(value).__name__}")
    return value
