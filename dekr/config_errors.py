"""User errors of the scripts: one line on stderr, exit status 2, no traceback.

:func:`report_user_error` is how ``scripts/train.py`` and ``scripts/evaluate.py`` report a run that
cannot start for a reason the user can fix (a config name or file that is not there, a missing
dataset or checkpoint file, a refused option); :data:`USER_ERRORS` are the exception classes that
carry such a reason in their message.

:func:`explain_config_error` names the config file behind a LightningCLI (jsonargparse) error.
jsonargparse reports the key at fault (``Parser key "model.net": ... Option 'bogus_width' is not
accepted``) but not which of the ``--config`` files set it; with a run config stacked from parts,
that file is what a user needs to edit.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

#: Exit status of a run refused for a user error (argparse's, for a bad command line).
USAGE_ERROR = 2

#: Errors whose message tells the user what to fix: missing files (configs, datasets, checkpoints)
#: and refused values (``ValueError``, and so ``ConfigError``, ``DataError``, ``ModelLoadError``,
#: ``PreflightError``). A bug deeper down raises other classes and keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (FileNotFoundError, ValueError)


def report_user_error(error: BaseException | str, *, with_type: bool = False) -> int:
    """Print ``error: <message>`` on stderr and return :data:`USAGE_ERROR`, the script's exit status.

    ``error`` is an exception or an already explained message; ``with_type`` puts the exception's
    class name first (for errors raised from deep in a run, where the class says where it came from).
    """
    message = str(error)
    if with_type and isinstance(error, BaseException):
        message = f"{type(error).__name__}: {message}"
    print(f"error: {message}", file=sys.stderr)
    return USAGE_ERROR


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
