"""HRNet backbone from timm, returning DEKR's 1/4-resolution concatenated feature map."""
from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

#: timm HRNet variants: the official W32/W48 and the smaller ones for quick experiments.
HRNET_VARIANTS = ("hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w18", "hrnet_w30", "hrnet_w32",
                  "hrnet_w40", "hrnet_w44", "hrnet_w48", "hrnet_w64")


class HRNetBackbone(nn.Module):
    """timm HRNet with the raw branch outputs, upsampled to 1/4 and concatenated.

    ``feature_location=''`` selects the raw branches (32/64/128/256 channels at strides 4-32
    for W32) instead of timm's classification "incre" features; ``out_indices=(1, 2, 3, 4)``
    drops the stride-2 stem output. The state dict under ``body.`` has exactly the official
    DEKR backbone keys.

    Args:
        name: a timm HRNet name, see :data:`HRNET_VARIANTS`.
        pretrained: ``False``; ``True`` for timm's ImageNet weights (needs the HF hub or a
            populated cache); or a path to a local ImageNet HRNet checkpoint file.
    """

    def __init__(self, name: str = "hrnet_w32", pretrained: bool | str = False) -> None:
        super().__init__()
        if name not in HRNET_VARIANTS:
            raise ValueError(f"backbone {name!r} is not a timm HRNet; choose one of {HRNET_VARIANTS}")
        kwargs = dict(features_only=True, feature_location="", out_indices=(1, 2, 3, 4))
        self.body = timm.create_model(name, pretrained=False, **kwargs)
        if pretrained is True:
            self._load_hub_weights(name, kwargs)
        elif pretrained:
            self._load_file(Path(pretrained))
        self.branch_channels: list[int] = list(self.body.feature_info.channels())
        self.out_channels = sum(self.branch_channels)

    def _load_hub_weights(self, name: str, kwargs: dict) -> None:
        try:
            pretrained_body = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as err:  # network errors come as many types (OSError, HF hub errors, ...)
            raise RuntimeError(
                f"could not download ImageNet weights for {name!r} through timm ({type(err).__name__}: {err}). "
                "Offline, pass a local checkpoint instead: net.pretrained_backbone=/path/to/hrnet_w32.pth"
            ) from err
        self.body.load_state_dict(pretrained_body.state_dict())

    def _load_file(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"pretrained backbone file {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        own = self.body.state_dict()
        # Classification checkpoints carry the head (incre_modules, final_layer, classifier):
        # keep what the feature body has, and insist that all of the body is covered.
        usable = {k: v for k, v in state.items() if k in own}
        missing = sorted(set(own) - set(usable))
        if missing:
            raise ValueError(f"{path}: not an HRNet checkpoint for this variant; missing {len(missing)} "
                             f"backbone tensors, e.g. {missing[:5]}")
        bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in usable.items() if v.shape != own[k].shape]
        if bad:
            raise ValueError(f"{path}: shape mismatch for {len(bad)} tensors, e.g. {bad[:5]}")
        self.body.load_state_dict(usable)
        log.info("loaded %d backbone tensors from %s", len(usable), path)

    def forward(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, sum(branch_channels), H/4, W/4); H and W multiples of 32."""
        branches = self.body(images)
        size = branches[0].shape[-2:]
        upsampled = [branches[0]] + [
            F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches[1:]
        ]
        return torch.cat(upsampled, dim=1)
