"""Test-time preprocessing switches: channel order, letterbox resize, pad value, and the way back
from the network's input to the original image."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from dekr.data.spec import load_spec
from dekr.inference import DecodeConfig, predict_poses
from dekr.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from dekr.inference.preprocess import resize_image, resize_info, to_input_tensor


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pixels(batch: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) normalised -> (N, H, W, 3) 0-255 in the network's channel order."""
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    return ((batch * std + mean) * 255).permute(0, 2, 3, 1).numpy()


def test_defaults_keep_the_official_preprocessing() -> None:
    cfg = DecodeConfig()
    assert (cfg.channel_order, cfg.resize, cfg.pad_value) == ("rgb", "official", 0)
    image = _image(90, 150)
    info = resize_info(90, 150, 64)
    assert not info.letterbox and info == resize_info(90, 150, 64, "official")
    # the official warp with its default (black) border, as before the pad_value option
    expected = cv2.warpAffine(image, info.matrix(1.0), info.size_at(1.0), flags=cv2.INTER_LINEAR)
    assert np.array_equal(resize_image(image, info), expected)
    assert torch.equal(to_input_tensor([image], "cpu"), to_input_tensor([image], "cpu", None, "rgb", 0))


def test_bgr_reverses_the_channels_before_normalising() -> None:
    image = _image(32, 64)
    rgb = to_input_tensor([image], "cpu")
    bgr = to_input_tensor([image], "cpu", channel_order="bgr")
    for c in range(3):
        # channel c of the input is the image's channel 2 - c, normalised with the RGB statistics of c
        expected = (torch.from_numpy(image[..., 2 - c]).float() / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(bgr[0, c], expected, atol=1e-6)
    assert not torch.allclose(rgb, bgr)
    with pytest.raises(ValueError, match="channel_order"):
        to_input_tensor([image], "cpu", channel_order="gbr")


def test_batch_padding_uses_the_pad_value() -> None:
    batch = to_input_tensor([_image(32, 32), _image(64, 32, 1)], "cpu", pad_to=(32, 64), pad_value=127)
    assert np.allclose(_pixels(batch)[0, 32:], 127, atol=1e-3)


@pytest.mark.parametrize("height,width", [(300, 200), (120, 400), (128, 100), (64, 64)])
def test_letterbox_shape_pad_and_scale(height: int, width: int) -> None:
    image = _image(height, width)
    info = resize_info(height, width, 128, "letterbox")
    factor = min(128 / height, 128 / width)
    assert info.letterbox and info.base_size == (128, 128) and info.factor == pytest.approx(factor)
    canvas = resize_image(image, info, 1.0, pad_value=127)
    assert canvas.shape == (128, 128, 3) and canvas.dtype == np.uint8
    new_h, new_w = round(height * factor), round(width * factor)
    assert max(new_h, new_w) == 128
    # the image in the top-left corner (cv2.resize, or untouched when it already fits), pad value elsewhere
    resized = image if factor == 1 else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(canvas[:new_h, :new_w], resized)
    assert (canvas[new_h:] == 127).all() and (canvas[:, new_w:] == 127).all()
    # other test scales: the canvas and the image scale together
    half = resize_image(image, info, 0.5, pad_value=127)
    assert half.shape == (64, 64, 3)
    assert (half[round(height * factor / 2):] == 127).all() and (half[:, round(width * factor / 2):] == 127).all()


def test_letterbox_maps_back_to_the_original_image() -> None:
    info = resize_info(300, 200, 128, "letterbox")
    points = torch.tensor([[0.0, 0.0], [199.0, 299.0], [57.3, 211.9]], dtype=torch.float64)
    for scale in (1.0, 0.5, 2.0):
        m = torch.from_numpy(info.matrix(scale))
        at_scale = points @ m[:, :2].T + m[:, 2]  # original -> canvas at this scale
        assert torch.allclose(info.to_original(at_scale / scale), points)  # decode divides by the scale
    # SuperGradients' inverse: no shift (padding at the bottom/right), divide by the factor
    assert torch.allclose(info.to_original(torch.tensor([[64.0, 128.0]])), torch.tensor([[150.0, 300.0]]))


def test_official_pad_value_fills_the_warp_border() -> None:
    image = np.full((100, 250, 3), 200, dtype=np.uint8)  # 64 x 160 scaled, on a 64 x 192 canvas
    info = resize_info(100, 250, 64)
    canvas = resize_image(image, info, 1.0, pad_value=127)
    assert canvas.shape == (64, 192, 3)
    assert (canvas[:, 0] == 127).all() and (canvas[:, -1] == 127).all() and (canvas[:, 96] == 200).all()


def test_decode_config_validates_the_switches() -> None:
    with pytest.raises(ValueError, match="channel_order"):
        DecodeConfig(channel_order="BGR")
    with pytest.raises(ValueError, match="resize"):
        DecodeConfig(resize="stretch")
    with pytest.raises(ValueError, match="pad_value"):
        DecodeConfig(pad_value=300)
    with pytest.raises(ValueError, match="resize"):
        resize_info(10, 10, 64, "stretch")


class LetterboxNet:
    """A perfect fake network for one person: checks it gets SG's input (BGR, letterboxed, pad 127)
    and renders the person's keypoints where the letterbox puts them at the batch's scale."""

    def __init__(self, keypoints: np.ndarray, image: np.ndarray, cfg: DecodeConfig) -> None:
        self.keypoints, self.image, self.cfg = keypoints, image, cfg
        self.info = resize_info(image.shape[0], image.shape[1], cfg.input_size, cfg.resize)

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, height, width = batch.shape
        scale = width / self.cfg.input_size
        m = self.info.matrix(scale)
        pixels = _pixels(batch)[0]
        if scale == 1.0:
            h, w = self.image.shape[:2]
            new_h, new_w = round(h * self.info.factor), round(w * self.info.factor)
            assert np.allclose(pixels[new_h:], 127, atol=1e-3) and np.allclose(pixels[:, new_w:], 127, atol=1e-3)
            assert np.allclose(pixels[:new_h, :new_w, 0], self.image[0, 0, 2], atol=1e-3)  # blue first: BGR
        stride = self.cfg.output_stride
        h_out, w_out = height // stride, width // stride
        xy = (self.keypoints @ m[:, :2].T + m[:, 2]) / stride  # output-map pixels
        k = len(xy)
        ys, xs = np.mgrid[0:h_out, 0:w_out]
        heat = np.zeros((k + 1, h_out, w_out))
        for j, (x, y) in enumerate(xy):
            heat[j] = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 8.0)
        cx, cy = np.round(xy.mean(axis=0))
        heat[k] = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 32.0)
        off = np.zeros((2 * k, h_out, w_out))
        off[0::2] = xs[None] - xy[:, 0, None, None]  # keypoint = pixel - offset
        off[1::2] = ys[None] - xy[:, 1, None, None]
        return (torch.from_numpy(heat).float()[None].expand(n, -1, -1, -1),
                torch.from_numpy(off).float()[None].expand(n, -1, -1, -1))


@pytest.mark.parametrize("scales", [(1.0,), (2.0, 1.0)])
def test_letterboxed_predictions_map_back_to_the_original_image(scales) -> None:
    spec = load_spec("coco")
    image = np.empty((300, 200, 3), dtype=np.uint8)
    image[...] = (200, 100, 30)  # RGB
    rng = np.random.default_rng(3)
    keypoints = np.stack([rng.uniform(60, 140, 17), rng.uniform(80, 260, 17)], axis=1)
    cfg = DecodeConfig.for_dataset(spec, input_size=128, resize="letterbox", pad_value=127, channel_order="bgr",
                                   flip_test=False, scales=scales)
    preds = predict_poses(LetterboxNet(keypoints, image, cfg), [image], spec, cfg)
    found = preds[0]["keypoints"].numpy()
    assert len(found) >= 1
    best = np.abs(found[:, :, :2] - keypoints[None]).max(axis=(1, 2)).min()
    assert best < 1e-3
