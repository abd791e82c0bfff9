"""dekr.config_errors: an unknown key at any depth is one line with the closest valid keys; other
jsonargparse errors name the config file, or the command line, that set the key.

The errors come from a real jsonargparse parser shaped as scripts/train.py's LightningCLI parser (a
class group, Optional dataclass options, a datamodule in subclass mode); tests/scripts/
test_train_preflight.py runs the script itself.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import ModelCheckpoint

from dekr.config_errors import explain_config_error
from dekr.data.datamodule import DEKRDataModule
from dekr.dataclass_config import ConfigError, closest_names, dataclass_from_dict, did_you_mean
from dekr.module import OptimConfig

# jsonargparse 4.x messages, as scripts/train.py receives them
UNKNOWN = ('Parser key "data":\n  Does not validate against any of the Union subtypes\n  Errors:\n'
           "    - Problem with given class_path 'dekr.data.datamodule.DEKRDataModule':\n"
           "        Option 'bogus' is not accepted\n")
WRONG_TYPE = ('Parser key "model.optim":\n  Errors:\n    - Parser key "lr":\n'
              "  Expected a float. Got value: fast\n")


def run_parser(argv: list[str]) -> str:
    """``argv`` through a parser shaped like scripts/train.py's, whose error must be explained."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action="config")
    parser.add_argument("--model.optim", type=OptimConfig | None, default=None)
    parser.add_argument("--data", type=DEKRDataModule | None, default=None)
    parser.add_class_arguments(ModelCheckpoint, "checkpoint", fail_untyped=False, sub_configs=True)
    parser.add_argument("--seed_everything", type=int, default=0)
    with pytest.raises(Exception) as raised:  # jsonargparse's ArgumentError
        parser.parse_args(argv)
    return explain_config_error(raised.value, argv)


@pytest.mark.parametrize("args, expected", [
    (["--model.optim.lrr", "0.1"], "--model.optim.lr"),
    (["--data.init_args.augmentation.max_rotaton", "3"],  # two levels down, spelt as written
     "--data.init_args.augmentation.max_rotation"),
    (["--data.batch_sizee", "3"], "--data.batch_size"),
    (["--checkpoint.monitr", "val/AP"], "--checkpoint.monitor"),  # a class group
    (["--model.optimm.lr", "1"], "--model.optim.lr"),  # a misspelt group
    (["--seed_everyting", "1"], "--seed_everything"),
])
def test_an_unknown_command_line_key_is_one_line_with_the_closest(args: list[str], expected: str) -> None:
    assert run_parser(args) == f"{args[0]} (command line) is not an option; did you mean {expected}?"


@pytest.mark.parametrize("yaml_text, key, expected", [
    ("model: {optim: {lrr: 0.1}}", "model.optim.lrr", "model.optim.lr"),
    ("data: {init_args: {augmentation: {max_rotaton: 3}}}", "data.augmentation.max_rotaton",
     "data.augmentation.max_rotation"),
    ("checkpoint: {monitr: val/AP}", "checkpoint.monitr", "checkpoint.monitor"),
    ("checkpointt: {monitor: val/AP}", "checkpointt.monitor", "checkpoint.monitor"),
])
def test_an_unknown_key_in_a_config_file_names_the_file(tmp_path: Path, yaml_text: str, key: str,
                                                        expected: str) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text + "\n")
    assert run_parser(["--config", str(config)]) == \
        f"{config}: key {key!r} is not an option; did you mean {expected!r}?"


def test_without_a_close_key_the_valid_keys_are_listed() -> None:
    assert run_parser(["--model.optim.zzzz", "1"]) == (
        "--model.optim.zzzz (command line) is not an option; the keys of model.optim are: backbone_lr_mult, "
        "freeze_backbone, gamma, lr, milestones, momentum, optimizer, weight_decay")


def test_names_the_last_file_that_sets_the_key(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "part.yaml").write_text("class_path: x.Y\ninit_args: {bogus: 1}\n")
    base, recipe = tmp_path / "base.yaml", tmp_path / "recipe.yaml"
    base.write_text("data: {init_args: {bogus: 2}}\n")
    recipe.write_text("data: data/part.yaml\n")  # the section in its own file, relative to the recipe
    argv = ["--config", str(base), f"--config={recipe}", "--trainer.max_epochs", "1"]
    # (a message given as a string: the class it names still gives the valid keys)
    explained = explain_config_error(UNKNOWN, argv)
    assert explained.startswith(f"{recipe}: key 'data.bogus' is not an option; the keys of data are: ")
    assert "batch_size, " in explained and "\n" not in explained
    assert explain_config_error(UNKNOWN, argv[:2]).startswith(f"{base}: key 'data.bogus'")


def test_other_errors_name_where_the_key_was_set(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model: {optim: {lr: 0.001}}\n")
    argv = ["--config", str(config), "--model.optim.lr", "fast"]
    assert explain_config_error(WRONG_TYPE, argv).startswith("key 'model.optim' (command line): ")
    assert explain_config_error(WRONG_TYPE, argv[:2]).startswith(f"{config}: key 'model.optim'")
    assert explain_config_error("Parser key \"x\": something else", []) == \
        "key 'x' (command line): Parser key \"x\": something else"
    assert explain_config_error("no key in here", argv) == "no key in here"  # the message as it is


def test_dataclass_options_suggest_the_closest_field() -> None:
    with pytest.raises(ConfigError, match=r"unknown optim option\(s\) \['lrr'\]; known: \[.*\]; "
                                          r"did you mean 'lr'\?$"):
        dataclass_from_dict(OptimConfig, {"lrr": 0.1}, "optim")
    with pytest.raises(ConfigError, match=r"\['zzz'\]; known: \[[^]]*\]$"):  # nothing close: no guess
        dataclass_from_dict(OptimConfig, {"zzz": 0.1}, "optim")
    # the clear one alone; two equally likely ones both
    assert closest_names("max_epoch", ["max_epochs", "min_epochs", "max_steps"]) == ["max_epochs"]
    assert did_you_mean(["colour", "widht"], ["color", "width", "height"]) == \
        "did you mean 'color' or 'width'?"
