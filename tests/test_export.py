"""ONNX export checked against PyTorch, decoding an exported model's outputs; TorchScript refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument
import torch

from dekr.checkpoint import ModelLoadError, load_checkpoint
from dekr.data.dataset import read_image_rgb
from dekr.export import OnnxPoseNet, export_onnx, spec_metadata, verify_export
from dekr.inference import DecodeConfig, predict_poses
from tests.helpers.checkpoints import small_checkpoint
from tests.helpers.paths import FIXTURES

@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    path = small_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.ckpt")
    return path, load_checkpoint(path)


@pytest.mark.parametrize("backend", ["grid_sample", "torchvision"])
def test_onnx_matches_pytorch_at_two_sizes(tmp_path, backend):
    """Dynamic batch and spatial axes: one export, run by onnxruntime at two batch sizes and sizes."""
    path = small_checkpoint(tmp_path / "m.ckpt", adaptive_backend=backend)
    model = load_checkpoint(path)
    onnx_path = export_onnx(
        model.net, tmp_path / "m.onnx", (96, 128), metadata=spec_metadata(model.spec, model.decode)
    )
    runner = OnnxPoseNet(onnx_path)
    report = verify_export(model.net, runner, [(1, 3, 96, 128), (3, 3, 160, 96)])
    for row in report:
        assert row["heatmaps"] < 1e-4 and row["offsets"] < 1e-4, row
    out = runner(torch.zeros(3, 3, 160, 96))
    assert out[0].shape == (3, 18, 40, 24) and out[1].shape == (3, 34, 40, 24)
    assert runner.spec == model.spec
    assert runner.decode == {"flip_test": False, "input_size": 128}


@pytest.mark.filterwarnings("error::DeprecationWarning", "error::FutureWarning")
def test_onnx_static_and_opset(tmp_path, small_model):
    """(No deprecation warning reaches a user from the export path: they are errors here.)"""
    _, model = small_model
    path = export_onnx(model.net, tmp_path / "static.onnx", (64, 64), dynamic=False)
    runner = OnnxPoseNet(path)
    assert verify_export(model.net, runner, [(1, 3, 64, 64)])[0]["offsets"] < 1e-4
    with pytest.raises(InvalidArgument, match="dimensions"):  # a static export takes its own size only
        runner(torch.zeros(1, 3, 96, 64))
    with pytest.raises(ModelLoadError, match="no keypoint spec"):
        runner.spec
    with pytest.raises(ValueError, match="opset >= 16"):
        export_onnx(model.net, tmp_path / "old.onnx", (64, 64), opset=13)


def test_decoding_the_onnx_model_gives_the_pytorch_poses(tmp_path, small_model):
    _, model = small_model
    path = export_onnx(
        model.net, tmp_path / "m.onnx", (128, 128), metadata=spec_metadata(model.spec, model.decode)
    )
    runner = OnnxPoseNet(path)
    images = [
        read_image_rgb(FIXTURES / "coco" / "000000000785.jpg"),
        read_image_rgb(FIXTURES / "posetrack18_frames" / "000000.jpg"),
    ]
    cfg = DecodeConfig.for_dataset(runner.spec, **runner.decode)
    ours = predict_poses(model.net, images, model.spec, cfg)
    exported = predict_poses(runner, images, runner.spec, cfg)
    for a, b in zip(ours, exported):
        assert a["keypoints"].shape == b["keypoints"].shape
        np.testing.assert_allclose(a["keypoints"].numpy(), b["keypoints"].numpy(), rtol=1e-3, atol=1e-2)


def test_a_torchscript_file_is_named_and_pointed_to_onnx(tmp_path):
    """TorchScript is no export format of ours (torch.jit is deprecated): dekr.load says what the file is
    and what to give instead, rather than "truncated or not a checkpoint"."""
    import warnings

    import dekr

    path = tmp_path / "m.torchscript.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's own deprecation: a file as users have
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(ModelLoadError, match=rf"{path} is a TorchScript model \(torch.jit\), which dekr does "
                                             r"not load: .*ONNX export of it \(scripts/export.py\); dekr loads "
                                             r"ours .ckpt"):
        dekr.load(path, device="cpu")


def test_numpy_reference_decoder_finds_the_predict_poses_keypoints(small_model):
    """decode_numpy (the README's porting reference) on raw outputs: every pose of predict_poses
    (single scale, no flip, on an image already at the input size) is among its proposals."""
    from dekr.export import decode_numpy
    from dekr.inference.preprocess import to_input_tensor

    _, model = small_model
    image = cv2.resize(read_image_rgb(FIXTURES / "coco" / "000000000785.jpg"), (128, 128))
    cfg = DecodeConfig.for_dataset(model.spec, input_size=128, flip_test=False)
    poses = predict_poses(model.net, [image], model.spec, cfg)[0]["keypoints"].numpy()
    with torch.no_grad():
        heatmaps, offsets = model.net(to_input_tensor([image], "cpu"))
    keypoints, scores = decode_numpy(heatmaps[0].numpy(), offsets[0].numpy())
    assert keypoints.shape == (30, 17, 3) and np.all(np.diff(scores) <= 0)
    assert len(poses) > 0
    for pose in poses:
        assert np.abs(keypoints[..., :2] - pose[None, :, :2]).max(axis=(1, 2)).min() < 1e-3
