"""dekr.loggers: W&B run names, groups and tags from the run or its sweep point; what the user set
wins; the config and the best-and-last summary as a real offline W&B run file records them."""
from __future__ import annotations

from pathlib import Path

import pytest

from dekr.loggers import WandbLogger, describe_wandb_runs, explicit_identity, run_identity
from dekr.run_names import format_value, short_keys
from tests.scripts.wandb_reader import run_info, wait_until_complete

SWEEP = {"name": "adaptive_conv_ablation", "point": 3, "seed": 1,
         "parameters": {"model.net.offset_block": "basic", "model.net.disentangled": False}}


def test_short_keys_and_values() -> None:
    assert short_keys(["model.net.offset_block", "model.optim.lr"]) == ["offset_block", "lr"]
    assert short_keys(["model.optim.lr", "model.net.lr", "data.init_args.input_size"]) == \
        ["optim.lr", "net.lr", "input_size"]
    assert short_keys(["a.b.lr", "c.b.lr"]) == ["a.b.lr", "c.b.lr"]
    assert [format_value(v) for v in (False, None, 0.0005, [15, 8], "basic", "hrnet_w32")] == \
        ["false", "null", "0.0005", "[15,8]", "basic", "hrnet_w32"]
    assert format_value("lightning.pytorch.callbacks.EMAWeightAveraging") == "EMAWeightAveraging"
    assert format_value({"class_path": "dekr.models.offset.BasicBlock", "init_args": {}}) == "BasicBlock"


def test_run_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_identity(None, "x", SWEEP, seed=7) == {
        "name": "offset_block=basic disentangled=false seed=1", "group": "adaptive_conv_ablation",
        "tags": ["offset_block=basic", "disentangled=false", "seed=1"]}
    no_seed = {**SWEEP, "seed": None, "parameters": {}}
    assert run_identity(None, "x", no_seed)["name"] == "adaptive_conv_ablation point 3"
    assert run_identity("demo", "runs/demo-lr3") == {"name": "demo · runs/demo-lr3", "group": None,
                                                     "tags": []}
    assert run_identity("demo", tmp_path / "runs" / "a")["name"] == "demo · runs/a"  # relative to the cwd
    assert run_identity(None, "/elsewhere/run")["name"] == "/elsewhere/run"
    long = {"name": "s", "parameters": {"x": "y" * 100}}
    assert len(run_identity(None, "r", long)["tags"][0]) == 64  # W&B refuses longer tags


def test_explicit_identity() -> None:
    argv = ["--config", "a.yaml", "--trainer.logger.init_args.name", "mine", "--trainer.logger.tags+=x",
            "--trainer.logger.init_args.group=g", "--model.name", "n"]
    assert explicit_identity(argv, environ={}) == {"name", "group", "tags"}
    assert explicit_identity(["--trainer.logger.init_args.project", "p"], environ={}) == set()
    assert explicit_identity([], environ={"WANDB_RUN_GROUP": "g"}) == {"group"}


def test_describe_keeps_what_the_user_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    configured = WandbLogger(mode="disabled", name="demo", tags=["paper"], group="mine")
    describe_wandb_runs([configured], config_name="w32", run_folder="runs/demo-lr3")
    assert configured.identity == {"name": "demo · runs/demo-lr3", "group": "mine", "tags": ["paper"]}
    point = WandbLogger(mode="disabled", name="demo", tags=["paper"], group="mine")
    describe_wandb_runs(point, config_name="w32", run_folder="p", sweep=SWEEP, explicit={"name"})
    assert point.identity == {"name": "demo", "group": "adaptive_conv_ablation",
                              "tags": ["paper", "offset_block=basic", "disentangled=false", "seed=1"]}
    describe_wandb_runs(None, config_name="w32", run_folder="p")  # no W&B logger: nothing to do


def test_offline_run_records_identity_config_and_best_and_last(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WANDB_NAME", "WANDB_RUN_GROUP", "WANDB_TAGS", "WANDB_DIR"):
        monkeypatch.delenv(key, raising=False)
    logger = WandbLogger(mode="offline", save_dir=str(tmp_path))
    config = {"model": {"net": {"offset_block": "basic"}}, "sweep": SWEEP, "path": Path("a")}
    describe_wandb_runs(logger, config_name="demo", run_folder="p", sweep=SWEEP, config=config)
    logger.summarize("val/AP", "max")
    logger.summarize("val/loss", "min")
    logger.log_hyperparams({"net": {"offset_block": "basic"}})  # the module's: already the config's `model`
    for step, (ap, loss) in enumerate([(0.2, 3.0), (0.5, 1.0), (0.4, 2.0)]):
        logger.log_metrics({"val/AP": ap, "val/loss": loss}, step=step)
    logger.describe(config={"provenance": {"commit": "abc"}})  # after the start: a config update
    logger.experiment.finish()
    [path] = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    wait_until_complete(path)  # W&B's service may still be writing it
    run = run_info(path)
    assert run["name"] == "offset_block=basic disentangled=false seed=1"
    assert run["group"] == "adaptive_conv_ablation"
    assert run["tags"] == ["offset_block=basic", "disentangled=false", "seed=1"]
    assert run["config"] == {"model": {"net": {"offset_block": "basic"}}, "sweep": SWEEP, "path": "a",
                             "provenance": {"commit": "abc"}}
    assert run["metrics"]["val/AP"] == {"step_metric": "trainer/global_step", "summary": ["max", "last"]}
    assert run["summary"]["val/AP"] == {"max": 0.5, "last": 0.4}
    assert run["summary"]["val/loss"] == {"min": 1.0, "last": 2.0}


def test_summarize_checks_the_mode() -> None:
    with pytest.raises(ValueError, match="max or min"):
        WandbLogger(mode="disabled").summarize("val/AP", "best")


@pytest.mark.parametrize("logger_class", ["ours", "lightning"])
def test_no_anonymous_setting_warning(logger_class: str, tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning hands wandb.init ``anonymous=None``, which W&B answers with "The anonymous setting has
    no effect" (any mode, disabled too); ours leaves the setting out. Lightning's own logger is the
    control that the warning is still there to catch."""
    import wandb.errors.term
    from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

    monkeypatch.setattr(wandb.errors.term, "_printed_messages", set())  # W&B says it once per process
    make = WandbLogger if logger_class == "ours" else LightningWandbLogger
    logger = make(mode="disabled", save_dir=str(tmp_path))
    logger.experiment.finish()
    said = "The anonymous setting has no effect" in capfd.readouterr().err
    assert said == (logger_class == "lightning")
