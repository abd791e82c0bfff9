"""The DEKR network: HRNet backbone + heatmap head + disentangled adaptive offset head."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor, nn

from dekr.dataclass_config import dataclass_from_dict
from dekr.models.adaptive_conv import AdaptiveBackend
from dekr.models.backbone import HRNetBackbone
from dekr.models.heads import HeatmapHead, OffsetBlockType, OffsetHead

#: Output stride of both heads relative to the input image.
OUTPUT_STRIDE = 4
#: HRNet's coarsest branch is at stride 32: inputs must be multiples of it.
INPUT_MULTIPLE = 32


@dataclass
class DEKRNetConfig:
    """Architecture of a DEKR network. Defaults: the official W32 COCO model.

    Attributes:
        backbone: timm HRNet name (``hrnet_w32``, ``hrnet_w48``, ``hrnet_w18_small``, ...).
        num_keypoints: K (COCO 17, CrowdPose 14, any custom skeleton).
        heatmap_channels: width of the heatmap head (official: 32 for W32, 48 for W48).
        offset_channels_per_keypoint: width of each keypoint's offset branch (official 15).
        offset_blocks: blocks per offset branch (official 2).
        offset_block: ``adaptive`` (official) or ``basic`` (plain 3x3 conv blocks; paper ablation).
        disentangled: K separate branches (official) or one shared branch for all 2K offsets.
        dilation: dilation of the offset blocks' 3x3 kernels (official 1).
        adaptive_backend: ``grid_sample`` (pure PyTorch, exportable) or ``torchvision`` (deform_conv2d).
        pretrained_backbone: False, True (timm ImageNet weights, needs the hub) or a local file path.
    """

    backbone: str = "hrnet_w32"
    num_keypoints: int = 17
    heatmap_channels: int = 32
    offset_channels_per_keypoint: int = 15
    offset_blocks: int = 2
    offset_block: OffsetBlockType = "adaptive"
    disentangled: bool = True
    dilation: int = 1
    adaptive_backend: AdaptiveBackend = "grid_sample"
    pretrained_backbone: bool | str = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DEKRNetConfig":
        return dataclass_from_dict(cls, data, "model.net")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DEKRNet(nn.Module):
    """images (N, 3, H, W), ImageNet-normalised RGB, H and W multiples of 32 ->
    ``(heatmaps, offsets)`` in the official layout:

    * heatmaps (N, K+1, H/4, W/4): K keypoint heatmaps, then the center heatmap;
    * offsets (N, 2K, H/4, W/4): (x, y) per keypoint in output-map pixels, pointing from the
      keypoint to the pixel (keypoint = pixel - offset).
    """

    def __init__(self, config: DEKRNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DEKRNetConfig()
        self.backbone = HRNetBackbone(config.backbone, config.pretrained_backbone)
        self.heatmap_head = HeatmapHead(self.backbone.out_channels, config.heatmap_channels, config.num_keypoints)
        self.offset_head = OffsetHead(
            self.backbone.out_channels,
            config.num_keypoints,
            config.offset_channels_per_keypoint,
            config.offset_blocks,
            config.offset_block,
            config.disentangled,
            config.dilation,
            config.adaptive_backend,
        )

    @property
    def num_keypoints(self) -> int:
        return self.config.num_keypoints

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        check_input(images)
        features = self.backbone(images)
        return self.heatmap_head(features), self.offset_head(features)


def check_input(images: Tensor) -> None:
    """Raise a clear error for inputs HRNet cannot take (wrong rank/channels, bad sizes)."""
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    if images.shape[1] != 3:
        raise ValueError(f"expected 3 input channels (RGB), got {images.shape[1]} in shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
        raise ValueError(
            f"input height and width must be multiples of {INPUT_MULTIPLE} (got {h}x{w}); "
            f"resize or pad, e.g. with dekr.models.dekr.pad_to_multiple"
        )


def pad_to_multiple(images: Tensor, multiple: int = INPUT_MULTIPLE) -> Tensor:
    """Zero-pad (N, C, H, W) at the bottom and right so H and W are multiples of ``multiple``."""
    h, w = images.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    return nn.functional.pad(images, (0, pad_w, 0, pad_h)) if pad_h or pad_w else images
