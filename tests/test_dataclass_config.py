"""dekr.dataclass_config: dataclasses from dicts, unknown names refused with the known ones listed."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from dekr.dataclass_config import dataclass_from_dict


@dataclass
class Point:
    x: int = 1
    y: int = 2


def test_known_keys_set_fields_and_none_gives_defaults() -> None:
    assert dataclass_from_dict(Point, {"y": 5}, "point") == Point(1, 5)
    assert dataclass_from_dict(Point, None, "point") == Point()


def test_unknown_key_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown point option\(s\) \['z'\]; known: \['x', 'y'\]"):
        dataclass_from_dict(Point, {"x": 0, "z": 3}, "point")
