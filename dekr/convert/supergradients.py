"""SuperGradients DEKR checkpoint conversion (``dekr_w32_no_dc`` layout -> ours).

SuperGradients (SG) 3.x ships DEKR as ``dekr_w32_no_dc``: the official HRNet backbone and heatmap
head under the official key names (no prefix), and an offset head without adaptive convolutions:
each keypoint branch is ``offset_blocks`` plain residual BasicBlocks
(``offset_feature_layers.k.b.{conv1,bn1,conv2,bn2}``, 3x3 convolutions with dilation 5, to mimic
the adaptive block's reach in a TensorRT-exportable net) and a 1x1 ``offset_final_layer.k``.
Ours computes the K branches as grouped convolutions, so the K per-branch tensors are
concatenated along the output-channel axis, as for official checkpoints. Our network takes it
with ``offset_block="basic"``, ``dilation=5`` and ``heatmap_activation="sigmoid"``.

What the weights cannot say, and this converter states from SG's ``dekr_w32_no_dc`` recipe
(``pose_dekr_w32_no_dc_arch_params.yaml``, ``default_dekr_coco_processing_params``,
``DEKRPoseEstimationModel.get_post_prediction_callback``):

* the dilation of the offset convolutions (a 3x3 kernel is a 3x3 kernel at any dilation): 5;
* the heatmaps are logits: SG trains them with a focal loss on logits and decodes
  ``sigmoid(heatmaps)``;
* the input: BGR, the longest side resized to 640 and padded bottom/right with 127 to 640x640,
  ``/255`` and the ImageNet mean/std in RGB order applied to the BGR channels;
* decoding: single scale, no flip test, centre threshold 0.05, pose NMS 0.05 / 8, at most 30 people.

An SG checkpoint is a dict with the state dict under ``net`` and, when trained with EMA, under
``ema_net`` too (preferred, as SG's ``load_pretrained_weights`` does); weights saved from a DDP
run prefix every key with ``module.``. SG's rescoring net is a separate file
(``pose_rescoring_coco_coco_pose.pth``): see :func:`convert_supergradients_rescore`.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from dekr.convert.base import CheckpointMismatchError, ConvertedCheckpoint, join_keypoint_branches, strict_state_dict
from dekr.convert.official import _HEAD_RENAMES, BACKBONE_PREFIX, HRNET_BY_WIDTH
from dekr.models.dekr import DEKRNet, DEKRNetConfig

#: Dilation (and padding) of SG's offset-branch 3x3 convolutions (``HEAD_OFFSET.DILATION_RATE``).
#: Not recorded in the weights: fixed by SG's ``dekr_w32_no_dc`` architecture.
SG_OFFSET_DILATION = 5

#: :class:`dekr.inference.DecodeConfig` fields that reproduce SG's own preprocessing and decoding.
SG_DECODE: dict[str, Any] = {
    "channel_order": "bgr",       # ReverseImageChannels
    "resize": "letterbox",        # KeypointsLongestMaxSizeRescale + KeypointsBottomRightPadding
    "input_size": 640,            # their output_shape=(640, 640)
    "pad_value": 127,             # KeypointsBottomRightPadding(pad_value=127)
    "flip_test": False,           # predict() runs the plain model (SG flips only to make rescoring data)
    "keypoint_threshold": 0.05,   # DEKRPoseEstimationDecodeCallback: centre threshold,
    "nms_thre": 0.05,             # pose NMS,
    "nms_num_thre": 8,
    "max_num_people": 30,         # and people per image
    "rescore_rule": "sigmoid",    # its rescoring net outputs a logit: score = sigmoid(output)
}

_SG_BLOCK = re.compile(r"offset_feature_layers\.(\d+)\.(\d+)\.((?:conv1|bn1|conv2|bn2)\..+)")
_SG_FINAL = re.compile(r"offset_final_layer\.(\d+)\.(weight|bias)")
#: Keys of an adaptive offset block (official layout): an SG checkpoint with them is not ``no_dc``.
_ADAPTIVE_PARTS = ("transform_matrix_conv", "translation_conv", "adapt_conv", "regular_matrix")
_BACKBONE_ROOTS = ("conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "transition2", "transition3",
                   "stage2", "stage3", "stage4")


def _unwrap(raw: Any) -> dict[str, Tensor] | None:
    """The state dict inside an SG checkpoint (``ema_net`` preferred, then ``net``, else ``raw``
    itself), keys without ``module.``; None when there is no dict of tensors."""
    if isinstance(raw, Mapping):
        for wrapper in ("ema_net", "net"):
            if isinstance(raw.get(wrapper), Mapping):
                raw = raw[wrapper]
                break
    if not isinstance(raw, Mapping) or not raw or not all(isinstance(v, Tensor) for v in raw.values()):
        return None
    return OrderedDict((str(k).removeprefix("module."), v) for k, v in raw.items())


def is_supergradients_layout(state: Mapping[str, Tensor]) -> bool:
    """True for an SG ``dekr_w32_no_dc``-style state dict: official heatmap head keys and plain
    BasicBlock offset branches, no adaptive-convolution keys."""
    return ("transition_heatmap.0.weight" in state and "offset_feature_layers.0.0.conv1.weight" in state
            and not any(part in key for key in state for part in _ADAPTIVE_PARTS))


def supergradients_net_config(state: Mapping[str, Tensor]) -> DEKRNetConfig:
    """The architecture of an SG DEKR state dict, read off its tensor shapes (HRNet width, K, head
    widths, blocks per branch), with SG's fixed dilation and sigmoid heatmaps.

    Raises:
        CheckpointMismatchError: tensors the architecture is read from are missing, or an HRNet
            width timm lacks.
    """
    needed = ("transition1.0.0.weight", "transition_heatmap.0.weight", "offset_final_layer.0.weight")
    if absent := [k for k in needed if k not in state]:
        raise CheckpointMismatchError(f"SuperGradients DEKR checkpoint without {', '.join(absent)}")
    width = int(state["transition1.0.0.weight"].shape[0])
    if width not in HRNET_BY_WIDTH:
        raise CheckpointMismatchError(f"SuperGradients checkpoint with HRNet width {width}: no timm HRNet has it "
                                      f"(known widths {sorted(HRNET_BY_WIDTH)})")
    finals = [k for k in state if (m := _SG_FINAL.fullmatch(k)) and m[2] == "weight"]
    blocks = {int(m[2]) for k in state if (m := _SG_BLOCK.fullmatch(k))}
    return DEKRNetConfig(backbone=HRNET_BY_WIDTH[width], num_keypoints=len(finals),
                         heatmap_channels=int(state["transition_heatmap.0.weight"].shape[0]),
                         offset_channels_per_keypoint=int(state["offset_final_layer.0.weight"].shape[1]),
                         offset_blocks=len(blocks), offset_block="basic", disentangled=True,
                         dilation=SG_OFFSET_DILATION, heatmap_activation="sigmoid")


def convert_supergradients_state_dict(state: Mapping[str, Tensor], net: DEKRNet) -> dict[str, Tensor]:
    """Map an SG DEKR state dict (unwrapped, no ``module.``) onto ``net``'s keys, strictly.

    Raises:
        CheckpointMismatchError: listing missing keys, unexpected keys, shape conflicts and
            keypoint branches that do not cover 0..K-1.
    """
    cfg = net.config
    if not (cfg.disentangled and cfg.offset_block == "basic"):
        raise CheckpointMismatchError("SuperGradients checkpoints need net.disentangled=true and "
                                      "net.offset_block=basic")
    target = net.state_dict()
    k_total = cfg.num_keypoints
    converted: dict[str, Tensor] = {}
    branch_parts: dict[str, dict[int, Tensor]] = {}
    unexpected: list[str] = []
    for key, value in state.items():
        if m := _SG_BLOCK.fullmatch(key):
            branch_parts.setdefault(f"offset_head.blocks.{m[2]}.{m[3]}", {})[int(m[1])] = value
        elif m := _SG_FINAL.fullmatch(key):
            branch_parts.setdefault(f"offset_head.final.{m[2]}", {})[int(m[1])] = value
        elif prefix := next((p for p in _HEAD_RENAMES if key.startswith(p)), None):
            converted[_HEAD_RENAMES[prefix] + key[len(prefix):]] = value
        elif key.split(".", 1)[0] in _BACKBONE_ROOTS:
            converted[BACKBONE_PREFIX + key] = value
        else:
            unexpected.append(key)

    joined, problems = join_keypoint_branches(branch_parts, k_total, "SG")
    converted.update(joined)
    return strict_state_dict(converted, target,
                             f"SuperGradients checkpoint does not fit the network ({cfg.backbone}, K={k_total}):",
                             unexpected, problems)


def convert_supergradients(raw: Any) -> ConvertedCheckpoint | None:
    """An SG ``dekr_w32_no_dc``-style checkpoint in our layout; None when ``raw`` is not one.

    ``raw`` is what ``torch.load`` returned: a dict with ``ema_net`` / ``net`` (the former
    preferred), or a plain state dict; keys may carry ``module.``. The result carries SG's
    preprocessing and decoding options in ``decode`` (:data:`SG_DECODE`); the model state dict
    holds no rescoring net (SG keeps it in a separate file), so ``rescore_state`` is None.

    Raises:
        CheckpointMismatchError: an SG layout whose tensors do not fit (listing them).
    """
    state = _unwrap(raw)
    if state is None or not is_supergradients_layout(state):
        return None
    config = supergradients_net_config(state)
    with torch.device("meta"):
        skeleton = DEKRNet(config)  # key names and shapes only
    weights = convert_supergradients_state_dict(state, skeleton)
    return ConvertedCheckpoint("supergradients", config, dict(weights), None, dict(SG_DECODE))


#: SG ``PoseRescoringNet`` (``num_layers=2``) -> our :class:`dekr.inference.rescore.RescoreNet`.
_RESCORE_RENAMES = {"layers.0.": "l1.", "layers.2.": "l2.", "final.": "l3."}


def convert_supergradients_rescore(raw: Any) -> dict[str, Tensor] | None:
    """SG's rescoring net (``pose_rescoring_coco_coco_pose.pth``) as our ``RescoreNet`` state dict
    (``l1``/``l2``/``l3``); None when ``raw`` is not an SG rescoring net.

    SG's ``PoseRescoringNet`` with COCO's ``num_layers: 2`` is ``layers`` = [Linear(74, 256),
    ReLU, Linear(256, 256), ReLU] and ``final`` = Linear(256, 1): our MLP. Its features are ours
    for COCO's ``rescore_limbs`` / ``rescore_torso_limbs`` (SG's ``edge_links`` are the same 19
    limbs; limb vectors x, y interleaved, lengths, keypoint scores; torso = mean of limbs 9 and 11,
    at least 1).

    The score rule differs: SG trains the output with a binary cross-entropy on logits and uses
    ``sigmoid(output)`` as the pose score, where the official net predicts the OKS and the score is
    ``OKS * mean keypoint score`` (:func:`dekr.inference.rescore.rescore`). These weights are
    right, but scoring with them needs SG's rule.

    Raises:
        CheckpointMismatchError: an SG rescoring net of another depth (``layers.4`` and on).
    """
    state = _unwrap(raw)
    if state is None or "final.weight" not in state or "layers.0.weight" not in state:
        return None
    out: dict[str, Tensor] = OrderedDict()
    unexpected = []
    for key, value in state.items():
        prefix = next((p for p in _RESCORE_RENAMES if key.startswith(p)), None)
        if prefix is None or key[len(prefix):] not in ("weight", "bias"):
            unexpected.append(key)
        else:
            out[_RESCORE_RENAMES[prefix] + key[len(prefix):]] = value
    missing = sorted({f"{n}.{p}" for n in ("l1", "l2", "l3") for p in ("weight", "bias")} - set(out))
    if unexpected or missing:
        raise CheckpointMismatchError(f"SuperGradients rescoring net is not the 2-hidden-layer MLP ours is: "
                                      f"unexpected {unexpected}, missing {missing}")
    return out
