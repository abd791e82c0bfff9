"""dekr.dataclass_config: dataclasses from dicts, unknown names and mistyped values refused, naming the
option and where it came from."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from dekr.dataclass_config import ConfigError, dataclass_from_dict, dataclass_from_layers, parse_key_values


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


@dataclass
class Options:
    """Every kind of annotation the package's config dataclasses use."""

    size: int = 64
    factor: float = 1.0
    enabled: bool = True
    name: str | None = None
    mode: Literal["fast", "exact"] = "fast"
    scales: tuple[float, ...] = (1.0,)
    pair: tuple[float, float] = (1.0, 2.0)
    steps: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size % 32:
            raise ValueError(f"size must be a multiple of 32, got {self.size}")


def test_values_as_yaml_and_json_give_them_are_accepted() -> None:
    # ints for floats, lists for tuples, None for optional fields, a mapping for a dict field
    options = dataclass_from_dict(Options, {"size": 96, "factor": 2, "name": None, "mode": "exact",
                                            "scales": [2, 1], "pair": [0.5, 1], "steps": [1, 2],
                                            "extra": {"a": 1}}, "test")
    assert (options.size, options.factor, options.mode) == (96, 2, "exact")
    assert (options.scales, options.pair, options.steps) == ([2, 1], [0.5, 1], [1, 2])


@pytest.mark.parametrize("key, value, expected", [
    ("size", "abc", "must be int, got 'abc' (str)"),
    ("size", True, "must be int, got True (bool)"),
    ("factor", "fast", "must be float, got 'fast' (str)"),
    ("enabled", "yes please", "must be bool, got 'yes please' (str)"),
    ("mode", "FAST", "must be one of 'fast', 'exact', got 'FAST' (str)"),
    ("scales", 1.0, "must be a list of float, got 1.0 (float)"),
    ("pair", [1.0], "must be a list of 2 (float, float), got [1.0] (list)"),
    ("steps", ["a"], "must be a list of int"),
    ("extra", [1], "must be a mapping"),
])
def test_a_mistyped_value_is_named_with_its_source(key: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(f"run.yaml: test option '{key}' {expected}")):
        dataclass_from_dict(Options, {key: value}, "test", source="run.yaml")


def test_a_number_read_as_a_string_gets_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"'factor' must be float, got '1e-3' \(str\) \(YAML reads"):
        dataclass_from_dict(Options, {"factor": "1e-3"}, "test")
    with pytest.raises(ConfigError, match=r"'size' must be int, got '64' \(str\) \(a number in quotes\?\)$"):
        dataclass_from_dict(Options, {"size": "64"}, "test")


def test_the_class_checks_are_prefixed_with_the_source_and_unknown_keys_too() -> None:
    with pytest.raises(ConfigError, match=r"^--opts: test: size must be a multiple of 32, got 40$"):
        dataclass_from_dict(Options, {"size": 40}, "test", source="--opts")
    with pytest.raises(ConfigError, match=r"^ckpt.pt: unknown test option\(s\) \['sise'\]; known: .*'size'"):
        dataclass_from_dict(Options, {"sise": 64}, "test", source="ckpt.pt")
    assert issubclass(ConfigError, ValueError)  # callers that catch ValueError keep working


def test_base_keeps_the_fields_data_does_not_set() -> None:
    base = Options(size=128, mode="exact")
    assert dataclass_from_dict(Options, {"factor": 3.0}, "test", base=base) == Options(128, 3.0, mode="exact")
    assert base == Options(size=128, mode="exact")  # not changed


def test_layers_apply_in_order_and_an_error_names_the_layer_that_brought_it() -> None:
    layers = [("file.yaml", {"size": 96, "mode": "exact"}), ("flags", {"size": 128}), ("--opts", None)]
    assert dataclass_from_layers(Options, layers, "test") == Options(size=128, mode="exact")
    with pytest.raises(ConfigError, match=r"^flags: test: size must be a multiple of 32, got 100"):
        dataclass_from_layers(Options, [("file.yaml", {"size": 96}), ("flags", {"size": 100})], "test")


def test_key_value_items_are_read_as_yaml() -> None:
    items = ["flip_test=false", "scales=[2, 1, 0.5]", " name = x=y", "rescore=null"]
    assert parse_key_values(items, "--decode") == {"flip_test": False, "scales": [2, 1, 0.5], "name": "x=y",
                                                   "rescore": None}  # YAML trims the value
    assert parse_key_values(None, "--decode") == {}
    with pytest.raises(ConfigError, match=r"^--decode expects key=value, got 'flip_test'"):
        parse_key_values(["flip_test"], "--decode")
    with pytest.raises(ConfigError, match=r"^--draw 'color_by=\[limb': the value is not valid YAML"):
        parse_key_values(["color_by=[limb"], "--draw")
