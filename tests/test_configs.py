"""configs/: every run config and data part parses with the training CLI, the paper recipes resolve
to the paper's settings, and no block of settings is written in two files.

Resolved as ``scripts/train.py --config NAME --print_config`` resolves them (parts stacked as
several ``--config``, sections in their own files loaded), in this process.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dekr.config import CONFIG_DIR

RUN_CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))
DATA_PARTS = sorted(p.name for p in (CONFIG_DIR / "data").glob("*.yaml"))
# name -> (backbone, heatmap channels, input size, most images per device, keypoints, epochs, lr steps)
PAPER = {
    "w32_coco.yaml": ("hrnet_w32", 32, 512, 10, 17, 140, [90, 120]),
    "w48_coco.yaml": ("hrnet_w48", 48, 640, 5, 17, 140, [90, 120]),
    "w32_crowdpose.yaml": ("hrnet_w32", 32, 512, 10, 14, 300, [200, 260]),
    "w48_crowdpose.yaml": ("hrnet_w48", 48, 640, 5, 14, 300, [200, 260]),
}


def print_config(*args: str) -> dict[str, Any]:
    """The config ``scripts/train.py ARGS --print_config`` prints, parsed."""
    import train  # noqa: PLC0415  (the script, importable once scripts/ is on the path)

    argv, out = list(sys.argv), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
            train.main([*args, "--print_config"])
    finally:
        sys.argv = argv  # (train.main hands its arguments to LightningCLI through sys.argv)
    assert exit_info.value.code in (0, None), out.getvalue()
    return yaml.safe_load(out.getvalue())


@pytest.fixture(scope="module")
def resolved() -> dict[str, dict[str, Any]]:
    return {name: print_config("--config", name) for name in RUN_CONFIGS}


def test_every_run_config_parses(resolved: dict[str, dict[str, Any]]) -> None:
    assert {"demo.yaml", "w32.yaml", "w48.yaml", *PAPER} <= set(resolved)
    for name, config in resolved.items():
        assert config["model"]["net"]["backbone"].startswith("hrnet_"), name
        assert config["data"]["class_path"] == "dekr.data.datamodule.DEKRDataModule", name


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_recipes_resolve_to_the_paper_settings(resolved: dict[str, dict[str, Any]], name: str) -> None:
    backbone, width, input_size, per_device, keypoints, epochs, milestones = PAPER[name]
    config = resolved[name]
    model, data = config["model"], config["data"]["init_args"]
    assert model["net"]["backbone"] == backbone and model["net"]["heatmap_channels"] == width
    assert model["net"]["num_keypoints"] == keypoints
    assert model["spec"] == ("coco" if keypoints == 17 else "crowdpose")
    assert model["net"]["pretrained_backbone"] is True and model["net"]["init"] == "official"
    assert (model["net"]["offset_channels_per_keypoint"], model["net"]["offset_blocks"]) == (15, 2)
    assert model["loss"]["offset_factor"] == 0.03
    assert model["optim"]["optimizer"] == "adam" and model["optim"]["lr"] == 0.001
    assert model["optim"]["weight_decay"] == 0.0 and model["optim"]["milestones"] == milestones
    assert data["dataset"] == model["spec"] and data["official_quirks"] is True
    assert data["global_batch_size"] == 40 and data["batch_size"] == per_device
    assert data["input_size"] == input_size
    assert config["trainer"]["max_epochs"] == epochs and config["seed_everything"] == 42
    assert config["trainer"]["precision"] == "32-true" and config["trainer"]["devices"] == "auto"


@pytest.mark.parametrize("short,full", [("w32.yaml", "w32_coco.yaml"), ("w48.yaml", "w48_coco.yaml")])
def test_short_names_are_the_coco_recipes(resolved: dict[str, dict[str, Any]], short: str, full: str) -> None:
    assert not (CONFIG_DIR / short).is_symlink()
    a, b = (dict(resolved[n]) for n in (short, full))
    a.pop("parts"), b.pop("parts")
    assert a == b


@pytest.mark.parametrize("name", DATA_PARTS)
def test_every_data_part_parses(name: str) -> None:
    part = yaml.safe_load((CONFIG_DIR / "data" / name).read_text())
    config = print_config("--config", "demo.yaml", "--data", str(CONFIG_DIR / "data" / name))
    assert config["data"]["init_args"]["dataset"] == part["init_args"]["dataset"]


def _mappings(node: Any, path: str = "") -> list[tuple[str, str]]:
    """(key path, canonical JSON) of every mapping with two or more entries in a YAML tree."""
    found = []
    if isinstance(node, dict):
        if len(node) >= 2:
            found.append((path or ".", json.dumps(node, sort_keys=True)))
        for key, value in node.items():
            found += _mappings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _mappings(value, f"{path}[{i}]")
    return found


def test_no_block_of_settings_is_in_two_files() -> None:
    """A block (mapping of two or more settings) lives in one file; recipes name it through
    ``parts`` or a section file (``data: data/coco.yaml``) instead of copying it."""
    files = sorted(p for p in CONFIG_DIR.rglob("*.yaml"))
    assert not [p for p in CONFIG_DIR.rglob("*") if p.is_symlink()]
    homes: dict[str, set[str]] = {}
    where: dict[str, list[str]] = {}
    for path in files:
        for key, block in _mappings(yaml.safe_load(path.read_text()) or {}):
            homes.setdefault(block, set()).add(str(path.relative_to(CONFIG_DIR)))
            where.setdefault(block, []).append(f"{path.relative_to(CONFIG_DIR)}: {key}")
    copies = {block: where[block] for block, owners in homes.items() if len(owners) > 1}
    assert not copies, f"blocks written in several files: {list(copies.values())}"
    assert len(files) >= 10 and Path(CONFIG_DIR / "model" / "w48.yaml") in files
