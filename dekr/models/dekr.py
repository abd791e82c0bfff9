"""The DEKR network: HRNet backbone + heatmap head + disentangled adaptive offset head."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Literal

from torch import Tensor, nn

from dekr.dataclass_config import dataclass_from_dict
from dekr.models.adaptive_conv import AdaptiveBackend
from dekr.models.backbone import PRETRAINED_OPTION, HRNetBackbone
from dekr.models.heads import HeatmapHead, OffsetHead
from dekr.models.offset_blocks import OffsetBlockOption

#: Output stride of both heads relative to the input image.
OUTPUT_STRIDE = 4
#: HRNet's coarsest branch is at stride 32: inputs must be multiples of it.
INPUT_MULTIPLE = 32

InitScheme = Literal["official", "pytorch"]

log = logging.getLogger(__name__)


@dataclass
class DEKRNetConfig:
    """Architecture of a DEKR network. Defaults: the official W32 COCO model.

    Attributes:
        backbone: timm HRNet name (``hrnet_w32``, ``hrnet_w48``, ``hrnet_w18_small``, ...).
        num_keypoints: K (COCO 17, CrowdPose 14, any custom skeleton).
        heatmap_channels: width of the heatmap head (official: 32 for W32, 48 for W48).
        offset_channels_per_keypoint: width of each keypoint's offset branch (official 15).
        offset_blocks: blocks per offset branch (official 2).
        offset_block: the blocks of each offset branch: ``adaptive`` (official), ``basic`` (plain
            3x3 conv blocks; paper ablation), ``deformable`` (free-form deformable conv, DCN), your
            own :class:`~dekr.models.offset_blocks.OffsetBlock` by class path
            (``mypkg.blocks.MyBlock``), or ``{class_path: <full class path>, init_args: {...}}`` for a
            block's own options (``{class_path: dekr.models.offset_blocks.deformable.DeformableBlock,
            init_args: {modulated: true}}``). See :mod:`dekr.models.offset_blocks`.
        disentangled: K separate branches (official) or one shared branch for all 2K offsets.
        dilation: dilation of the offset blocks' 3x3 kernels (official 1).
        heatmap_activation: ``none`` (official: the heads regress the Gaussian heatmaps directly) or
            ``sigmoid`` (SuperGradients' ``dekr_w32_no_dc`` outputs logits). Applied in ``forward``
            in train and eval mode alike, so the loss, validation and decoding all see heatmaps
            in [0, 1]; the logits stay available as ``net.heatmap_head(net.backbone(images))``.
        adaptive_backend: ``grid_sample`` (pure PyTorch, exportable) or ``torchvision`` (deform_conv2d);
            passed to every offset block as ``backend`` (the adaptive block's conv uses it; the
            deformable block always samples with torchvision).
        init: ``official`` (the official ``init_weights``, see :func:`init_official_`: every conv
            N(0, 0.001) with zero bias, BN 1/0, then each block's own part: zero offset predictors in
            the adaptive and deformable blocks) or ``pytorch`` (the framework defaults: timm's
            kaiming init in the backbone, PyTorch's in the heads, random offset convs in the
            adaptive blocks -- the deformable block zeroes its own; for ablations). ImageNet weights, when
            configured, replace the backbone's init either way.
        pretrained_backbone: ``False`` (backbone from scratch); ``True`` (timm's ImageNet weights,
            from the Hugging Face cache or downloaded once); or a local ImageNet HRNet file in
            timm's or HRNet-Image-Classification's layout (``hrnetv2_w32_imagenet_pretrained.pth``),
            loaded strictly (see :mod:`dekr.models.backbone`).
    """

    backbone: str = "hrnet_w32"
    num_keypoints: int = 17
    heatmap_channels: int = 32
    offset_channels_per_keypoint: int = 15
    offset_blocks: int = 2
    offset_block: OffsetBlockOption = "adaptive"
    disentangled: bool = True
    dilation: int = 1
    heatmap_activation: Literal["none", "sigmoid"] = "none"
    adaptive_backend: AdaptiveBackend = "grid_sample"
    init: InitScheme = "official"
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
        if config.init not in ("official", "pytorch"):
            raise ValueError(f"init must be 'official' or 'pytorch', got {config.init!r}")
        if config.heatmap_activation not in ("none", "sigmoid"):
            raise ValueError(f"heatmap_activation must be 'none' or 'sigmoid', got {config.heatmap_activation!r}")
        # Order matters: build, initialise, then load the ImageNet backbone, so that the
        # initialisation (which covers the backbone too, as the official one does) cannot
        # overwrite the pretrained weights.
        self.backbone = HRNetBackbone(config.backbone, pretrained=False)
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
        if config.init == "official":
            init_official_(self)
        if config.pretrained_backbone:
            self.backbone.load_pretrained(config.pretrained_backbone)
        else:
            # Debug only: the training launcher says it once (dekr.preflight); every network built to
            # load a checkpoint into comes here too.
            log.debug("backbone %s starts from scratch (%s init; %s is false)", config.backbone, config.init,
                      PRETRAINED_OPTION)

    @property
    def num_keypoints(self) -> int:
        return self.config.num_keypoints

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        check_input(images)
        features = self.backbone(images)
        heatmaps = self.heatmap_head(features)
        if self.config.heatmap_activation == "sigmoid":
            heatmaps = heatmaps.sigmoid()
        return heatmaps, self.offset_head(features)


def init_official_(net: nn.Module) -> None:
    """The official DEKR ``init_weights`` (``lib/models/hrnet_dekr.py``), in place.

    * every ``nn.Conv2d``, backbone and heads: weight N(0, 0.001), bias 0;
    * every ``nn.BatchNorm2d``: weight 1, bias 0;
    * then every submodule with its own ``init_official_()`` (the offset blocks, see
      :class:`~dekr.models.offset_blocks.OffsetBlock`) applies it, so that what a block sets (the
      adaptive and deformable blocks' zero offset predictors; the official quirks are documented
      at :meth:`dekr.models.offset_blocks.adaptive.AdaptiveBlock.init_official_`) is never
      overwritten by the generic init.

    Parameters that are not an ``nn.Conv2d``'s (the deformable weights, officially a
    ``torchvision.ops.DeformConv2d``) keep their own init.
    """
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.001)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for module in net.modules():
        own_init = getattr(module, "init_official_", None)
        if module is not net and callable(own_init):
            own_init()


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
