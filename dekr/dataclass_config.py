"""Config dataclasses from plain dicts (YAML sections, checkpoint hparams, ``key=value`` options),
strict about the names: a misspelt option fails loudly instead of being dropped."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    ConfigT = TypeVar("ConfigT", bound=DataclassInstance)
else:
    ConfigT = TypeVar("ConfigT")


def dataclass_from_dict(cls: type[ConfigT], data: Mapping[str, Any] | None, what: str) -> ConfigT:
    """``cls(**data)`` (``None``: the defaults); a key that is not a field of ``cls`` raises a
    ValueError ``unknown <what> option(s) [...]; known: [...]``."""
    data = dict(data or {})
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {what} option(s) {sorted(unknown)}; known: {sorted(known)}")
    return cls(**data)


def as_config(cls: type[ConfigT], value: ConfigT | Mapping[str, Any] | None, what: str) -> ConfigT:
    """A config dataclass from an instance (kept), a dict (YAML section, checkpoint hparams) or
    ``None`` (the defaults); ``what`` names the option in errors (e.g. ``data.augmentation``)."""
    if value is None or isinstance(value, Mapping):
        return dataclass_from_dict(cls, value, what)
    if isinstance(value, cls):
        return value
    raise TypeError(f"{what}: expected {cls.__name__} or a dict, got {type(value).__name__}")
