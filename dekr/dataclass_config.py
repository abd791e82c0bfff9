"""Config dataclasses from plain dicts (YAML sections, checkpoint hparams, ONNX metadata,
``key=value`` options): the one converter, strict about names and types, so that a misspelt or
mistyped option fails loudly, naming the option and where it came from, instead of being dropped
or failing later with an unrelated message."""
from __future__ import annotations

import difflib
import functools
import numbers
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    ConfigT = TypeVar("ConfigT", bound=DataclassInstance)
else:
    ConfigT = TypeVar("ConfigT")


class ConfigError(ValueError):
    """A config dict names an unknown option, gives one a value of the wrong type, or a value its
    dataclass refuses; the message names the option and where the dict came from."""


def closest_names(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The names of ``known`` closest to a misspelt ``name``, closest first: difflib's close matches
    (ratio >= 0.6) within 0.1 of the best one, so ``max_epoch`` gets ``max_epochs`` alone, not also
    ``min_epochs``, while two equally likely names both show."""
    matches = difflib.get_close_matches(name, list(known), n=n)
    ratios = [difflib.SequenceMatcher(None, name, m).ratio() for m in matches]
    return [m for m, r in zip(matches, ratios) if r >= ratios[0] - 0.1]


def did_you_mean(names: Iterable[str], known: Iterable[str], quote: str = "'") -> str:
    """``"did you mean 'lr'?"`` (or ``'lr' or 'gamma'``) for the closest of ``known`` to each of
    ``names``; ``""`` when none is close."""
    known = list(known)
    matches = list(dict.fromkeys(m for name in names for m in closest_names(name, known)))
    return f"did you mean {' or '.join(f'{quote}{m}{quote}' for m in matches)}?" if matches else ""


def dataclass_from_dict(cls: type[ConfigT], data: Mapping[str, Any] | None, what: str, *,
                        source: str | None = None, base: ConfigT | None = None) -> ConfigT:
    """``cls(**data)``, over the fields of ``base`` (default: the class defaults).

    Args:
        data: the options to set (``None``: none).
        what: the kind of option, for messages (``decode``, ``data.augmentation``, ``model.net``).
        source: where ``data`` came from, for messages (a file, ``--decode``, a checkpoint).
        base: an instance whose fields are kept where ``data`` sets none.

    Raises:
        ConfigError: ``[<source>: ]unknown <what> option(s) [...]; known: [...][; did you mean ...?]``
            for a key that is not a field; ``<what> option 'key' must be <type>, got <value>`` for a
            value that does not fit the field's annotation (ints pass for floats, lists for tuples);
            the dataclass's own checks (``__post_init__``) with the same prefix.
    """
    data = dict(data or {})
    where = f"{source}: " if source else ""
    known = [f.name for f in fields(cls) if f.init]  # type: ignore[arg-type]
    unknown = set(data) - set(known)
    if unknown:
        hint = did_you_mean(sorted(unknown), known)
        raise ConfigError(f"{where}unknown {what} option(s) {sorted(unknown)}; known: {sorted(known)}"
                          + (f"; {hint}" if hint else ""))
    hints = _field_types(cls)
    for key, value in data.items():
        if key in hints and not _fits(value, hints[key]):
            hint = ""
            if isinstance(value, str) and _is_number(value):
                hint = (" (YAML reads a number without a dot, like 1e-3, as a string: write 1.0e-3)"
                        if "e" in value.lower() else " (a number in quotes?)")
            raise ConfigError(f"{where}{what} option {key!r} must be {_describe(hints[key])}, got {value!r} "
                              f"({type(value).__name__}){hint}")
    if base is not None:
        data = {**{name: getattr(base, name) for name in known}, **data}
    try:
        return cls(**data)
    except (ValueError, TypeError) as err:  # the class's own checks: say where the values came from
        raise ConfigError(f"{where}{what}: {err}") from err


def dataclass_from_layers(cls: type[ConfigT], layers: Iterable[tuple[str, Mapping[str, Any] | None]],
                          what: str, base: ConfigT | None = None) -> ConfigT:
    """``cls`` from ``base`` (default: the class defaults) with each ``(source, options)`` layer set
    over the ones before it (the later wins), each checked by :func:`dataclass_from_dict` under its
    own source: an error names the layer that brought the bad option."""
    config = base if base is not None else dataclass_from_dict(cls, None, what)
    for source, options in layers:
        config = dataclass_from_dict(cls, options, what, source=source, base=config)
    return config


def as_config(cls: type[ConfigT], value: ConfigT | Mapping[str, Any] | None, what: str) -> ConfigT:
    """A config dataclass from an instance (kept), a dict (YAML section, checkpoint hparams) or
    ``None`` (the defaults); ``what`` names the option in errors (e.g. ``data.augmentation``)."""
    if value is None or isinstance(value, Mapping):
        return dataclass_from_dict(cls, value, what)
    if isinstance(value, cls):
        return value
    raise TypeError(f"{what}: expected {cls.__name__} or a dict, got {type(value).__name__}")


def parse_key_values(items: Sequence[str] | None, option: str) -> dict[str, Any]:
    """Command-line ``key=value`` items (``--decode flip_test=false scales=[2,1,0.5]``) -> a dict,
    each value read as YAML (numbers, booleans, lists, null); ``option`` names the flag in errors."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} expects key=value, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"{option} {item!r}: the value is not valid YAML ({err})") from None
    return out


# ---------------------------------------------------------------------------------------------- types
@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation (``from __future__ import annotations`` leaves strings);
    none when an annotation cannot be resolved here (then the types are not checked)."""
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        return {}


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint``, as a dict from YAML / JSON can: ints for floats, lists for
    tuples; annotations other than the plain ones (classes, callables) are not checked."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or isinstance(hint, TypeVar):
        return True
    if hint is None or hint is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, (str, os.PathLike))
    if origin in (tuple, list, Sequence) or hint in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
        return not args or all(_fits(v, args[0]) for v in value)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, Mapping)
    return True


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "None"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple and args and args[-1] is Ellipsis:
        return f"a list of {_describe(args[0])}"
    if origin is tuple and args:
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    if origin in (tuple, list) or hint in (tuple, list):
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
