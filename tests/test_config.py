"""dekr.config: config names resolve against configs/, a config's parts stack before it, and a
section reads as LightningCLI resolves it."""
from __future__ import annotations

from pathlib import Path

import pytest

from dekr.config import CONFIG_DIR, config_stack, load_section, resolve_config_path


def test_short_names_resolve_against_configs_dir() -> None:
    assert resolve_config_path("w48.yaml") == CONFIG_DIR / "w48.yaml"
    assert resolve_config_path("w32") == CONFIG_DIR / "w32.yaml"
    assert not (CONFIG_DIR / "w48.yaml").is_symlink()  # a file of its own that names w48_coco.yaml
    assert load_section("w48.yaml", "model") == load_section("w48_coco.yaml", "model")
    assert load_section("w48.yaml", "data") == load_section("w48_coco.yaml", "data")
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


def test_parts_apply_first_in_order_and_recursively() -> None:
    stack = [p.relative_to(CONFIG_DIR).as_posix() for p in config_stack("w48_crowdpose.yaml")]
    assert stack == ["model/w32.yaml", "w32_coco.yaml", "w32_crowdpose.yaml", "model/w48.yaml",
                     "w48_crowdpose.yaml"]


def test_later_files_override_single_values(tmp_path: Path) -> None:
    """As LightningCLI merges several --config files: mappings value by value, lists replaced,
    a section in its own file read relative to the config naming it, parts found next to the
    config before configs/."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.yaml").write_text(
        "class_path: dekr.data.datamodule.DEKRDataModule\n"
        "init_args: {dataset: coco, root: a, input_size: 512}\n")
    (tmp_path / "base.yaml").write_text(
        "model: {net: {backbone: hrnet_w32, num_keypoints: 17}, optim: {milestones: [1, 2, 3]}}\n"
        "data: sub/data.yaml\n")
    run = tmp_path / "run.yaml"
    run.write_text("parts: [base.yaml]\nmodel: {net: {num_keypoints: 14}, optim: {milestones: [5]}}\n"
                   "data: {init_args: {root: b}}\n")
    assert load_section(run, "model") == {"net": {"backbone": "hrnet_w32", "num_keypoints": 14},
                                          "optim": {"milestones": [5]}}
    assert load_section(run, "data") == {"dataset": "coco", "root": "b", "input_size": 512}
    other = tmp_path / "other.yaml"  # a new class_path replaces the object, as jsonargparse does
    other.write_text("parts: [run.yaml]\ndata: {class_path: my.Data, init_args: {root: c}}\n")
    assert load_section(other, "data") == {"root": "c"}


def test_bad_parts_are_named(tmp_path: Path) -> None:
    loop_a, loop_b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    loop_a.write_text("parts: [b.yaml]\n")
    loop_b.write_text("parts: [a.yaml]\n")
    with pytest.raises(ValueError, match="loop: .*a.yaml -> .*b.yaml -> .*a.yaml"):
        config_stack(loop_a)
    missing = tmp_path / "missing.yaml"
    missing.write_text("parts: [model/w99.yaml]\n")
    with pytest.raises(FileNotFoundError, match="missing.yaml: part 'model/w99.yaml' not found"):
        config_stack(missing)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("parts: w32_coco.yaml\n")
    with pytest.raises(ValueError, match="scalar.yaml: parts must be a list"):
        config_stack(scalar)


@pytest.mark.parametrize("name,backbone,k", [("w32_coco", "hrnet_w32", 17), ("w48_coco", "hrnet_w48", 17),
                                              ("w32_crowdpose", "hrnet_w32", 14), ("w48_crowdpose", "hrnet_w48", 14)])
def test_official_variant_configs(name: str, backbone: str, k: int) -> None:
    model = load_section(f"{name}.yaml", "model")
    assert model["net"]["backbone"] == backbone and model["net"]["num_keypoints"] == k
    assert model["loss"] == {"heatmap_factor": 1.0, "offset_factor": 0.03}
    assert model["optim"]["lr"] == 0.001 and model["optim"]["weight_decay"] == 0.0
    assert model["optim"]["milestones"] == ([90, 120] if "coco" in name else [200, 260])
