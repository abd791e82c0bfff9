"""scripts/evaluate.py end to end (random-init network: the pipeline, not the accuracy)."""
from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import FIXTURES, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))


@pytest.mark.slow
@pytest.mark.parametrize("config,root,extra", [
    ("w32_crowdpose.yaml", FIXTURES / "crowdpose", ["--val-annotations", "test_crowdpose.json", "--val-images", "."]),
    ("w32_coco.yaml", FIXTURES / "coco_minicoco", ["--limit", "2"]),
])
def test_evaluate_end_to_end(tmp_path, capsys, config, root, extra):
    import evaluate

    from tests.official_standin import write_standin_checkpoint

    # an official-layout checkpoint (converted on the fly by the one loader) for COCO, a random net for CrowdPose
    model = (["--ckpt", str(write_standin_checkpoint("w32_coco", tmp_path / "pose_dekr_hrnetw32_coco.pth"))]
             if "coco" in config and "crowd" not in config else ["--random-init"])
    out = tmp_path / "results.json"
    stats = evaluate.main(["--config", config, *model, "--data-root", str(root), "--input-size", "128",
                           "--accelerator", "cpu", "--devices", "1", "--batch-size", "4", "--num-workers", "0",
                           "--out", str(out), *extra])
    printed = capsys.readouterr().out
    assert "| model | AP |" in printed
    assert "AP" in stats and 0.0 <= stats["AP"] <= 1.0
    results = json.loads(out.read_text())
    assert isinstance(results, list)
    if "crowdpose" in config:
        assert "AP_easy" in stats


def test_a_bad_decode_option_names_its_flag_before_anything_is_read(tmp_path):
    """config model.decode <- flags <- --decode; an error stops before any checkpoint or image is read."""
    import evaluate

    missing = str(tmp_path / "never_read.ckpt")
    with pytest.raises(SystemExit, match=r"^error: --decode: decode option 'scales' must be a list of float"):
        evaluate.main(["--config", "demo.yaml", "--ckpt", missing, "--scales", "2", "1", "--decode", "scales=2"])
    with pytest.raises(SystemExit, match=r"^error: --decode expects key=value, got 'flip'"):
        evaluate.main(["--config", "demo.yaml", "--ckpt", missing, "--decode", "flip"])
    with pytest.raises(SystemExit, match=r"^error: --flip/--scales/--rescore/--input-size: decode: scales must "
                                         r"contain 1"):
        evaluate.main(["--config", "demo.yaml", "--ckpt", missing, "--scales", "2"])
