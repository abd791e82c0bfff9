"""Name the config file behind a LightningCLI (jsonargparse) error.

jsonargparse reports the key at fault (``Parser key "model.net": ... Option 'bogus_width' is not
accepted``) but not which of the ``--config`` files set it; with a run config stacked from parts,
that file is what a user needs to edit.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


def config_files(argv: list[str]) -> list[Path]:
    """The ``--config`` / ``-c`` files of a command line that exist, in order."""
    files = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            files.append(Path(argv[i + 1]))
        elif arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1]))
    return [f for f in files if f.is_file()]


def _has_key(data: Any, dotted: str, base: Path) -> bool:
    node = data
    for part in dotted.split("."):
        if isinstance(node, str) and node.endswith((".yaml", ".yml")) and (base / node).is_file():
            node = yaml.safe_load((base / node).read_text())  # a section in its own file (data: data/x.yaml)
        if isinstance(node, dict) and "init_args" in node and part not in node:
            node = node["init_args"]
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def explain_config_error(message: str, argv: list[str]) -> str:
    """``message`` prefixed with where the offending key was set: ``(command line)`` when an option
    of ``argv`` sets it (the likelier typo: it is applied after the config files), else the last
    config file of ``argv`` that does (``path: key 'model.net.bogus_width': ...``)."""
    parser_key = re.search(r'Parser key "([^"]+)"', message)
    option = re.search(r"(?:Option|Key) '([^']+)' (?:is not accepted|is not expected)", message)
    if not parser_key:
        return message
    keys = [parser_key[1]]
    if option:
        keys.insert(0, f"{parser_key[1]}.{option[1]}")
    for key in keys:
        if any(arg.split("=", 1)[0] == f"--{key}" or arg.startswith(f"--{key}.") for arg in argv):
            return f"key {key!r} (command line): {message}"
    for path in reversed(config_files(argv)):  # later files override earlier ones
        data = yaml.safe_load(path.read_text()) or {}
        for key in keys:
            if _has_key(data, key, path.parent):
                return f"{path}: key {key!r}: {message}"
    return f"key {keys[0]!r} (command line): {message}"
