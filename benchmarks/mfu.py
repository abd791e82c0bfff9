"""Model-FLOP utilisation for the benchmarks (imported as ``mfu``: they run as
``python benchmarks/<x>.py``, which puts this folder first on ``sys.path``).

MFU = 3 x forward FLOPs per image x images/s / the device's peak FLOP/s: a training step costs
a forward pass and a backward pass of about twice its FLOPs, whatever the implementation
computes on top (the sampled columns recomputed, the per-keypoint loop's launches). The forward
FLOPs are counted, not estimated: ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs
per multiply-add of every convolution and matrix product.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.models.dekr import DEKRNet, DEKRNetConfig  # noqa: E402

#: Dense peak throughput in TFLOP/s by precision (NVIDIA datasheets, without sparsity). The first
#: entry whose name occurs in ``torch.cuda.get_device_name()`` wins, so the specific names come
#: first ("NVIDIA H100 80GB HBM3" is the SXM part).
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200 NVL", {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    ("H200", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("H100 NVL", {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    ("H100 PCIe", {"bf16": 756.5, "tf32": 378.0, "fp32": 51.2}),
    ("H100", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("A100", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
)
PRECISIONS = ("bf16", "tf32", "fp32")
#: The DEKR paper's forward cost of W32 at 512x512 ("45.4 GFLOPs", counted as multiply-adds).
PAPER_W32_512_GMACS = 45.4


def known_peaks(device_name: str) -> dict[str, float]:
    """Peak TFLOP/s by precision of a GPU named like ``torch.cuda.get_device_name()``; empty for
    a device not in :data:`PEAK_TFLOPS`."""
    for name, peaks in PEAK_TFLOPS:
        if name.lower() in device_name.lower():
            return dict(peaks)
    return {}


def parse_peaks(items: list[str]) -> dict[str, float]:
    """``["bf16=989", "tf32=495"]`` (the ``--peak-tflops`` option) -> ``{"bf16": 989.0, "tf32": 495.0}``."""
    peaks = {}
    for item in items:
        precision, _, value = item.partition("=")
        if precision not in PRECISIONS or not value:
            raise ValueError(f"--peak-tflops takes PRECISION=TFLOPS with PRECISION one of "
                             f"{', '.join(PRECISIONS)}; got {item!r}")
        peaks[precision] = float(value)
        if not peaks[precision] > 0:
            raise ValueError(f"--peak-tflops {item!r}: the peak must be positive")
    return peaks


def peak_precision(bf16: bool, device: str) -> str:
    """The peak a run is measured against: bf16 for bf16 autocast; for float32, TF32 on a GPU whose
    cuDNN convolutions use it (``torch.backends.cudnn.allow_tf32``, PyTorch's default), else fp32."""
    if bf16:
        return "bf16"
    return "tf32" if device == "cuda" and torch.backends.cudnn.allow_tf32 else "fp32"


def count_forward_macs(config: DEKRNetConfig, size: int, device: str) -> float:
    """Multiply-adds of one forward pass of one ``size`` x ``size`` image.

    Counted on the grid_sample network: FlopCounterMode does not see inside torchvision's
    ``deform_conv2d``, and every backend computes the same convolutions.
    """
    with torch.device(device):
        net = DEKRNet(replace(config, adaptive_backend="grid_sample")).eval()
    image = torch.zeros(1, 3, size, size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(image)
    return counter.get_total_flops() / 2


def training_mfu(forward_macs: float, images_per_s: float, peak_tflops: float) -> float:
    """Fraction of ``peak_tflops`` that ``images_per_s`` training images of ``forward_macs``
    forward multiply-adds each amount to (forward + backward = 3 forward passes, 2 FLOPs each)."""
    return 3 * 2 * forward_macs * images_per_s / (peak_tflops * 1e12)
