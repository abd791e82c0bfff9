"""User errors of the scripts: one line on stderr, exit status 2, no traceback.

:func:`report_user_error` is how ``scripts/train.py`` and ``scripts/evaluate.py`` report a run that
cannot start for a reason the user can fix (a config name or file that is not there, a missing
dataset or checkpoint file, a refused option); :data:`USER_ERRORS` are the exception classes that
carry such a reason in their message.

:func:`explain_config_error` turns a LightningCLI (jsonargparse) error into what a user needs. An
unknown key, which jsonargparse reports as a nested Union error (``Parser key "model.optim": Does
not validate against any of the Union subtypes ... NestedArg(key='lrr', val='0.1')``), becomes one
line naming the key and the closest valid keys (difflib, as :func:`dekr.zoo.get_entry` does for
model names). Other errors name the ``--config`` file that set the key at fault: with a run config
stacked from parts, that file is what a user needs to edit.
"""
from __future__ import annotations

import importlib
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dekr.dataclass_config import closest_names

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


@dataclass
class UnknownKey:
    """A key no class or group of the parser takes.

    Attributes:
        key: the dotted key as the parser saw it, without ``init_args`` (``model.optim.lrr``).
        known: the keys that are valid where it stands, dotted from the same root as ``key``.
    """

    key: str
    known: list[str]

    def suggestions(self) -> tuple[list[str], str, list[str]]:
        """(the closest valid keys, the group the misspelt part belongs to, that group's keys).

        The misspelt part is the first one that is no valid group: in ``model.optimm.lr`` it is
        ``optimm``, among ``model``'s keys, and the suggestion keeps the rest (``model.optim.lr``).
        """
        parts = self.key.split(".")
        for depth in range(len(parts) - 1, -1, -1):
            group = ".".join(parts[:depth])
            names = sorted({k[len(group) + 1 if group else 0:].split(".")[0] for k in self.known
                            if not group or k.startswith(group + ".")})
            if names:
                matches = closest_names(parts[depth], names)
                return [".".join([*parts[:depth], m, *parts[depth + 1:]]) for m in matches], group, names
        return [], "", []


_OPTION = re.compile(r"(?:Option|Key) '([^']+)' (?:is not accepted|is not expected)")
_GROUP_OPTION = re.compile(r"Group '([^']+)' does not accept option '([^']+)'")
_UNRECOGNIZED = re.compile(r"^unrecognized arguments: (.*)$", re.MULTILINE)
_PARSER_KEY = re.compile(r'Parser key "([^"]+)"')
_CLASS_PATH = re.compile(r"Problem with given class_path '([^']+)'")
#: Parser entries that are no config keys.
_NOT_KEYS = {"help", "config", "print_config", "print_shtab"}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _ancestors(lines: list[str], index: int) -> list[str]:
    """The lines that jsonargparse's indented message nests line ``index`` under, outermost first."""
    found, threshold = [], _indent(lines[index])
    for line in reversed(lines[:index]):
        if line.strip() and _indent(line) < threshold:
            found.append(line)
            threshold = _indent(line)
    return found[::-1]


def _parser_keys(parser: Any) -> list[str]:
    """Every key of a jsonargparse parser, dotted (``trainer.max_epochs``, ``model.optim``)."""
    return [a.dest for a in parser._actions  # argparse keeps no public list of its arguments
            if a.dest.split(".")[-1] not in _NOT_KEYS and a.dest != "==SUPPRESS=="]


def _class_keys(class_path: str) -> list[str]:
    """The keys of the class at ``class_path`` as jsonargparse reads them (its signature, with the
    parameters a ``**kwargs`` passes on), or [] when it cannot be imported here."""
    from jsonargparse import ArgumentParser

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, "class", fail_untyped=False)
    except (ImportError, AttributeError, TypeError, ValueError):  # a class this process cannot build
        return []
    return [key.removeprefix("class.") for key in _parser_keys(parser) if key.startswith("class.")]


def _raising_parser(error: BaseException | str) -> Any:
    """The jsonargparse parser whose ``parse_args`` raised ``error`` (the outermost one in its
    traceback): the parser is no attribute of jsonargparse's errors, and LightningCLI, which builds it,
    raises before it returns."""
    from jsonargparse import ArgumentParser

    for frame, _ in traceback.walk_tb(getattr(error, "__traceback__", None)):
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, ArgumentParser):
            return candidate
    return None


