"""Why ``flip_shift_quirk`` stays on for the models we train, not only for official checkpoints.

Our training (``official_quirks: false``) maps an input pixel x to output coordinate x / stride in
every sample, flipped or not. Under that convention, flipping the input (x -> S-1-x) and flipping
the output array back (u -> R-1-u) leaves the result (stride - 1) / stride output pixels off;
shifting the flipped input left by stride - 1 = 3 pixels (the official quirk) cancels it exactly.
The ground-truth-rendered net follows that convention (a perfectly trained model), so its
flipped-back heatmaps must equal the unflipped ones with the shift, and must not without it.
"""
from __future__ import annotations

import json

import pytest

from dekr.data.spec import load_spec
from dekr.inference import DecodeConfig
from dekr.inference.decode import flip_heatmaps_back
from dekr.inference.predict import run_net
from dekr.inference.preprocess import resize_image, resize_info, to_input_tensor

from tests.helpers.paths import FIXTURES
from tests.inference.render import GroundTruthNet, synthetic_images


def _flip_mismatch(flip_shift_quirk: bool) -> float:
    gt = json.loads((FIXTURES / "coco" / "test_coco.json").read_text())
    spec = load_spec("coco")
    cfg = DecodeConfig.for_dataset(spec, flip_test=True, flip_shift_quirk=flip_shift_quirk)
    net = GroundTruthNet(gt, spec, cfg)
    images, _ = synthetic_images(gt)
    worst = 0.0
    for image in images[:4]:
        info = resize_info(image.shape[0], image.shape[1], cfg.input_size)
        batch = to_input_tensor([resize_image(image, info)], "cpu")
        heatmaps, _, heatmaps_flipped, _ = run_net(net, batch, cfg)
        back = flip_heatmaps_back(heatmaps_flipped, spec.flip_index)
        # the rightmost columns of the flipped-back map saw the shift's repeated border: skip them
        margin = cfg.flip_shift // cfg.output_stride + 1
        worst = max(worst, (back - heatmaps)[..., :-margin].abs().max().item())
    return worst


def test_official_flip_shift_aligns_flipped_heatmaps_of_an_exactly_trained_model() -> None:
    assert _flip_mismatch(flip_shift_quirk=True) < 1e-5


def test_without_the_shift_flipped_heatmaps_are_three_quarters_of_a_pixel_off() -> None:
    # a unit Gaussian (sigma 2 output px) moved by 0.75 px changes by up to ~0.2 near its peak
    assert _flip_mismatch(flip_shift_quirk=False) > 0.1


def test_decode_default_keeps_the_shift() -> None:
    cfg = DecodeConfig.for_dataset("coco")
    assert cfg.flip_shift_quirk and cfg.flip_shift == 3
    with pytest.raises(ValueError):
        DecodeConfig.for_dataset("coco", flip_shift=0)  # the switch is flip_shift_quirk, not the pixel count
