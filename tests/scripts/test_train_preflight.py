"""scripts/train.py fails fast, once: a paper config on a machine that cannot run it.

Each case runs the real script's ``main`` from an empty folder (in this process; in a subprocess
where the rank or the network settings matter, which torch and huggingface_hub read when they load)
and checks that the message names every cause, that the exit code is non-zero, and that nothing was
left behind (no run folder, no W&B run): the checks run in the launching process before anything
starts.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripts.train_helpers import REPO, clean_env, run_train, train_in_process

MINICOCO = REPO / "tests" / "fixtures" / "coco_minicoco"


def _fail_in_subprocess(args: list[str], cwd: Path, **env: str) -> str:
    result = run_train(args, cwd=cwd, check=False, timeout=120, env=clean_env(**env))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-4000:]
    assert list(cwd.iterdir()) == [], f"left behind: {list(cwd.iterdir())}"
    return result.stderr


@pytest.fixture
def fail(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``fail(args, cwd)``: scripts/train.py's main in this process must exit with 2, leaving ``cwd``
    empty; returns its stderr."""
    def run(args: list[str], cwd: Path) -> str:
        code, stderr = train_in_process(args, cwd, monkeypatch, capsys)
        assert code == 2, stderr[-4000:]
        assert list(cwd.iterdir()) == [], f"left behind: {list(cwd.iterdir())}"
        return stderr
    return run


def test_w48_without_data_gives_one_message(tmp_path: Path, fail) -> None:
    stderr = fail(["--config", "w48.yaml"], tmp_path)
    assert stderr.count("error:") == 1, stderr
    assert "dataset root data/coco (--data.init_args.root) does not exist" in stderr
    assert "annotations/person_keypoints_train2017.json + images/train2017/" in stderr
    assert "Traceback" not in stderr


def test_all_problems_in_one_message(tmp_path: Path, fail) -> None:
    cwd = tmp_path / "empty"
    cwd.mkdir()
    stderr = fail(["--config", "w32_crowdpose.yaml", "--trainer.devices", "8",
                    "--ckpt_path", str(tmp_path / "missing.ckpt"),
                    "--model.net.pretrained_backbone", str(tmp_path / "hrnetv2_w32_imagenet_pretrained.pth")], cwd)
    assert stderr.count("error:") == 1, stderr
    assert "4 problem(s)" in stderr
    assert "trainer.devices=8 asks for 8 devices but no GPU is visible" in stderr
    assert "dataset root data/crowdpose (--data.init_args.root) does not exist" in stderr
    assert "missing.ckpt (--ckpt_path) does not exist" in stderr
    assert "hrnetv2_w32_imagenet_pretrained.pth does not exist" in stderr  # listed with the others


def test_fine_tuning_needs_no_imagenet_weights(tmp_path: Path, fail) -> None:
    # init_from brings the backbone: a missing ImageNet file is no problem, the missing init file is
    cwd = tmp_path / "empty"
    cwd.mkdir()
    stderr = fail(["--config", "w32_coco.yaml", "--data.init_args.root", str(MINICOCO),
                   "--model.init_from", str(tmp_path / "missing.ckpt"),
                   "--model.net.pretrained_backbone", str(tmp_path / "absent_imagenet.pth")], cwd)
    assert "1 problem(s)" in stderr and "missing.ckpt (--model.init_from) does not exist" in stderr
    assert "absent_imagenet.pth" not in stderr


def test_a_split_that_cannot_make_40_images_lists_the_choices(tmp_path: Path, fail) -> None:
    stderr = fail(["--config", "w32_coco.yaml", "--data.init_args.root", str(MINICOCO),
                    "--trainer.accelerator", "cpu", "--trainer.devices", "3"], tmp_path)
    assert "data.global_batch_size=40 images per step cannot be split evenly over 3 device(s)" in stderr
    assert "Device counts that can: [1, 2, 4, 5, 8, 10, 20, 40]" in stderr


def test_missing_pretrained_file_names_the_file_and_the_option(tmp_path: Path, fail) -> None:
    weights = tmp_path.parent / "hrnetv2_w32_imagenet_pretrained.pth"
    stderr = fail(["--config", "w32_coco.yaml", "--data.init_args.root", str(MINICOCO),
                    "--model.net.pretrained_backbone", str(weights)], tmp_path)
    assert stderr.count("error:") == 1 and str(weights) in stderr
    assert "model.net.pretrained_backbone" in stderr


def test_a_misspelt_key_is_one_line_with_did_you_mean(tmp_path: Path, fail) -> None:
    """On the command line and in a config file, at any depth; the script stops before anything runs."""
    cwd = tmp_path / "run"
    cwd.mkdir()
    stderr = fail(["--config", "demo.yaml", "--model.optim.lrr", "0.1"], cwd)
    assert stderr.strip().splitlines()[-1] == \
        "error: --model.optim.lrr (command line) is not an option; did you mean --model.optim.lr?"
    assert "Union subtypes" not in stderr and "NestedArg" not in stderr
    config = tmp_path / "mine.yaml"
    config.write_text("data: {init_args: {augmentation: {max_rotaton: 3}}}\n")
    stderr = fail(["--config", "demo.yaml", "--config", str(config)], cwd)
    assert stderr.strip().splitlines()[-1] == (
        f"error: {config}: key 'data.augmentation.max_rotaton' is not an option; did you mean "
        "'data.augmentation.max_rotation'?")


def test_imagenet_weights_without_network_or_cache_fail_fast(tmp_path: Path) -> None:
    run, cache = tmp_path / "run", tmp_path / "hf"
    run.mkdir()
    stderr = _fail_in_subprocess(["--config", "w32_coco.yaml", "--data.init_args.root", str(MINICOCO)], run,
                                 HF_HOME=str(cache), HF_HUB_OFFLINE="1")
    assert stderr.count("error:") == 1, stderr
    assert "hrnet_w32" in stderr and "model.net.pretrained_backbone" in stderr


@pytest.mark.parametrize("rank_env", [{"SLURM_PROCID": "1"}, {"RANK": "3"}])
def test_only_rank_zero_reports(tmp_path: Path, rank_env: dict[str, str]) -> None:
    # Under SLURM every task runs the launcher checks: all exit non-zero, one prints.
    stderr = _fail_in_subprocess(["--config", "w48.yaml"], tmp_path, **rank_env)
    assert "error:" not in stderr
