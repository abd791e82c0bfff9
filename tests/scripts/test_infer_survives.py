"""scripts/infer.py keeps what it did: results written as it goes (a real SIGKILL loses at most the
last few images, a real SIGTERM none, and exits 143), an --out with an earlier run's outputs refused
unless --overwrite, names that keep two drawings apart, a 1x1 image skipped and named, a full disk
reported in one line without temporary files (a real small tmpfs, where this machine may mount one)."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers.paths import FIXTURES
from tests.scripts.script_runner import REPO, clean_env
from tests.helpers.filesystems import mount_tmpfs, unmount
from tests.helpers.checkpoints import small_checkpoint

FRAME = FIXTURES / "posetrack18_frames" / "000000.jpg"
FAST = ["--input-size", "128", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_checkpoint(tmp_path_factory.mktemp("model") / "small.ckpt")


def run(ckpt: Path, inp: Path, out: Path, *extra: str) -> dict:
    import infer

    return infer.main(["--ckpt", str(ckpt), "--input", str(inp), "--out", str(out), *FAST, *extra])


def many_images(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        shutil.copy(FRAME, folder / f"{i:04d}.jpg")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_run_keeps_its_results(tmp_path: Path, ckpt: Path, signum: signal.Signals) -> None:
    images = many_images(tmp_path / "images", 300)
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "scripts" / "infer.py"), "--ckpt", str(ckpt), "--input", str(images),
               "--out", str(out), "--write-every", "1", "--no-draw", *FAST]
    proc = subprocess.Popen(command, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "results.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)

    done = json.loads((out / "images.json").read_text())["images"]
    results = json.loads((out / "results.json").read_text())
    assert 1 <= len(done) < 300 and {r["image_id"] for r in results} <= {im["id"] for im in done}
    if signum == signal.SIGTERM:
        assert proc.returncode == 143 and not list(out.glob(".*.tmp"))
        assert f"error: stopped by SIGTERM ({len(done)} processed, results kept in {out})" in stderr
    else:  # killed, perhaps mid-write: at most a temporary file, which the next run into --out removes
        assert proc.returncode == -signal.SIGKILL
        assert {p.name for p in out.glob(".*.tmp")} <= {".results.json.tmp", ".images.json.tmp"}
        run(ckpt, FRAME, out, "--overwrite", "--no-draw")
        assert not list(out.glob(".*.tmp"))


def test_an_earlier_runs_out_is_refused_unless_overwrite(tmp_path: Path, ckpt: Path, capsys) -> None:
    out = tmp_path / "out"
    run(ckpt, FIXTURES / "coco" / "000000000785.jpg", out)
    before = (out / "results.json").read_bytes()
    with pytest.raises(SystemExit, match=rf"--out {out} already holds the outputs of an earlier run .*--overwrite"):
        run(ckpt, FRAME, out)
    assert (out / "results.json").read_bytes() == before and (out / "images" / "000000000785.jpg").exists()
    summary = run(ckpt, FRAME, out, "--overwrite")
    assert summary["processed"] == 1
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.jpg"]  # the earlier drawing is gone
    assert [im["file_name"] for im in json.loads((out / "images.json").read_text())["images"]] == ["000000.jpg"]


def test_same_stem_different_extensions_are_both_drawn(tmp_path: Path, ckpt: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    image = cv2.imread(str(FRAME))
    cv2.imwrite(str(folder / "photo.jpg"), image)
    cv2.imwrite(str(folder / "photo.png"), image[:, ::-1])
    summary = run(ckpt, folder, tmp_path / "out")
    assert summary["processed"] == 2
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["photo.jpg", "photo_png.jpg"]


def test_a_too_small_image_is_skipped_and_named(tmp_path: Path, ckpt: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(FRAME, folder / "good.jpg")
    cv2.imwrite(str(folder / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    summary = run(ckpt, folder, tmp_path / "out")
    assert summary["processed"] == 1 and summary["skipped"] == [str(folder / "dot.png")]
    assert f"skipped {folder / 'dot.png'}: image too small" in capsys.readouterr().err


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path: Path, ckpt: Path) -> None:
    out = mount_tmpfs(tmp_path / "small", "size=1200k")
    try:
        (out / "filler").write_bytes(b"x" * (1200 * 1024 - 1024 * 1024 - 16384))  # 1 MiB + a little free
        images = many_images(tmp_path / "images", 30)
        with pytest.raises(SystemExit) as stopped:
            run(ckpt, images, out)  # the drawings fill the disk
        message = str(stopped.value.code)
        assert message.startswith("error: ") and "No space left on device" in message
        assert not list(out.glob(".*.tmp"))
    finally:
        unmount(out)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


@pytest.mark.slow
def test_evaluation_stopped_by_sigterm_keeps_its_poses(tmp_path: Path) -> None:
    config = tmp_path / "many.yaml"  # the demo's synthetic validation set, long enough to stop mid-way
    config.write_text("parts: [demo.yaml]\ndata:\n  init_args:\n    synthetic:\n      num_val: 2000\n")
    out = tmp_path / "results.json"
    command = [sys.executable, str(REPO / "scripts" / "evaluate.py"), "--config", str(config), "--random-init",
               "--accelerator", "cpu", "--devices", "1", "--batch-size", "1", "--num-workers", "0",
               "--out", str(out)]
    proc = subprocess.Popen(command, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and cpu_seconds(proc.pid) < 30:  # imports and setup done: evaluating
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    partial = tmp_path / "results.partial.json"
    line = next(line for line in stderr.splitlines() if line.startswith("error: stopped by SIGTERM after "))
    assert "(no AP: the split was not finished); the " in line and str(partial) in line
    assert isinstance(json.loads(partial.read_text()), list) and not out.exists()
