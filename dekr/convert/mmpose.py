"""MMPose 1.x DEKR checkpoint conversion (``BottomupPoseEstimator`` + ``DEKRHead`` -> ours).

The route is MMPose -> official layout -> ours: :func:`mmpose_to_official` rewrites the MMPose
state dict under the exact official key names and shapes, then
:func:`dekr.convert.official.convert_official_state_dict` (already proved against the official
code) does the rest. Both steps are strict.

The layouts (MMPose 1.x ``DEKRHead`` and the official ``PoseHigherResolutionNet``):

=====================================================  ==============================================
MMPose 1.x                                             official DEKR
=====================================================  ==============================================
``backbone.<hrnet key>``                               ``<hrnet key>``
``head.heatmap_conv_layers.0.conv``, ``.0.bn``         ``transition_heatmap.0``, ``.1``
``head.heatmap_conv_layers.1.{conv,bn}{1,2}``          ``head_heatmap.0.0.{conv,bn}{1,2}``
``head.heatmap_conv_layers.2``                         ``head_heatmap.1`` (K keypoints, then the root)
``head.displacement_conv_layers.0.conv``, ``.0.bn``    ``transition_offset.0``, ``.1``
``head.displacement_conv_layers.{b+1}.*``              ``offset_feature_layers.{k}.{b}.*``, k < K
  (grouped: groups = K, keypoint-major channels)       (one module per keypoint; see below)
``head.displacement_conv_layers.{B+1}`` (grouped 1x1)  ``offset_final_layer.{k}``, sign flipped
``head.rescore_net.l{1,2,3}``                          ``final_rescore_*.pth``'s ``l{1,2,3}``
=====================================================  ==============================================

The real transforms, all in the adaptive blocks and the final displacement layer:

* Grouped -> per keypoint: every grouped tensor is cut into K equal slices along its output
  channels (group k = keypoint k); a BatchNorm's ``num_batches_tracked`` is repeated.
* Affine matrix: MMPose's ``transform_matrix_conv`` has 6 channels per keypoint, channel
  ``6k + 3r + c`` being the coefficient of ``(grid dy, grid dx, 1)[c]`` in the deformable
  offset's row r (0: dy, 1: dx): offsets = ``[A | t] @ [grid; 1]``. The official block has a
  4-channel ``transform_matrix_conv`` (``M``, channel ``2r + c``) and a 2-channel
  ``translation_conv`` (``t``), with offsets = ``M @ grid - grid + t``. Hence ``M = A + I``:
  the same weights, the bias plus the identity; ``t`` is column ``c = 2``.
* Sign: MMPose decodes keypoint = location + displacement, the official code keypoint =
  location - offset, so the final layer's weights and biases are negated. Channel order is the
  same: (x, y) per keypoint.
* ``regular_matrix``: MMPose's buffer is 3x9 (the grid's dy and dx rows plus a row of ones for
  the translation); the official one is the 2x9 grid. Both are fixed; MMPose's is checked.

Pre-1.0 MMPose layouts (``keypoint_head.``, ``offset_conv_layers``, root heatmap first, opposite
displacement sign, top-level ``rescore_net``) are refused with an explanation, not guessed:
MMPose's own ``DEKRHead`` load hook rewrites them, and no fixture here proves a conversion.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from dekr.convert.base import ConvertedCheckpoint
from dekr.convert.official import CheckpointMismatchError, convert_official_state_dict, official_net_config
from dekr.models.adaptive_conv import REGULAR_GRID
from dekr.models.dekr import DEKRNet

HEAD = "head."
HEATMAP = "head.heatmap_conv_layers."
DISPLACEMENT = "head.displacement_conv_layers."
RESCORE = "head.rescore_net."

#: MMPose's fixed ``AdaptiveActivationBlock.regular_matrix``: the official 2x9 grid plus ones.
MMPOSE_REGULAR_MATRIX = torch.cat([REGULAR_GRID, torch.ones(1, 9)])

_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
_RESCORE_KEYS = ("l1.weight", "l1.bias", "l2.weight", "l2.bias", "l3.weight", "l3.bias")
_DISPLACEMENT_LAYER = re.compile(re.escape(DISPLACEMENT) + r"(\d+)\.")
_BLOCK_ROWS = [0, 1, 3, 4]  # channels 3r + c with c < 2: the 2x2 matrix A, row-major as official M
_TRANSLATION_ROWS = [2, 5]  # channels 3r + 2: the translation (dy, dx)


def _renames(prefix_from: str, prefix_to: str, names: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(prefix_from + n, prefix_to + n) for n in names]


def _bn(mm: str, official: str) -> list[tuple[str, str]]:
    return _renames(mm + ".", official + ".", _BN_FIELDS)


#: Plain renames of the heads' shared layers (official key order).
HEAD_RENAMES: list[tuple[str, str]] = [
    (HEATMAP + "0.conv.weight", "transition_heatmap.0.weight"),
    *_bn(HEATMAP + "0.bn", "transition_heatmap.1"),
    (DISPLACEMENT + "0.conv.weight", "transition_offset.0.weight"),
    *_bn(DISPLACEMENT + "0.bn", "transition_offset.1"),
    (HEATMAP + "1.conv1.weight", "head_heatmap.0.0.conv1.weight"),
    *_bn(HEATMAP + "1.bn1", "head_heatmap.0.0.bn1"),
    (HEATMAP + "1.conv2.weight", "head_heatmap.0.0.conv2.weight"),
    *_bn(HEATMAP + "1.bn2", "head_heatmap.0.0.bn2"),
    (HEATMAP + "2.weight", "head_heatmap.1.weight"),
    (HEATMAP + "2.bias", "head_heatmap.1.bias"),
]


def _is_pre_v1(keys: list[str]) -> bool:
    return any(k.startswith(("keypoint_head.", "rescore_net.")) or ".offset_conv_layers." in k for k in keys)


def mmpose_to_official(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """Rewrite an MMPose 1.x DEKR state dict in the official layout (strictly).

    Args:
        state: ``BottomupPoseEstimator.state_dict()`` (``backbone.*``, ``head.*``), without
            ``module.`` prefixes. Head shapes: heatmap ``head.heatmap_conv_layers.2.weight``
            (K+1, Wh, 1, 1); grouped displacement tensors (K*C, ...) with C channels per keypoint;
            ``transform_matrix_conv`` (6K, C, 3, 3); final layer (2K, C, 1, 1).

    Returns:
        ``(official, rescore)``: the official-layout state dict (official key names, order and
        shapes, ``regular_matrix`` buffers as the official 2x9 grid), and the rescore net's
        ``l1``/``l2``/``l3`` weights and biases (None when the checkpoint has no
        ``head.rescore_net``).

    Raises:
        CheckpointMismatchError: a pre-1.0 layout, or keys left unused, missing, or of the wrong
            shape (each named under its MMPose key).
    """
    keys = list(state)
    if _is_pre_v1(keys):
        raise CheckpointMismatchError(
            "pre-1.0 MMPose DEKR layout (keypoint_head. / offset_conv_layers / top-level rescore_net): not "
            "supported. Load it into MMPose 1.x's BottomupPoseEstimator (its DEKRHead load hook rewrites this "
            "layout) and save the state dict again, then convert that file")
    unused = OrderedDict(state)
    missing: list[str] = []
    wrong_shape: list[str] = []

    def take(key: str, shape: tuple[int, ...] | None = None) -> Tensor | None:
        """Consume ``key`` (each MMPose key is used once); note it when missing or mis-shaped."""
        if key not in unused:
            missing.append(key)
            return None
        value = unused.pop(key)
        if shape is not None and tuple(value.shape) != shape:
            wrong_shape.append(f"{key}: {tuple(value.shape)}, expected {shape}")
            return None
        return value

    # Sizes read off the shapes: K and C from the final displacement layer, Wh and the backbone's
    # concatenated width from the heatmap transition. Every other head tensor is checked against them.
    final_index = max((int(m[1]) for key in keys if (m := _DISPLACEMENT_LAYER.match(key))), default=0)
    final_weight = state.get(f"{DISPLACEMENT}{final_index}.weight")
    heat_transition = state.get(HEATMAP + "0.conv.weight")
    if final_weight is None or final_weight.dim() != 4 or heat_transition is None or heat_transition.dim() != 4:
        raise CheckpointMismatchError(f"not an MMPose DEKR state dict: no 4-d {HEATMAP}0.conv.weight and "
                                      f"{DISPLACEMENT}{final_index}.weight (the last displacement layer)")
    num_keypoints, channels = final_weight.shape[0] // 2, int(final_weight.shape[1])
    heat_width, in_width = int(heat_transition.shape[0]), int(heat_transition.shape[1])
    k, kc = num_keypoints, num_keypoints * channels
    head_shapes: dict[str, tuple[int, ...]] = {
        HEATMAP + "0.conv.weight": (heat_width, in_width, 1, 1),
        HEATMAP + "1.conv1.weight": (heat_width, heat_width, 3, 3),
        HEATMAP + "1.conv2.weight": (heat_width, heat_width, 3, 3),
        HEATMAP + "2.weight": (k + 1, heat_width, 1, 1),
        HEATMAP + "2.bias": (k + 1,),
        DISPLACEMENT + "0.conv.weight": (kc, in_width, 1, 1),
    }
    for bn, width in ((HEATMAP + "0.bn", heat_width), (HEATMAP + "1.bn1", heat_width),
                      (HEATMAP + "1.bn2", heat_width), (DISPLACEMENT + "0.bn", kc)):
        head_shapes.update((f"{bn}.{f}", (width,)) for f in _BN_PARAMS)
        head_shapes[f"{bn}.num_batches_tracked"] = ()

    official: dict[str, Tensor] = OrderedDict()
    for key in keys:
        if key.startswith("backbone."):
            official[key.removeprefix("backbone.")] = unused.pop(key)  # shapes: checked against our net
    for mm, name in HEAD_RENAMES:
        if (value := take(mm, head_shapes[mm])) is not None:
            official[name] = value

    # Adaptive blocks: displacement_conv_layers.1 .. .B, final layer .B+1 (the transition is .0).
    blocks = list(range(1, final_index))
    per_keypoint: dict[int, dict[str, Tensor]] = {kp: OrderedDict() for kp in range(k)}
    for block in blocks:
        mm = f"{DISPLACEMENT}{block}."
        regular = take(mm + "regular_matrix", tuple(MMPOSE_REGULAR_MATRIX.shape))
        if regular is not None and not torch.equal(regular.float(), MMPOSE_REGULAR_MATRIX):
            wrong_shape.append(f"{mm}regular_matrix: not MMPose's fixed 3x9 grid")
        affine_w = take(mm + "transform_matrix_conv.weight", (6 * k, channels, 3, 3))
        affine_b = take(mm + "transform_matrix_conv.bias", (6 * k,))
        adapt = take(mm + "adapt_conv.weight", (kc, channels, 3, 3))
        norm = {f: take(f"{mm}norm.{f}", (kc,)) for f in _BN_PARAMS}
        norm["num_batches_tracked"] = take(mm + "norm.num_batches_tracked", ())
        if affine_w is None or affine_b is None or adapt is None or any(v is None for v in norm.values()):
            continue
        identity = torch.eye(2, dtype=affine_b.dtype).flatten()  # M = A + I: only the biases change
        for kp, (aw, ab) in enumerate(zip(affine_w.chunk(k), affine_b.chunk(k))):
            out = per_keypoint[kp]
            b = f"offset_feature_layers.{kp}.{block - 1}."
            out[b + "regular_matrix"] = REGULAR_GRID.clone()
            out[b + "transform_matrix_conv.weight"] = aw[_BLOCK_ROWS]  # indexing copies
            out[b + "transform_matrix_conv.bias"] = ab[_BLOCK_ROWS] + identity
            out[b + "translation_conv.weight"] = aw[_TRANSLATION_ROWS]
            out[b + "translation_conv.bias"] = ab[_TRANSLATION_ROWS]
            out[b + "adapt_conv.weight"] = adapt.chunk(k)[kp].clone()
            for f, v in norm.items():
                # One counter for the grouped BatchNorm; the official code keeps one per branch.
                out[f"{b}bn.{f}"] = v.clone() if f == "num_batches_tracked" else v.chunk(k)[kp].clone()
    for kp in range(k):
        official.update(per_keypoint[kp])

    weight = take(f"{DISPLACEMENT}{final_index}.weight", (2 * k, channels, 1, 1))
    bias = take(f"{DISPLACEMENT}{final_index}.bias", (2 * k,))
    if weight is not None and bias is not None:
        # displacement = -offset: negating the last (linear) layer flips the output's sign.
        for kp, (w, b) in enumerate(zip(weight.chunk(k), bias.chunk(k))):
            official[f"offset_final_layer.{kp}.weight"] = -w
            official[f"offset_final_layer.{kp}.bias"] = -b

    rescore: dict[str, Tensor] | None = None
    if any(key.startswith(RESCORE) for key in keys):
        parts = {name: take(RESCORE + name) for name in _RESCORE_KEYS}
        rescore = OrderedDict((n, v) for n, v in parts.items() if v is not None)
        if len(rescore) != len(_RESCORE_KEYS):
            rescore = None  # the missing keys are reported below

    if unused or missing or wrong_shape:
        header = (f"MMPose DEKR checkpoint does not fit the MMPose 1.x layout (K={k}, {channels} channels per "
                  f"keypoint, {len(blocks)} adaptive blocks):")
        lines = [header]
        for title, items in (("unused", list(unused)), ("missing", missing), ("wrong shape", wrong_shape)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                lines.append(f"  {title}: {shown}")
        raise CheckpointMismatchError("\n".join(lines))
    return official, rescore


def _mmpose_state(raw: Any) -> Mapping[str, Tensor] | None:
    """The tensors of an MMPose checkpoint (``{"state_dict": ..., "meta": ...}``) or state dict."""
    state = raw.get("state_dict", raw) if isinstance(raw, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        return None
    if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        return None
    # Checkpoints saved from a DataParallel/DDP wrapper prefix every key with "module.".
    return OrderedDict((k.removeprefix("module."), v) for k, v in state.items())


def is_mmpose_dekr(state: Mapping[str, Tensor]) -> bool:
    """True for MMPose DEKR content (any version): ``backbone.`` keys plus a DEKR heatmap head."""
    keys = list(state)
    return (any(k.startswith("backbone.") for k in keys)
            and any(k.startswith((HEATMAP, "keypoint_head.heatmap_conv_layers.")) for k in keys))


def convert_mmpose(raw: Any) -> ConvertedCheckpoint | None:
    """Convert what ``torch.load`` returned for an MMPose 1.x DEKR checkpoint.

    Args:
        raw: an MMPose checkpoint (a dict with ``state_dict``, plus ``meta`` and maybe
            ``optimizer``, which are ignored) or a bare state dict; ``module.`` prefixes are dropped.

    Returns:
        The network (architecture read off the shapes, weights under our keys, real tensors) and
        the rescore net's weights, or None when ``raw`` is not MMPose DEKR content (so a loader
        can try each format in turn).

    Raises:
        CheckpointMismatchError: MMPose DEKR content that does not convert strictly.
    """
    state = _mmpose_state(raw)
    if state is None or not is_mmpose_dekr(state):
        return None
    official, rescore = mmpose_to_official(state)
    config = official_net_config(official)
    with torch.device("meta"):
        skeleton = DEKRNet(config)  # only the key names and shapes; the values come from `official`
    try:
        ours = convert_official_state_dict(official, skeleton)
    except CheckpointMismatchError as err:  # e.g. a backbone tensor of the wrong shape
        raise CheckpointMismatchError(f"MMPose DEKR checkpoint, once in the official layout: {err}") from err
    # No decode overrides: MMPose feeds the network RGB normalised with the ImageNet mean/std on the
    # 0-255 scale ((x - 255 * mean) / (255 * std)), which is our preprocessing, and its heatmaps
    # (no activation) and displacements (sign flipped above) then mean what ours mean.
    return ConvertedCheckpoint(format="mmpose", net_config=config, state_dict=ours, rescore_state=rescore)


__all__ = ["MMPOSE_REGULAR_MATRIX", "convert_mmpose", "is_mmpose_dekr", "mmpose_to_official"]
