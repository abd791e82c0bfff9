"""scripts/evaluate.py end to end (random-init network: the pipeline, not the accuracy)."""
from __future__ import annotations

import json
import logging
import sys

import pytest

from tests.helpers.paths import FIXTURES



@pytest.mark.slow
@pytest.mark.parametrize("config,root,extra", [
    ("w32_crowdpose.yaml", FIXTURES / "crowdpose", ["--val-annotations", "test_crowdpose.json", "--val-images", "."]),
    ("w32_coco.yaml", FIXTURES / "coco_minicoco", ["--limit", "2"]),
])
def test_evaluate_end_to_end(tmp_path, capsys, config, root, extra):
    import evaluate

    from tests.helpers.official_standin import write_standin_checkpoint

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
    # the table in the paper's layout, in % and said so; the returned figures are fractions
    head, _, row = printed[printed.index("| model | AP |"):].splitlines()[:3]
    assert printed.splitlines()[printed.splitlines().index(head) - 1] == evaluate.TABLE_UNITS
    cells = dict(zip(head.strip("| ").split(" | "), row.strip("| ").split(" | ")))
    assert cells["AP"] == f"{100 * stats['AP']:.1f}"
    results = json.loads(out.read_text())
    assert isinstance(results, list)
    if "crowdpose" in config:
        assert "AP_easy" in stats


def evaluate_refused(args: list[str], capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """``scripts/evaluate.py``'s ``main(args)`` in this process, for a run refused before it evaluates
    anything: (exit status, stderr)."""
    import evaluate

    # Lightning's log handlers hold the sys.stderr of the test that imported it, whose capture is
    # closed by now: writing there would print a "Logging error" traceback into this test's stderr.
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if type(handler) is logging.StreamHandler:  # not pytest's capture handlers (subclasses)
                monkeypatch.setattr(handler, "stream", sys.stderr)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(args)
    return exit_info.value.code, capsys.readouterr().err


def test_a_bad_decode_option_names_its_flag_before_anything_is_read(tmp_path, capsys, monkeypatch):
    """config model.decode <- flags <- --decode; an error stops before any checkpoint or image is read."""
    missing = str(tmp_path / "never_read.ckpt")
    cases = [
        (["--scales", "2", "1", "--decode", "scales=2"],
         "error: --decode: decode option 'scales' must be a list of float"),
        (["--decode", "flip"], "error: --decode expects key=value, got 'flip'"),
        (["--scales", "2"], "error: --flip/--scales/--rescore/--input-size: decode: scales must contain 1"),
    ]
    for flags, message in cases:
        args = ["--config", "demo.yaml", "--ckpt", missing, *flags]
        code, stderr = evaluate_refused(args, capsys, monkeypatch)
        assert code == 2 and stderr.startswith(message) and len(stderr.splitlines()) == 1, stderr


def test_a_wrong_data_root_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    root = tmp_path / "nope"
    args = ["--config", "w32_crowdpose.yaml", "--random-init", "--data-root", str(root),
            "--accelerator", "cpu", "--devices", "1", "--num-workers", "0"]
    code, stderr = evaluate_refused(args, capsys, monkeypatch)
    assert code == 2 and "Traceback" not in stderr, stderr
    # after Lightning's "GPU available: ..." notes, the DataError of the first file read, in one line
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [stderr.splitlines()[-1]], stderr
    assert errors[0].startswith(f"error: annotation file not found: {root}/") and errors[0].endswith(".json")


def test_an_unknown_config_name_lists_the_configs(capsys, monkeypatch):
    code, stderr = evaluate_refused(["--config", "nope.yaml", "--random-init"], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in stderr and len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("error: config 'nope.yaml' not found") and "'w32_coco.yaml'" in stderr


def test_a_missing_checkpoint_or_model_section_is_one_line(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "none.ckpt"
    code, stderr = evaluate_refused(["--config", "demo.yaml", "--ckpt", str(missing)], capsys, monkeypatch)
    assert (code, stderr) == (2, f"error: checkpoint {missing} does not exist\n")

    no_model = tmp_path / "data_only.yaml"
    no_model.write_text("data: {}\n")
    code, stderr = evaluate_refused(["--config", str(no_model), "--random-init"], capsys, monkeypatch)
    assert code == 2 and stderr.startswith(f"error: {no_model}: no 'model' section"), stderr
