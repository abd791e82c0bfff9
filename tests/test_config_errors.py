"""dekr.config_errors: a jsonargparse error names the config file, or the command line, that set the key."""
from __future__ import annotations

from pathlib import Path

from dekr.config_errors import explain_config_error

# jsonargparse 4.x messages, as scripts/train.py receives them
UNKNOWN = ('Parser key "data":\n  Does not validate against any of the Union subtypes\n  Errors:\n'
           "    - Problem with given class_path 'dekr.data.datamodule.DEKRDataModule':\n"
           "        Option 'bogus' is not accepted\n")
WRONG_TYPE = 'Parser key "model.optim":\n  Errors:\n    - Parser key "lr":\n  Expected a float. Got value: fast\n'


def test_names_the_last_file_that_sets_the_key(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "part.yaml").write_text("class_path: x.Y\ninit_args: {bogus: 1}\n")
    base, recipe = tmp_path / "base.yaml", tmp_path / "recipe.yaml"
    base.write_text("data: {init_args: {bogus: 2}}\n")
    recipe.write_text("data: data/part.yaml\n")  # the section in its own file, relative to the recipe
    argv = ["--config", str(base), f"--config={recipe}", "--trainer.max_epochs", "1"]
    assert explain_config_error(UNKNOWN, argv).startswith(f"{recipe}: key 'data.bogus': Parser key")
    assert explain_config_error(UNKNOWN, argv[:2]).startswith(f"{base}: key 'data.bogus'")


def test_command_line_option_comes_first(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model: {optim: {lr: 0.001}}\n")
    argv = ["--config", str(config), "--model.optim.lr", "fast"]
    assert explain_config_error(WRONG_TYPE, argv).startswith("key 'model.optim' (command line): ")
    assert explain_config_error(WRONG_TYPE, argv[:2]).startswith(f"{config}: key 'model.optim'")
    assert explain_config_error("Group 'trainer' does not accept option 'bogus'", argv) == \
        "Group 'trainer' does not accept option 'bogus'"  # no parser key: the message as it is
