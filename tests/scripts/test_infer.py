"""scripts/infer.py end to end with random / stand-in weights: behaviour (outputs, COCO results,
per-frame video entries, tracking ids, bad input, partial results), not accuracy."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from tests.helpers.paths import FIXTURES
from tests.helpers.official_standin import write_standin_checkpoint
from tests.scripts.script_runner import run_script
from tests.helpers.checkpoints import small_checkpoint


FRAMES = FIXTURES / "posetrack18_frames"
VIDEO = FRAMES / "000001_mpiinew_test.mp4"
FAST = ["--input-size", "128", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return small_checkpoint(tmp_path_factory.mktemp("model") / "small.ckpt")


def run(ckpt, inp, out, *extra):
    import infer

    return infer.main(["--ckpt", str(ckpt), "--input", str(inp), "--out", str(out), *FAST, *extra])


def load_coco(out):
    from pycocotools.coco import COCO

    gt = COCO(str(out / "images.json"))
    results = json.loads((out / "results.json").read_text())
    dt = gt.loadRes(str(out / "results.json")) if results else None
    return gt, results, dt


def check_result_format(results, num_keypoints=17):
    for r in results:
        assert set(r) >= {"image_id", "category_id", "keypoints", "score"}
        assert r["category_id"] == 1 and len(r["keypoints"]) == 3 * num_keypoints
        assert isinstance(r["score"], float)


def test_single_image(tmp_path, ckpt):
    out = tmp_path / "out"
    summary = run(ckpt, FIXTURES / "coco" / "000000000785.jpg", out)
    assert summary["processed"] == 1 and summary["error"] is None
    gt, results, _ = load_coco(out)
    check_result_format(results)
    assert gt.getImgIds() == [785] and all(r["image_id"] == 785 for r in results)
    drawn = cv2.imread(str(out / "images" / "000000000785.jpg"))
    assert drawn is not None and drawn.shape == (425, 640, 3)
    assert gt.dataset["categories"][0]["keypoints"][0] == "nose"


def test_the_pose_threshold_is_the_python_apis(tmp_path, ckpt):
    """infer.py writes what dekr.load(...)(image) returns: one option (decode.pose_thr), one default."""
    import dekr

    image = FIXTURES / "coco" / "000000000785.jpg"
    model = dekr.load(ckpt, device="cpu", input_size=128)
    for extra, pose_thr in [((), None), (("--pose-thr", "0"), 0.0), (("--decode", "pose_thr=20"), 20.0)]:
        out = tmp_path / f"out{pose_thr}"
        run(ckpt, image, out, "--no-draw", *extra)
        scores = sorted(r["score"] for r in json.loads((out / "results.json").read_text()))
        expected = sorted(model(image, pose_thr=pose_thr)[0].scores.tolist())
        assert scores == pytest.approx(expected, abs=1e-6) and min(scores) >= 0.0
    assert len(expected) < len(model(image, pose_thr=0.0)[0]) and min(expected) >= 20.0  # each dropped some


def test_folder_with_non_images_and_a_corrupt_image(tmp_path, ckpt, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("000000000785.jpg", "000000040083.jpg"):
        shutil.copy(FIXTURES / "coco" / name, folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    shutil.copy(FIXTURES / "coco" / "test_coco.json", folder)
    out = tmp_path / "out"
    summary = run(ckpt, folder, out, "--batch-size", "2")
    err = capsys.readouterr().err
    assert summary["processed"] == 2 and summary["error"] is None
    assert sorted(p.rsplit("/", 1)[1] for p in summary["skipped"]) == [
        "broken.jpg",
        "notes.txt",
        "test_coco.json",
    ]
    assert "skipped" in err and "broken.jpg" in err
    gt, results, _ = load_coco(out)
    assert sorted(gt.getImgIds()) == [1, 2]  # non-numeric names in the folder: ids 1, 2 in order
    assert {im["file_name"] for im in gt.dataset["images"]} == {"000000000785.jpg", "000000040083.jpg"}
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000000785.jpg", "000000040083.jpg"]
    check_result_format(results)


def test_video_per_frame_results_tracks_and_drawn_video(tmp_path, ckpt):
    out = tmp_path / "out"
    summary = run(ckpt, VIDEO, out, "--batch-size", "2", "--smoothing", "min_cutoff=0.5", "beta=0.02")
    assert summary["processed"] == 5 and summary["smoothing"]["min_cutoff"] == 0.5
    gt, results, dt = load_coco(out)
    frames = gt.dataset["images"]
    assert [im["frame"] for im in frames] == [0, 1, 2, 3, 4] and [im["id"] for im in frames] == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert frames[1]["time"] == pytest.approx(1 / 30, abs=1e-3)
    assert all("track_id" in r and r["track_id"] >= 0 for r in results)
    for frame in range(5):  # ids are unique within a frame
        ids = [r["track_id"] for r in results if r["image_id"] == frame]
        assert len(ids) == len(set(ids))
    check_result_format(results)
    capture = cv2.VideoCapture(str(out / "000001_mpiinew_test_poses.mp4"))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 1280


def test_sequence_folder_smoothing_changes_only_coordinates(tmp_path, ckpt):
    seq = tmp_path / "seq"
    seq.mkdir()
    for f in sorted(FRAMES.glob("*.jpg")):
        shutil.copy(f, seq)
    raw_out, smooth_out = tmp_path / "raw", tmp_path / "smooth"
    config = str(_yaml(tmp_path))
    run(ckpt, seq, raw_out, "--sequence", "--no-smooth", "--no-draw", "--infer-config", config)
    run(ckpt, seq, smooth_out, "--sequence", "--no-draw", "--infer-config", config)
    raw = json.loads((raw_out / "results.json").read_text())
    smooth = json.loads((smooth_out / "results.json").read_text())
    assert [(r["image_id"], r["track_id"], r["score"]) for r in raw] == [
        (r["image_id"], r["track_id"], r["score"]) for r in smooth
    ]
    assert sorted({r["image_id"] for r in raw}) == [0, 1, 2, 3, 4]
    first = [r for r in raw if r["image_id"] == 0]
    assert [r["keypoints"] for r in first] == [r["keypoints"] for r in smooth if r["image_id"] == 0]
    later_raw = np.array([r["keypoints"] for r in raw if r["image_id"] > 0])
    later_smooth = np.array([r["keypoints"] for r in smooth if r["image_id"] > 0])
    assert not np.allclose(later_raw, later_smooth)
    assert not (tmp_path / "raw" / "images").exists()


def _yaml(tmp_path):
    path = tmp_path / "infer.yaml"
    path.write_text(
        "infer:\n  smoothing:\n    min_cutoff: 0.3\n    beta: 0.0\n  tracking:\n    oks_threshold: 0.2\n"
    )
    return path


def test_unreadable_video_missing_input_and_camera(tmp_path, ckpt):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 4096)
    with pytest.raises(SystemExit, match="cannot open video .*broken.mp4"):
        run(ckpt, bad, tmp_path / "o1")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(VIDEO.read_bytes()[:60_000])
    with pytest.raises(SystemExit, match="cannot open video"):
        run(ckpt, truncated, tmp_path / "o2")
    with pytest.raises(SystemExit, match="does not exist"):
        run(ckpt, tmp_path / "nothing.jpg", tmp_path / "o3")
    with pytest.raises(SystemExit, match="camera 9 could not be opened"):
        run(ckpt, "9", tmp_path / "o4")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    with pytest.raises(SystemExit, match="holds no image files"):
        run(ckpt, empty, tmp_path / "o5")


def test_video_failing_midway_keeps_the_frames_read(tmp_path, ckpt, capsys):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 96))
    frame = cv2.resize(cv2.imread(str(FRAMES / "000000.jpg")), (160, 96))
    for i in range(10):
        writer.write(np.roll(frame, 3 * i, axis=1))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "out"
    summary = run(ckpt, path, out)
    assert 0 < summary["processed"] < 10
    assert "ended after" in capsys.readouterr().err
    gt, _, _ = load_coco(out)
    assert len(gt.dataset["images"]) == summary["processed"]


def test_errors_midway_keep_partial_results(tmp_path, ckpt, monkeypatch):
    from dekr.inference.predictor import Predictor

    calls = {"n": 0}
    real = Predictor.predict_arrays

    def flaky(self, images):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(self, images)

    monkeypatch.setattr(Predictor, "predict_arrays", flaky)
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"out of memory.*\(1 processed, results kept"):
        run(ckpt, FIXTURES / "coco", out, "--batch-size", "1")
    gt, _, _ = load_coco(out)
    assert gt.getImgIds() == [785]

    def interrupt(self, images):
        raise KeyboardInterrupt

    calls["n"] = 0
    monkeypatch.setattr(
        Predictor,
        "predict_arrays",
        lambda self, images: flaky(self, images) if calls["n"] < 1 else interrupt(self, images),
    )
    with pytest.raises(SystemExit) as stopped:  # Ctrl-C: not a success, 128 + SIGINT
        run(ckpt, VIDEO, tmp_path / "video", "--batch-size", "2")
    assert stopped.value.code == 130
    assert json.loads((tmp_path / "video" / "images.json").read_text())["images"]


def test_checkpoint_for_another_keypoint_set(tmp_path, ckpt):
    with pytest.raises(SystemExit, match="predicts 17 keypoints .*chosen spec 'crowdpose' has 14"):
        run(ckpt, FIXTURES / "coco" / "000000000785.jpg", tmp_path / "o", "--spec", "crowdpose")
    with pytest.raises(SystemExit, match="unknown draw option"):
        run(ckpt, FIXTURES / "coco" / "000000000785.jpg", tmp_path / "o", "--draw", "thickness=3")
    with pytest.raises(SystemExit, match=r"unknown draw option\(s\) \['pose_thr'\]"):  # it is --pose-thr / decode.pose_thr
        run(ckpt, FIXTURES / "coco" / "000000000785.jpg", tmp_path / "o", "--draw", "pose_thr=0.3")
    with pytest.raises(SystemExit, match="unknown smoothing option"):
        run(ckpt, VIDEO, tmp_path / "o", "--smoothing", "cutoff=3")


def test_a_torchscript_file_is_refused_naming_what_to_give(tmp_path):
    import warnings

    import torch

    path = tmp_path / "model.torchscript.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's own deprecation: a file as users have
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(SystemExit, match=r"^error: .*model.torchscript.pt is a TorchScript model .* ONNX"):
        run(path, FIXTURES / "coco" / "000000000785.jpg", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_bad_decode_options_name_the_flag_or_file_they_came_from(tmp_path, ckpt):
    image = FIXTURES / "coco" / "000000000785.jpg"
    with pytest.raises(SystemExit, match=r"^error: --decode: decode option 'input_size' must be int, got 'big'"):
        run(ckpt, image, tmp_path / "o", "--decode", "input_size=big")
    with pytest.raises(SystemExit, match=r"^error: the decode flags: decode: input_size must be a multiple of 64"):
        run(ckpt, image, tmp_path / "o", "--input-size", "100")
    config = tmp_path / "infer.yaml"
    config.write_text("decode:\n  flip: false\n")
    with pytest.raises(SystemExit, match=r"infer.yaml: decode: unknown decode option\(s\) \['flip'\]"):
        run(ckpt, image, tmp_path / "o", "--infer-config", str(config))
    assert not (tmp_path / "o").exists()  # stopped before any output


@pytest.mark.slow
def test_official_checkpoint_and_onnx_model(tmp_path):
    official = write_standin_checkpoint("w32_crowdpose", tmp_path / "pose_dekr_hrnetw32_crowdpose.pth")
    out = tmp_path / "official"
    summary = run(official, FIXTURES / "crowdpose", out, "--max-frames", "1")
    assert summary["processed"] == 1  # of the folder's 2 images: --max-frames stops a folder too
    _, results, _ = load_coco(out)
    check_result_format(results, num_keypoints=14)

    import export

    small = small_checkpoint(tmp_path / "small.ckpt")
    export.main(["--ckpt", str(small), "--input-size", "128", "128", "--no-check"])
    summary = run(tmp_path / "small.onnx", FIXTURES / "coco" / "000000000785.jpg", tmp_path / "onnx")
    assert summary["processed"] == 1
    with pytest.raises(SystemExit, match="chosen spec 'crowdpose'"):
        run(
            tmp_path / "small.onnx",
            FIXTURES / "coco" / "000000000785.jpg",
            tmp_path / "o",
            "--spec",
            "crowdpose",
        )


@pytest.mark.slow
def test_cli_on_the_posetrack_video(tmp_path, ckpt):
    proc = run_script("infer.py", ["--ckpt", str(ckpt), "--input", str(VIDEO), "--out", str(tmp_path / "out"),
                                   "--input-size", "256"], cwd=tmp_path)
    assert "5 frames" in proc.stdout and "frame/s" in proc.stderr  # the progress bar
    bad = run_script("infer.py", ["--ckpt", str(ckpt), "--input", "9", "--out", str(tmp_path / "cam")], check=False)
    assert bad.returncode == 1 and "camera 9 could not be opened" in bad.stderr


def test_camera_stream_with_a_fake_device(tmp_path, ckpt, monkeypatch):
    """The camera path (batch 1, wall-clock times, stop at --max-frames) with a stand-in capture."""
    from dekr.inference import sources

    frame = cv2.resize(cv2.imread(str(FRAMES / "000000.jpg")), (192, 128))
    opened = []

    class FakeCamera:
        def __init__(self, source):
            opened.append(source)
            self.left = 100

        def isOpened(self):
            return True

        def get(self, prop):
            return 0.0  # cameras often report no fps / frame count

        def read(self):
            self.left -= 1
            return True, np.roll(frame, 2 * self.left, axis=1)

        def release(self):
            pass

    monkeypatch.setattr(sources.cv2, "VideoCapture", FakeCamera)
    out = tmp_path / "cam"
    summary = run(ckpt, "0", out, "--max-frames", "3")
    assert opened == [0] and summary["kind"] == "camera" and summary["processed"] == 3
    gt, results, _ = load_coco(out)
    times = [im["time"] for im in gt.dataset["images"]]
    assert [im["frame"] for im in gt.dataset["images"]] == [0, 1, 2] and times == sorted(times)
    assert all("track_id" in r for r in results)
    assert (out / "camera0_poses.mp4").is_file()
