"""scripts/visualize_offsets.py on a real image with a small random checkpoint: a PNG with the points
drawn, the keypoint selection, and one-line errors (missing files, a basic-block network, bad names)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from dekr.data.dataset import read_image_rgb
from tests.helpers.paths import FIXTURES
from tests.helpers.checkpoints import small_checkpoint

IMAGE = FIXTURES / "coco_minicoco" / "images" / "val2017" / "000000009483.jpg"
FAST = ["--input-size", "128", "--device", "cpu"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return small_checkpoint(tmp_path_factory.mktemp("model") / "small.ckpt")


def run(*args: str):
    import visualize_offsets

    return visualize_offsets.main([*args, *FAST])


def test_writes_a_png_with_the_points_and_selects_keypoints(tmp_path, ckpt, capsys):
    out = tmp_path / "figs" / "offsets.png"
    summary = run("--ckpt", str(ckpt), "--image", str(IMAGE), "--out", str(out))
    assert summary["out"] == str(out) and summary["centers"] > 0 and summary["convs"] == 1
    assert summary["branches"] == list(range(17)) and "adaptive convs" in capsys.readouterr().out
    image = read_image_rgb(IMAGE)
    drawn = cv2.cvtColor(cv2.imread(str(out), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    assert drawn.shape == image.shape
    changed = np.any(drawn != image, axis=-1).mean()
    assert changed > 0.001
    assert not list(out.parent.glob(".*.tmp"))  # written atomically, nothing left beside it

    few = tmp_path / "few.png"
    summary = run("--ckpt", str(ckpt), "--image", str(IMAGE), "--out", str(few), "--keypoints", "nose,left_wrist",
                  "--max-people", "2")
    assert summary["branches"] == [0, 9] and summary["centers"] == 2
    fewer = np.any(cv2.cvtColor(cv2.imread(str(few)), cv2.COLOR_BGR2RGB) != image, axis=-1).mean()
    assert 0 < fewer < changed
    summary = run("--ckpt", str(ckpt), "--image", str(IMAGE), "--out", str(tmp_path / "none.png"),
                  "--min-score", "1e9")
    assert summary["centers"] == 0 and "no person centre" in capsys.readouterr().err


def test_user_errors_are_one_line(tmp_path, ckpt, capsys):
    basic = small_checkpoint(tmp_path / "basic.ckpt", offset_block="basic")
    cases = [(["--ckpt", str(basic), "--image", str(IMAGE)], "no adaptive convolutions (its offset blocks: BasicBlock"),
             (["--ckpt", str(tmp_path / "none.ckpt"), "--image", str(IMAGE)], "does not exist"),
             (["--ckpt", str(ckpt), "--image", str(tmp_path / "none.jpg")], "not found"),
             (["--ckpt", str(ckpt), "--image", str(IMAGE), "--keypoints", "nose,tail"], "unknown keypoint(s) ['tail']")]
    for args, message in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            run(*args, "--out", str(tmp_path / "out.png"))
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("error: ") and message in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()
