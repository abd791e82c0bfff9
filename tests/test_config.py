"""Config names resolve against configs/ and every shipped run config builds its model."""
from __future__ import annotations

from pathlib import Path

import pytest

from dekr.config import CONFIG_DIR, load_section, resolve_config_path


def test_short_names_resolve_against_configs_dir() -> None:
    assert resolve_config_path("w48.yaml") == CONFIG_DIR / "w48.yaml"
    assert resolve_config_path("w32") == CONFIG_DIR / "w32.yaml"
    assert load_section("w48.yaml", "model") == load_section("w48_coco.yaml", "model")
    assert load_section("w32.yaml", "model")["net"]["backbone"] == "hrnet_w32"


def test_unknown_config_lists_available(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="w99.yaml.*available.*w32_coco.yaml"):
        resolve_config_path("w99.yaml")


def test_missing_section_and_nested_file_are_named(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: {spec: coco}\ndata: data/nowhere.yaml\n")
    with pytest.raises(KeyError, match="no 'trainer' section"):
        load_section(cfg, "trainer")
    with pytest.raises(FileNotFoundError, match="data: 'data/nowhere.yaml' does not exist"):
        load_section(cfg, "data")


@pytest.mark.parametrize("name,backbone,k", [("w32_coco", "hrnet_w32", 17), ("w48_coco", "hrnet_w48", 17),
                                              ("w32_crowdpose", "hrnet_w32", 14), ("w48_crowdpose", "hrnet_w48", 14)])
def test_official_variant_configs(name: str, backbone: str, k: int) -> None:
    model = load_section(f"{name}.yaml", "model")
    assert model["net"]["backbone"] == backbone and model["net"]["num_keypoints"] == k
    assert model["loss"] == {"heatmap_factor": 1.0, "offset_factor": 0.03}
    assert model["optim"]["lr"] == 0.001 and model["optim"]["weight_decay"] == 0.0
    assert model["optim"]["milestones"] == ([90, 120] if "coco" in name else [200, 260])