def unknown_keys(error: BaseException | str) -> list[UnknownKey]:
    """The unknown keys a jsonargparse error reports, each with the keys valid where it stands.

    The forms: an option a class refuses (``Problem with given class_path 'x.Y': Option 'lrr' is not
    accepted``, under the ``Parser key`` it was given to, at any depth); an option a group refuses
    (``Group 'trainer' does not accept option 'max_epoch'``, a config file); a top-level key
    (``Option 'trainerr.max_epochs' is not accepted``); and an unknown flag (``unrecognized
    arguments: --checkpoint.monitr x``). The last three need the parser's keys, read from the parser
    that raised ``error`` (none for a message given as a string).
    """
    message = str(error)
    parser = _raising_parser(error)
    root = _parser_keys(parser) if parser is not None else []
    if match := _GROUP_OPTION.search(message):
        return [UnknownKey(f"{match[1]}.{match[2]}", root)]
    if match := _UNRECOGNIZED.search(message):
        flags = [arg.split("=", 1)[0][2:] for arg in match[1].split() if arg.startswith("--")]
        return [UnknownKey(_canonical(flag), root) for flag in flags]
    lines = message.splitlines()
    for index, line in enumerate(lines):
        if not (match := _OPTION.search(line)):
            continue
        above = _ancestors(lines, index)
        prefix = [m[1] for m in map(_PARSER_KEY.search, above) if m]
        classes = [m[1] for m in map(_CLASS_PATH.search, above) if m]
        key = ".".join([*prefix, match[1]])
        if not classes:
            return [UnknownKey(key, root)]
        group = ".".join(prefix)
        return [UnknownKey(key, [f"{group}.{k}" if group else k for k in _class_keys(classes[-1])])]
    return []


def _canonical(key: str) -> str:
    """A key as the parser sees it: ``data.init_args.batch_size`` -> ``data.batch_size``."""
    return ".".join(part for part in key.split(".") if part != "init_args")


def _as_written(written: str, replacement: str) -> str:
    """``replacement`` (a canonical key) spelt as the user wrote the key it replaces (``written``):
    with its ``init_args`` parts."""
    parts = replacement.split(".")
    out, i = [], 0
    for part in written.split("."):
        if part == "init_args":
            out.append(part)
        elif i < len(parts):
            out.append(parts[i])
            i += 1
    return ".".join([*out, *parts[i:]])


def _describe_unknown(unknown: UnknownKey, argv: list[str]) -> str:
    """One line: where the key was set, and the closest valid keys (else the valid keys there)."""
    matches, group, names = unknown.suggestions()
    flags = [arg.split("=", 1)[0][2:] for arg in argv if arg.startswith("--")]
    written = next((f for f in flags if _canonical(f) == unknown.key), None)
    if written is not None:
        where = f"--{written} (command line) is not an option"
        hint = " or ".join(f"--{_as_written(written, m)}" for m in matches)
    else:
        source = _setting_file(argv, [unknown.key])
        where = f"{source[0]}: key {unknown.key!r} is not an option" if source else \
            f"key {unknown.key!r} is not an option"
        hint = " or ".join(repr(m) for m in matches)
    if hint:
        return f"{where}; did you mean {hint}?"
    if names:
        return f"{where}; the keys of {group or 'the run config'} are: {', '.join(names)}"
    return where


def _setting_file(argv: list[str], keys: list[str]) -> tuple[Path, str] | None:
    """The last ``--config`` file of ``argv`` that sets one of ``keys`` (later files override earlier
    ones), with the first of ``keys`` it sets."""
    for path in reversed(config_files(argv)):
        data = yaml.safe_load(path.read_text()) or {}
        for key in keys:
            if _has_key(data, key, path.parent):
                return path, key
    return None


def explain_config_error(error: BaseException | str, argv: list[str]) -> str:
    """A LightningCLI (jsonargparse) error of the command line ``argv``, for the user.

    An unknown key (at any depth, on the command line or in a config file) is one line naming the key
    and where it was set, with the closest valid keys (``--model.optim.lrr (command line) is not an
    option; did you mean --model.optim.lr?``). Any other error is its message prefixed with where the
    offending key was set: ``(command line)`` when an option of ``argv`` sets it (the likelier typo: it
    is applied after the config files), else the last config file of ``argv`` that does
    (``path: key 'model.optim': ...``).

    Args:
        error: the error jsonargparse raised (its parser, read from its traceback, knows the valid
            top-level keys and groups), or its message.
        argv: the command line the parser was given.
    """
    if unknown := unknown_keys(error):
        return "; ".join(_describe_unknown(u, argv) for u in unknown)
    message = str(error)
    parser_key = _PARSER_KEY.search(message)
    option = _OPTION.search(message)
    if not parser_key:
        return message
    keys = [parser_key[1]]
    if option:
        keys.insert(0, f"{parser_key[1]}.{option[1]}")
    for key in keys:
        if any(_canonical(arg.split("=", 1)[0]) == f"--{key}" or arg.startswith(f"--{key}.") for arg in argv):
            return f"key {key!r} (command line): {message}"
    if source := _setting_file(argv, keys):
        return f"{source[0]}: key {source[1]!r}: {message}"
    return f"key {keys[0]!r} (command line): {message}"
