"""``dekr.load`` -> Predictor on real images, folders and a real video, with a small random checkpoint:
behaviour (shapes, ids, tracking, outputs, options), not accuracy."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

import dekr
from dekr.inference import PoseResult, Predictor, predict_poses
from dekr.inference.outputs import DrawOptions, write_outputs
from dekr.inference.sources import InputError, open_source
from tests.helpers.paths import FIXTURES
from tests.helpers.official_standin import write_standin_checkpoint
from tests.helpers.checkpoints import small_checkpoint

IMAGE = FIXTURES / "coco" / "000000000785.jpg"
FRAMES = FIXTURES / "posetrack18_frames"
VIDEO = FRAMES / "000001_mpiinew_test.mp4"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return small_checkpoint(tmp_path_factory.mktemp("model") / "small.ckpt")


@pytest.fixture(scope="module")
def model(ckpt):
    return dekr.load(ckpt, device="cpu", batch_size=2)


def test_load_holds_net_spec_decode_and_the_checkpoint_options(model, ckpt):
    assert isinstance(model, Predictor) and model.spec.name == "coco" and model.device == "cpu"
    assert model.decode.input_size == 128 and model.decode.flip_test is False  # the checkpoint's decode
    assert model.decode.batch_size == 2 and model.decode.nms_num_thre == 8  # option; official COCO default
    other = dekr.load(ckpt, device="cpu", input_size=192, autocast_dtype="bfloat16")
    assert other.decode.input_size == 192 and other.decode.autocast_dtype == "bfloat16"
    with pytest.raises(ValueError, match="unknown decode option"):
        dekr.load(ckpt, device="cpu", input_sz=128)


def test_options_layer_over_the_checkpoint_and_bad_recorded_options_name_the_file(ckpt, tmp_path):
    """The order of dekr.inference.config: spec values <- the checkpoint's options <- dekr.load's."""
    import torch

    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    raw["hyper_parameters"]["decode"] = {"flip_test": False, "input_size": 128, "max_num_people": 5}
    torch.save(raw, tmp_path / "five.ckpt")
    cfg = dekr.load(tmp_path / "five.ckpt", device="cpu", input_size=256).decode
    assert (cfg.max_num_people, cfg.flip_test, cfg.input_size, cfg.nms_thre) == (5, False, 256, 0.05)
    raw["hyper_parameters"]["decode"] = {"flip": False}  # as an older or hand-edited checkpoint may hold
    torch.save(raw, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match=r"the decode options of .*bad.ckpt \(ours\): unknown decode option\(s\) "
                                         r"\['flip'\]"):
        dekr.load(tmp_path / "bad.ckpt", device="cpu")


def test_image_path_array_folder_and_list(model, tmp_path):
    image = cv2.cvtColor(cv2.imread(str(IMAGE)), cv2.COLOR_BGR2RGB)
    [from_path] = model(IMAGE)
    [from_array] = model(image)
    assert isinstance(from_path, PoseResult) and from_path.image_id == 785 and from_path.name == IMAGE.name
    assert from_path.keypoints.ndim == 3 and from_path.keypoints.shape[1:] == (17, 3)
    assert from_path.scores.shape == (len(from_path.keypoints),) and len(from_path) > 0  # a random net finds some
    np.testing.assert_allclose(from_array.keypoints, from_path.keypoints, atol=1e-4)
    assert from_array.image_id is None and from_path.track_ids is None
    # The same poses as the function below it (every candidate with pose_thr 0; scores clipped at 0).
    [direct] = predict_poses(model.net, [image], model.spec, model.decode)
    [every] = model(IMAGE, pose_thr=0.0)
    np.testing.assert_allclose(every.keypoints[..., :2], direct["keypoints"][..., :2].numpy(), atol=1e-4)
    np.testing.assert_allclose(every.keypoints[..., 2], direct["keypoints"][..., 2].clamp(min=0).numpy(),
                               atol=1e-6)

    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("000000000785.jpg", "000000040083.jpg"):
        shutil.copy(FIXTURES / "coco" / name, folder / name)
    (folder / "notes.txt").write_text("not an image")
    results = model(folder)
    assert [r.image_id for r in results] == [785, 40083]
    assert [r.name for r in model([image, IMAGE])] == ["", IMAGE.name]
    assert all(r.scores.min() >= 0.5 for r in model(folder, pose_thr=0.5) if len(r))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    with pytest.raises(InputError, match="broken.jpg"):
        model(folder)


def test_poses_under_the_pose_threshold_are_dropped_and_scores_are_never_negative(ckpt, model):
    """One threshold, ``decode.pose_thr``, for dekr.load and scripts/infer.py; the random net's heatmaps
    undershoot 0, so predict_poses (official, what evaluation ranks) returns negative scores."""
    from dekr.inference import DecodeConfig

    image = cv2.cvtColor(cv2.imread(str(IMAGE)), cv2.COLOR_BGR2RGB)
    [raw] = predict_poses(model.net, [image], model.spec, model.decode)
    assert (raw["scores"] < 0).any() and (raw["keypoints"][..., 2] < 0).any()  # what the clipping is for
    assert model.decode.pose_thr == DecodeConfig().pose_thr > 0
    [default] = model(image)
    [every] = model(image, pose_thr=0.0)
    assert len(every) == len(raw["scores"])
    assert len(default) == int((raw["scores"] >= model.decode.pose_thr).sum())
    assert len(default) < len(every)  # the threshold drops the candidates the official decoder keeps
    assert every.scores.min() == 0.0 and every.keypoints[..., 2].min() == 0.0  # clipped, not dropped
    np.testing.assert_allclose(every.scores, raw["scores"].clamp(min=0).numpy(), atol=1e-6)
    strict = dekr.load(ckpt, device="cpu", pose_thr=20.0)
    assert strict.decode.pose_thr == 20.0 and strict(image)[0].scores.min() >= 20.0
    assert len(strict(image, pose_thr=0.0)[0]) == len(every)  # the call's argument over the option
    with pytest.raises(ValueError, match="pose_thr must be >= 0"):
        dekr.load(ckpt, device="cpu", pose_thr=-0.1)


def test_result_repr_is_one_short_line(model):
    [result] = model(IMAGE)
    text = repr(result)
    best = " ".join(f"{s:.2f}" for s in sorted(result.scores, reverse=True)[:5])
    assert text.startswith(f"PoseResult('{IMAGE.name}', {len(result)} poses, image (425, 640, 3), spec coco")
    assert f"scores {best} ..." in text and "\n" not in text and len(text) < 200  # never the image array
    [none] = model(result.image, pose_thr=1e9)
    assert repr(none) == "PoseResult(array, 0 poses, image (425, 640, 3), spec coco)"
    frame = next(model.stream(VIDEO))
    assert ", frame 0, " in repr(frame) and repr(frame).endswith(f"{(frame.track_ids >= 0).sum()} tracked)")


def test_draw_save_show_and_to_coco(model, tmp_path, monkeypatch):
    [result] = model(IMAGE)
    drawn = result.draw()
    assert drawn.shape == result.image.shape and drawn.dtype == np.uint8 and not np.array_equal(drawn, result.image)
    path = result.save(tmp_path / "sub" / "poses.jpg")
    assert cv2.imread(str(path)).shape == result.image.shape
    coco = result.to_coco()
    assert len(coco) == len(result) and coco[0]["image_id"] == 785 and len(coco[0]["keypoints"]) == 51
    assert coco[0]["keypoints"][0] == round(float(result.keypoints[0, 0, 0]), 3)  # the one serialiser: 3 decimals
    assert result.to_coco(image_id=7)[0]["image_id"] == 7
    with pytest.raises(ValueError, match="no image id"):
        model(result.image)[0].to_coco()
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if cv2.os.name != "nt":
        with pytest.raises(RuntimeError, match="no display"):
            result.show()


def test_stream_a_video_with_tracks_and_smoothing(model):
    frames = list(model.stream(VIDEO))
    assert [f.frame for f in frames] == [0, 1, 2, 3, 4] and [f.image_id for f in frames] == [0, 1, 2, 3, 4]
    assert frames[1].time == pytest.approx(1 / 30, abs=1e-3)
    for f in frames:
        assert f.track_ids is not None and len(f.track_ids) == len(f.keypoints)
        tracked = f.track_ids[f.track_ids >= 0].tolist()  # -1: too low a score to track
        assert tracked and len(set(tracked)) == len(tracked)
    assert set(frames[0].track_ids.tolist()) & set(frames[1].track_ids.tolist()) - {-1}  # identities carry over
    assert frames[0].to_coco()[0]["track_id"] == frames[0].track_ids[0]
    assert len(list(model.stream(VIDEO, max_frames=2))) == 2

    raw = list(model.stream(VIDEO, smoothing={"enabled": False}))
    np.testing.assert_allclose(raw[0].keypoints, frames[0].keypoints, atol=1e-4)  # the first frame is as found
    assert not np.allclose(np.concatenate([r.keypoints for r in raw[1:]]),
                           np.concatenate([f.keypoints for f in frames[1:]]))
    untracked = list(model.stream(VIDEO, tracking={"enabled": False}, max_frames=2))
    assert all((f.track_ids == -1).all() for f in untracked)
    np.testing.assert_allclose(untracked[1].keypoints, raw[1].keypoints, atol=1e-4)


def test_stream_a_frame_folder_and_a_missing_camera(model, tmp_path):
    seq = tmp_path / "seq"
    seq.mkdir()
    for f in sorted(FRAMES.glob("*.jpg"))[:3]:
        shutil.copy(f, seq)
    frames = list(model.stream(seq, fps=10))
    assert [f.frame for f in frames] == [0, 1, 2] and frames[2].time == pytest.approx(0.2)
    assert all(f.track_ids is not None for f in frames)
    assert [f.frame for f in model.stream(seq, max_frames=2)] == [0, 1]  # a folder stops as a video does
    assert open_source(seq, sequence=True, max_frames=2).total == 2
    with pytest.raises(InputError, match="camera 9 could not be opened"):
        next(model.stream(9))


def test_write_outputs_is_the_coco_writer(model, tmp_path):
    from pycocotools.coco import COCO

    source = open_source(VIDEO, max_frames=3)
    report = write_outputs(model.stream(source, pose_thr=0.0), source, tmp_path, model.spec, DrawOptions(),
                           progress=False)
    assert report.processed == 3 and report.error is None and report.poses > 0
    gt = COCO(str(tmp_path / "images.json"))
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(gt.loadRes(results).getAnnIds()) == report.poses and all("track_id" in r for r in results)
    assert [im["frame"] for im in gt.dataset["images"]] == [0, 1, 2]
    assert (tmp_path / f"{VIDEO.stem}_poses.mp4").is_file()


@pytest.mark.slow
def test_official_checkpoint_five_lines(tmp_path):
    """The five-line example on an official-layout (converted on the fly) checkpoint."""
    path = write_standin_checkpoint("w32_crowdpose", tmp_path / "pose_dekr_hrnetw32_crowdpose.pth")
    model = dekr.load(path, device="cpu", input_size=128)
    [result] = model(FIXTURES / "crowdpose" / min(p.name for p in (FIXTURES / "crowdpose").glob("*.jpg")))
    assert model.spec.name == "crowdpose" and result.keypoints.shape[1:] == (14, 3)
    assert result.save(tmp_path / "poses.jpg").is_file()
