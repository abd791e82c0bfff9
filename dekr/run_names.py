"""How a run of a sweep point is named: its swept values by short keys (W&B name and tags, the
campaign's labels and table). Plain Python, so that ``scripts/sweep.py`` starts without Lightning."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

_CLASS_PATH = re.compile(r"^(?:[A-Za-z_]\w*\.)+([A-Z]\w*)$")


def short_keys(keys: Sequence[str]) -> list[str]:
    """Each dotted key by its last component, or by as many last components as tell it from the
    others (``model.net.offset_block`` -> ``offset_block``; ``a.lr`` and ``b.lr`` stay ``a.lr``, ``b.lr``)."""
    parts = [key.split(".") for key in keys]
    out = []
    for i, key in enumerate(parts):
        n = 1
        while n < len(key) and any(other[-n:] == key[-n:] for j, other in enumerate(parts) if j != i):
            n += 1
        out.append(".".join(key[-n:]))
    return out


def format_value(value: Any) -> str:
    """A config value in a run name or tag: strings as they are, a class path (or a ``class_path``
    mapping) by its class name, other values as JSON (``false``, ``0.001``, ``[15,8]``)."""
    if isinstance(value, Mapping) and "class_path" in value:
        value = value["class_path"]
    if isinstance(value, str):
        match = _CLASS_PATH.match(value)
        return match.group(1) if match else value
    if isinstance(value, float):
        return f"{value:.4g}"  # a sampled learning rate, not 17 digits of it
    return json.dumps(value, separators=(",", ":"), default=str)
