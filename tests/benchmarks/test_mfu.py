"""benchmarks/mfu.py: the forward multiply-add count matches the DEKR paper, peaks are found by
device name, and the MFU is 3 forward passes of 2 FLOPs per multiply-add over the peak."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def mfu(import_benchmark):
    return import_benchmark("mfu")


def test_w32_forward_multiply_adds_match_the_paper(mfu):
    # At inputs that are multiples of 32 every map of HRNet and of the heads is the input over its
    # stride exactly, so every convolution's cost scales with the input area: count at 64 (cheap
    # on a CPU), scale to 512. The paper's "45.4 GFLOPs" are multiply-adds.
    macs = mfu.count_forward_macs(mfu.DEKRNetConfig(backbone="hrnet_w32"), 64, "cpu")
    assert macs * (512 / 64) ** 2 / 1e9 == pytest.approx(mfu.PAPER_W32_512_GMACS, abs=0.05)
    # the torchvision backend's deform_conv2d is invisible to FlopCounterMode: counted on grid_sample
    tv = mfu.count_forward_macs(mfu.DEKRNetConfig(backbone="hrnet_w18_small", adaptive_backend="torchvision"),
                                64, "cpu")
    assert tv == mfu.count_forward_macs(mfu.DEKRNetConfig(backbone="hrnet_w18_small"), 64, "cpu")


def test_peaks_are_found_by_device_name(mfu):
    assert mfu.known_peaks("NVIDIA H100 80GB HBM3")["bf16"] == 989.4  # SXM
    assert mfu.known_peaks("NVIDIA H100 PCIe")["bf16"] == 756.5
    assert mfu.known_peaks("NVIDIA H200")["tf32"] == 494.7
    assert mfu.known_peaks("NVIDIA H200 NVL")["bf16"] == 835.5
    assert mfu.known_peaks("NVIDIA A100-SXM4-80GB") == {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}
    assert mfu.known_peaks("NVIDIA GeForce RTX 4090") == {}


def test_peak_option_is_parsed_and_checked(mfu):
    assert mfu.parse_peaks(["bf16=100", "tf32=50.5"]) == {"bf16": 100.0, "tf32": 50.5}
    for bad in ("fp16=1", "bf16", "bf16=0"):
        with pytest.raises(ValueError, match="--peak-tflops"):
            mfu.parse_peaks([bad])


def test_mfu_counts_forward_and_backward(mfu):
    # 45.4 G multiply-adds x 2 FLOPs x 3 passes x 1000 images/s = 272.4 TFLOP/s of a 989.4 peak
    assert mfu.training_mfu(45.4e9, 1000.0, 989.4) == pytest.approx(272.4 / 989.4)
    assert mfu.peak_precision(True, "cpu") == "bf16"
    assert mfu.peak_precision(False, "cpu") == "fp32"
