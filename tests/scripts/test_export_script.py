"""scripts/export.py end to end: our checkpoint and an official one to ONNX, checked against PyTorch."""

from __future__ import annotations


import pytest

from tests.helpers.official_standin import write_standin_checkpoint
from tests.scripts.script_runner import run_script
from tests.helpers.checkpoints import small_checkpoint



@pytest.mark.filterwarnings("error::DeprecationWarning", "error::FutureWarning")
def test_export_our_checkpoint_to_onnx(tmp_path, capsys):
    import export

    ckpt = small_checkpoint(tmp_path / "demo.ckpt")
    report = export.main(["--ckpt", str(ckpt), "--input-size", "64", "96"])
    printed = capsys.readouterr()
    assert (tmp_path / "demo.onnx").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["demo.ckpt",
                                                                                                "demo.onnx"]
    assert "dynamic batch/height/width" in printed.out and "ABOVE" not in printed.out
    assert "deprecated" not in printed.err.lower()
    onnx_check = report["exports"]["onnx"]["check"]
    assert [row["shape"] for row in onnx_check] == [(1, 3, 64, 96), (2, 3, 128, 128)]
    assert all(row["heatmaps"] < 1e-4 and row["offsets"] < 1e-4 for row in onnx_check)
    assert report["spec"] == "coco" and report["source"] == "ours"


@pytest.mark.slow
def test_export_official_checkpoint_cli(tmp_path):
    ckpt = write_standin_checkpoint("w32_crowdpose", tmp_path / "pose_dekr_hrnetw32_crowdpose.pth")
    out = tmp_path / "w32.onnx"
    proc = run_script("export.py", ["--ckpt", str(ckpt), "--out", str(out), "--input-size", "128", "128"],
                      cwd=tmp_path, timeout=900)
    assert out.is_file() and "crowdpose, 14 keypoints" in proc.stdout and "ok" in proc.stdout


def test_export_errors(tmp_path, capsys):
    import export

    ckpt = small_checkpoint(tmp_path / "demo.ckpt")
    with pytest.raises(SystemExit, match="chosen spec 'crowdpose' has 14"):
        export.main(["--ckpt", str(ckpt), "--spec", "crowdpose"])
    with pytest.raises(SystemExit, match="multiples of 32"):
        export.main(["--ckpt", str(ckpt), "--input-size", "100", "100"])
    with pytest.raises(SystemExit, match="does not exist"):
        export.main(["--ckpt", str(tmp_path / "nope.ckpt")])
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:  # ONNX is the one format: no --format to choose another
        export.main(["--ckpt", str(ckpt), "--format", "torchscript"])
    assert stopped.value.code == 2
    assert "unrecognized arguments: --format torchscript" in capsys.readouterr().err
