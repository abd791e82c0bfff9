"""Official DEKR checkpoint conversion (HRNet/DEKR ``pose_dekr_hrnet*.pth`` layout -> ours).

The official model keeps one ``nn.Module`` per keypoint branch (``offset_feature_layers.k``,
``offset_final_layer.k``); ours computes the K branches as grouped convolutions, so the
converter concatenates the K per-branch tensors along the output-channel axis. The backbone
keys are identical to timm's HRNet and are only prefixed. Conversion is strict: every official
key is used exactly once and every tensor of ours is filled. :func:`to_official_state_dict` is
the inverse (our tensors, or their gradients, under official names).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dekr.convert.base import CheckpointMismatchError, ConvertedCheckpoint, join_keypoint_branches, strict_state_dict
from dekr.models.adaptive_conv import REGULAR_GRID
from dekr.models.dekr import DEKRNet, DEKRNetConfig

BACKBONE_PREFIX = "backbone.body."
_HEAD_RENAMES = {
    "transition_heatmap.": "heatmap_head.transition.",
    "head_heatmap.0.0.": "heatmap_head.block.",
    "head_heatmap.1.": "heatmap_head.final.",
    "transition_offset.": "offset_head.transition.",
}
_BRANCH_BLOCK = re.compile(r"offset_feature_layers\.(\d+)\.(\d+)\.(.+)")
_BRANCH_FINAL = re.compile(r"offset_final_layer\.(\d+)\.(weight|bias)")
_OUR_BLOCK = re.compile(r"offset_head\.blocks\.(\d+)\.(.+)")
_OUR_FINAL = re.compile(r"offset_head\.final\.(weight|bias)")
_BLOCK_RENAMES = {
    "transform_matrix_conv.weight": "adapt_conv.transform_matrix_conv.weight",
    "transform_matrix_conv.bias": "adapt_conv.transform_matrix_conv.bias",
    "translation_conv.weight": "adapt_conv.translation_conv.weight",
    "translation_conv.bias": "adapt_conv.translation_conv.bias",
    "adapt_conv.weight": "adapt_conv.weight",
}


#: HRNet variant by the width of its first branch (``transition1.0.0.weight``: (width, 256, 3, 3)).
HRNET_BY_WIDTH = {18: "hrnet_w18", 30: "hrnet_w30", 32: "hrnet_w32", 40: "hrnet_w40", 44: "hrnet_w44",
                  48: "hrnet_w48", 64: "hrnet_w64"}


def official_net_config(official: Mapping[str, Tensor]) -> DEKRNetConfig:
    """The architecture of an official-layout DEKR state dict, read off its tensor shapes: HRNet
    width, K, heatmap head width, offset channels per keypoint, blocks per branch.

    Raises:
        CheckpointMismatchError: not an official DEKR layout, or an HRNet width timm lacks.
    """
    finals = [k for k in official if _BRANCH_FINAL.fullmatch(k) and k.endswith(".weight")]
    if "transition_heatmap.0.weight" not in official or not finals or "transition1.0.0.weight" not in official:
        raise CheckpointMismatchError("not an official DEKR state dict (no transition1 / transition_heatmap / "
                                      "offset_final_layer tensors)")
    width = int(official["transition1.0.0.weight"].shape[0])
    if width not in HRNET_BY_WIDTH:
        raise CheckpointMismatchError(f"official checkpoint with HRNet width {width}: no timm HRNet has it "
                                      f"(known widths {sorted(HRNET_BY_WIDTH)})")
    blocks = {int(m[2]) for k in official if (m := _BRANCH_BLOCK.fullmatch(k))}
    return DEKRNetConfig(backbone=HRNET_BY_WIDTH[width], num_keypoints=len(finals),
                         heatmap_channels=int(official["transition_heatmap.0.weight"].shape[0]),
                         offset_channels_per_keypoint=int(official["offset_final_layer.0.weight"].shape[1]),
                         offset_blocks=len(blocks), offset_block="adaptive", disentangled=True)


def load_official_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read an official DEKR ``.pth`` (plain state dict, or wrapped in ``state_dict``/``model``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle errors, ...: all mean "not a readable checkpoint"
        raise CheckpointMismatchError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): "
                                      f"{type(err).__name__}: {err}") from err
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointMismatchError(f"{path} does not hold a state dict of tensors")
    # Checkpoints saved from DataParallel/DDP prefix every key with "module.".
    return OrderedDict((k.removeprefix("module."), v) for k, v in state.items())


def unwrap_official(raw: Any) -> dict[str, Tensor] | None:
    """The official-layout state dict inside ``raw`` (what ``torch.load`` returned: a plain state dict,
    or one wrapped in ``state_dict`` / ``model``, keys maybe prefixed ``module.``); None if absent."""
    for wrapper in ("state_dict", "model"):
        if isinstance(raw, Mapping) and isinstance(raw.get(wrapper), Mapping):
            raw = raw[wrapper]
    if not isinstance(raw, Mapping) or not raw or not all(isinstance(v, Tensor) for v in raw.values()):
        return None
    state = OrderedDict((str(k).removeprefix("module."), v) for k, v in raw.items())
    # The adaptive blocks' matrix convs tell the official layout from SuperGradients' (plain blocks,
    # otherwise the same key names).
    official = ("transition_heatmap.0.weight" in state and "offset_final_layer.0.weight" in state
                and any(k.endswith("transform_matrix_conv.weight") for k in state))
    return state if official else None


def convert_official(raw: Any) -> ConvertedCheckpoint | None:
    """An official HRNet/DEKR checkpoint in our layout; None when ``raw`` is not one.

    Raises:
        CheckpointMismatchError: an official layout whose tensors do not fit (listing them).
    """
    official = unwrap_official(raw)
    if official is None:
        return None
    config = official_net_config(official)
    with torch.device("meta"):
        skeleton = DEKRNet(config)  # key names and shapes only
    return ConvertedCheckpoint("official", config, dict(convert_official_state_dict(official, skeleton)))


def convert_official_state_dict(official: dict[str, Tensor], net: DEKRNet) -> dict[str, Tensor]:
    """Map an official DEKR state dict onto ``net``'s state dict keys (strictly).

    Raises:
        CheckpointMismatchError: listing missing keys, unexpected keys and shape conflicts.
    """
    target = net.state_dict()
    cfg = net.config
    if not (cfg.disentangled and cfg.offset_block == "adaptive"):
        raise CheckpointMismatchError("official checkpoints need net.disentangled=true and net.offset_block=adaptive")
    k_total = cfg.num_keypoints
    converted: dict[str, Tensor] = {}
    branch_parts: dict[str, dict[int, Tensor]] = {}
    unexpected: list[str] = []
    for key, value in official.items():
        if m := _BRANCH_BLOCK.fullmatch(key):
            kp, block, rest = int(m[1]), m[2], m[3]
            if rest == "regular_matrix":
                if value.shape != REGULAR_GRID.shape or not torch.equal(value.float(), REGULAR_GRID):
                    raise CheckpointMismatchError(f"{key}: not the regular 3x3 grid DEKR fixes")
                branch_parts.setdefault(f"offset_head.blocks.{block}.regular_matrix", {})[kp] = value
                continue
            ours = _BLOCK_RENAMES.get(rest) or (f"bn.{rest.split('.', 1)[1]}" if rest.startswith("bn.") else None)
            if ours is None:
                unexpected.append(key)
                continue
            branch_parts.setdefault(f"offset_head.blocks.{block}.{ours}", {})[kp] = value
        elif m := _BRANCH_FINAL.fullmatch(key):
            branch_parts.setdefault(f"offset_head.final.{m[2]}", {})[int(m[1])] = value
        else:
            for old, new in _HEAD_RENAMES.items():
                if key.startswith(old):
                    converted[new + key[len(old):]] = value
                    break
            else:
                if key.split(".", 1)[0] in ("conv1", "bn1", "conv2", "bn2", "layer1") or key.startswith(
                        ("transition1", "transition2", "transition3", "stage2", "stage3", "stage4")):
                    converted[BACKBONE_PREFIX + key] = value
                else:
                    unexpected.append(key)

    joined, problems = join_keypoint_branches(branch_parts, k_total, "official")
    # The official blocks keep DEKR's fixed 3x3 grid per branch (checked above); ours is a constant.
    converted.update({k: v for k, v in joined.items() if not k.endswith("regular_matrix")})
    return strict_state_dict(converted, target,
                             f"official checkpoint does not fit the configured network ({cfg.backbone}, K={k_total}):",
                             unexpected, problems,
                             hint="is the --config for another variant, e.g. w48 vs w32 or coco vs crowdpose?")


def to_official_state_dict(state: dict[str, Tensor], num_keypoints: int) -> dict[str, Tensor]:
    """The inverse of :func:`convert_official_state_dict`: our keys -> official keys, strictly.

    Maps any subset of our state dict keys (e.g. parameter gradients keyed by parameter name):
    backbone keys lose their prefix, head keys get their official names, and each grouped
    tensor of the offset branches is cut along the output-channel axis into the K per-keypoint
    official tensors (``num_batches_tracked`` is repeated). The official ``regular_matrix``
    buffers (the fixed grid, not ours) are not produced.

    Raises:
        CheckpointMismatchError: naming keys that have no official counterpart.
    """
    official_heads = {new: old for old, new in _HEAD_RENAMES.items()}
    official_block = {new: old for old, new in _BLOCK_RENAMES.items()}
    out: dict[str, Tensor] = OrderedDict()
    unknown: list[str] = []
    for key, value in state.items():
        branch_keys: list[str] | None = None
        if key.startswith(BACKBONE_PREFIX):
            out[key[len(BACKBONE_PREFIX):]] = value
        elif m := _OUR_BLOCK.fullmatch(key):
            block, rest = m[1], m[2]
            official = official_block.get(rest) or (rest if rest.startswith("bn.") else None)
            if official is None:
                unknown.append(key)
                continue
            branch_keys = [f"offset_feature_layers.{k}.{block}.{official}" for k in range(num_keypoints)]
        elif m := _OUR_FINAL.fullmatch(key):
            branch_keys = [f"offset_final_layer.{k}.{m[1]}" for k in range(num_keypoints)]
        else:
            prefix = next((p for p in official_heads if key.startswith(p)), None)
            if prefix is None:
                unknown.append(key)
                continue
            out[official_heads[prefix] + key[len(prefix):]] = value
        if branch_keys is not None:
            if value.dim() == 0:  # num_batches_tracked: one counter per official branch
                out.update((name, value.clone()) for name in branch_keys)
            elif value.shape[0] % num_keypoints:
                unknown.append(f"{key} ({value.shape[0]} output channels, not a multiple of K={num_keypoints})")
            else:
                out.update((name, part.clone()) for name, part in zip(branch_keys, value.chunk(num_keypoints)))
    if unknown:
        raise CheckpointMismatchError(f"no official counterpart for: {', '.join(unknown)}")
    return out


def official_key_count(net: DEKRNet) -> int:
    """How many keys an official checkpoint of this architecture has (regular_matrix included)."""
    per_branch = sum(1 for k in net.state_dict() if k.startswith("offset_head.")
                     and not k.startswith("offset_head.transition."))
    blocks = net.config.offset_blocks
    k = net.config.num_keypoints
    return len(net.state_dict()) - per_branch + per_branch * k + blocks * k
