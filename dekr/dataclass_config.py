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
