"""dekr.evaluate: OKS-AP from Python on real images, the same poses as predicting image by image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dekr.checkpoint import load_checkpoint
from dekr.data.dataset import read_image_rgb
from dekr.evaluation import evaluate
from dekr.inference import DecodeConfig, predict_poses
from tests.helpers.paths import FIXTURES
from tests.helpers.checkpoints import small_checkpoint

MINICOCO = FIXTURES / "coco_minicoco"


def test_evaluate_a_checkpoint_on_a_datamodule_config(tmp_path: Path) -> None:
    ckpt = small_checkpoint(tmp_path / "small.ckpt")
    data = {"dataset": "coco", "root": str(MINICOCO), "input_size": 128, "num_workers": 0, "pin_memory": False,
            "persistent_workers": False}
    decode = {"flip_test": False, "input_size": 128}
    result = evaluate(str(ckpt), data, decode=decode, batch_size=2, limit=2, accelerator="cpu", devices=1)
    assert {"AP", "AP50", "AP75", "APM", "APL", "AR"} <= set(result.stats)
    assert 0.0 <= result.stats["AP"] <= 1.0 and result.decode.input_size == 128
    ids = sorted({r["image_id"] for r in result.results})
    assert len(ids) >= 1
    # the same poses as the library's predictor on those images, one by one
    model = load_checkpoint(ckpt)
    cfg = DecodeConfig.for_dataset(model.spec, **decode)
    files = {int(p.stem): p for p in (MINICOCO / "images" / "val2017").glob("*.jpg")}
    for image_id in ids:
        pose = predict_poses(model.net, [read_image_rgb(files[image_id])], model.spec, cfg)[0]
        ours = sorted((r for r in result.results if r["image_id"] == image_id), key=lambda r: -r["score"])
        assert len(ours) == len(pose["scores"])
        np.testing.assert_allclose([r["score"] for r in ours], np.sort(pose["scores"].numpy())[::-1], rtol=1e-4, atol=1e-4)  # batch of 2 vs 1: float noise


def test_evaluate_rejects_a_bad_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be 'val' or 'test'"):
        evaluate("x.ckpt", {"dataset": "synthetic"}, split="train")


def test_evaluate_names_a_bad_decode_option_before_reading_any_image(tmp_path: Path) -> None:
    from dekr.dataclass_config import ConfigError

    ckpt = small_checkpoint(tmp_path / "small.ckpt")
    data = {"dataset": "coco", "root": str(MINICOCO), "num_workers": 0}
    with pytest.raises(ConfigError, match=r"^evaluate\(decode=...\): unknown decode option\(s\) \['flip'\]"):
        evaluate(str(ckpt), data, decode={"flip": False}, accelerator="cpu", devices=1)
