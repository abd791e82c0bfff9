"""What every checkpoint converter returns: our network's architecture and weights, plus what the
source model needs at inference (its rescoring net, preprocessing and decode options)."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dekr.models.dekr import DEKRNetConfig


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the configured network (names the keys at fault)."""


@dataclass
class ConvertedCheckpoint:
    """A foreign DEKR checkpoint in our terms.

    Attributes:
        format: ``official``, ``mmpose`` or ``supergradients``.
        net_config: the architecture, read off the tensor shapes (width, K, head sizes, switches).
        state_dict: the weights under :class:`dekr.models.dekr.DEKRNet`'s keys, every key filled.
        rescore_state: the rescoring net's ``l1``/``l2``/``l3`` weights and biases when the file
            carries one (MMPose, SuperGradients), else None.
        decode: :class:`dekr.inference.DecodeConfig` fields the model needs to be used as its
            authors used it (e.g. input channel order, letterboxing); empty for official files.
    """

    format: str
    net_config: DEKRNetConfig
    state_dict: dict[str, Tensor]
    rescore_state: dict[str, Tensor] | None = None
    decode: dict[str, Any] = field(default_factory=dict)


def join_keypoint_branches(branches: Mapping[str, Mapping[int, Tensor]], num_keypoints: int,
                           source: str) -> tuple[dict[str, Tensor], list[str]]:
    """Per-keypoint branch tensors of the official structure -> our grouped head's tensors.

    Args:
        branches: ``{our key: {keypoint index: tensor}}``, one tensor per keypoint branch.
        num_keypoints: K; every key must have branches 0..K-1.
        source: the checkpoint kind, for the messages (``official``, ``SG``).

    Returns:
        ``{our key: tensor}``, the branches concatenated in keypoint order along dim 0 (our grouped
        convolutions and BatchNorms hold branch k's channels at ``k * c:(k + 1) * c``); BatchNorm
        batch counters, one per branch and equal in a trained model, become their max. And the
        problems: keys whose branches do not cover 0..K-1 or disagree in shape.
    """
    joined: dict[str, Tensor] = {}
    problems: list[str] = []
    for ours, parts in branches.items():
        if sorted(parts) != list(range(num_keypoints)):
            problems.append(f"{ours}: {source} branches {sorted(parts)} do not cover keypoints 0..{num_keypoints - 1}")
            continue
        ordered = [parts[k] for k in range(num_keypoints)]
        if ours.endswith("num_batches_tracked"):
            joined[ours] = torch.stack(ordered).max()
        elif len({tuple(t.shape) for t in ordered}) > 1:
            problems.append(f"{ours}: {source} branches disagree in shape {sorted({tuple(t.shape) for t in ordered})}")
        else:
            joined[ours] = torch.cat(ordered, dim=0)
    return joined, problems


def strict_state_dict(converted: Mapping[str, Tensor], target: Mapping[str, Tensor], header: str,
                      unexpected: Sequence[str] = (), problems: Sequence[str] = (),
                      hint: str | None = None) -> dict[str, Tensor]:
    """``converted`` in ``target``'s key order and dtypes, when it fills every key of ``target`` with
    the right shape and nothing is left over.

    Raises:
        CheckpointMismatchError: ``header``, then the missing keys, unexpected keys (``unexpected`` and
            converted keys ``target`` lacks), shape conflicts and ``problems``, eight of each at most,
            and ``hint`` when shapes conflict.
    """
    missing = sorted(set(target) - set(converted))
    unexpected = [*unexpected, *sorted(set(converted) - set(target))]
    shape_conflicts = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
                       for k, v in converted.items() if k in target and v.shape != target[k].shape]
    if missing or unexpected or shape_conflicts or problems:
        lines = [header]
        for title, items in (("missing", missing), ("unexpected", unexpected),
                             ("shape conflicts", shape_conflicts), ("branch problems", problems)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                lines.append(f"  {title}: {shown}")
        if shape_conflicts and hint:
            lines.append(f"  ({hint})")
        raise CheckpointMismatchError("\n".join(lines))
    return OrderedDict((k, converted[k].to(target[k].dtype)) for k in target)
