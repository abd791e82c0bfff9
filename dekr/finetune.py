"""Fine-tuning: initialise a DEKR network from a checkpoint trained on another keypoint set.

Every tensor whose name and shape match is copied. The keypoint-indexed tensors of the heads
(heatmap rows: K keypoints then the center; the disentangled offset branches: K groups of
channels; the final 2K offset channels) are remapped by keypoint *name*: CrowdPose's
``left_shoulder`` gets COCO's ``left_shoulder`` branch, a keypoint the source does not have is
freshly initialised. Everything else keeps the target's fresh initialisation. The returned
:class:`TransferReport` says which is which.

Sources: anything :func:`dekr.checkpoint.load_checkpoint` reads (ours ``.ckpt``, whose spec is
in its hyper-parameters; official, MMPose or SuperGradients ``.pth`` and zoo names, whose
architecture is read off the tensors and spec taken from ``source_spec`` or from K: 17 ->
``coco``, 14 -> ``crowdpose``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from dekr.checkpoint import read_weights
from dekr.data.spec import KeypointSpec, load_spec
from dekr.models.dekr import DEKRNet

log = logging.getLogger(__name__)


@dataclass
class TransferReport:
    """What :func:`transfer_state` did, tensor by tensor."""

    source: str
    loaded: list[str] = field(default_factory=list)
    remapped: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    matched_keypoints: list[str] = field(default_factory=list)
    new_keypoints: list[str] = field(default_factory=list)

    def format(self, max_names: int = 6) -> str:
        def names(items: list[str]) -> str:
            shown = ", ".join(items[:max_names])
            return shown + (f", ... ({len(items)} in all)" if len(items) > max_names else "")

        lines = [f"initialised from {self.source}:",
                 f"  loaded as is:           {len(self.loaded)} tensors",
                 f"  remapped by keypoint:   {len(self.remapped)} tensors" + (
                     f" (rows of the keypoints taken from the source copied, of the new ones fresh: "
                     f"{names(self.remapped)})" if self.remapped else ""),
                 f"  freshly initialised:    {len(self.fresh)} tensors" + (
                     f" ({names(self.fresh)})" if self.fresh else ""),
                 f"  unused from the source: {len(self.unused)} tensors" + (
                     f" ({names(self.unused)})" if self.unused else "")]
        if self.matched_keypoints or self.new_keypoints:
            lines.append(f"  keypoints taken from the source ({len(self.matched_keypoints)}): "
                         f"{', '.join(self.matched_keypoints) or '-'}")
            lines.append(f"  new keypoints, fresh ({len(self.new_keypoints)}): {', '.join(self.new_keypoints) or '-'}")
        return "\n".join(lines)


def _keypoint_layout(key: str, shape: torch.Size, num_keypoints: int, disentangled: bool) -> tuple[int, int] | None:
    """(per-keypoint rows, extra trailing rows) of a keypoint-indexed tensor along dim 0, else None.

    Heatmap final layer: K rows + 1 center row. Offset head (disentangled): K equal groups.
    Offset final layer (shared or not): 2 rows (x, y) per keypoint.
    """
    if not shape:
        return None
    if key.startswith("heatmap_head.final."):
        return (1, 1) if shape[0] == num_keypoints + 1 else None
    if key.startswith("offset_head.final."):
        return (2, 0) if shape[0] == 2 * num_keypoints else None
    if disentangled and key.startswith(("offset_head.transition.", "offset_head.blocks.")):
        if shape[0] % num_keypoints == 0:
            return shape[0] // num_keypoints, 0
    return None


def transfer_state(net: DEKRNet, source: dict[str, Tensor], source_names: tuple[str, ...] | None,
                   target_names: tuple[str, ...] | None, source_disentangled: bool = True,
                   description: str = "<state dict>") -> TransferReport:
    """Copy ``source`` (our key names) into ``net``: equal shapes as is, keypoint tensors by name.

    ``source_names`` / ``target_names``: the keypoint names of both sides; ``None`` on the
    source side (unknown spec) remaps by index when K is equal, and loads nothing keypoint-wise
    otherwise.
    """
    target = net.state_dict()
    k_dst = net.config.num_keypoints
    k_src = len(source_names) if source_names is not None else k_dst
    report = TransferReport(source=description)
    if target_names is None or source_names is None:
        mapping = {j: j for j in range(k_dst)} if source_names is None else {}
    else:
        index = {name: i for i, name in enumerate(source_names)}
        mapping = {j: index[name] for j, name in enumerate(target_names) if name in index}
    if target_names is not None:
        report.matched_keypoints = [target_names[j] for j in sorted(mapping)]
        report.new_keypoints = [n for j, n in enumerate(target_names) if j not in mapping]
    new_state: dict[str, Tensor] = {}
    for key, dst in target.items():
        src = source.get(key)
        layout_dst = _keypoint_layout(key, dst.shape, k_dst, net.config.disentangled)
        layout_src = None if src is None else _keypoint_layout(key, src.shape, k_src, source_disentangled)
        if layout_dst is not None and layout_src is not None and layout_dst == layout_src \
                and src.shape[1:] == dst.shape[1:] and (src.shape != dst.shape or mapping != {j: j for j in range(k_dst)}):
            per, extra = layout_dst
            out = dst.clone()
            for j, i in mapping.items():
                out[j * per:(j + 1) * per] = src[i * per:(i + 1) * per]
            if extra:  # the center row(s) come after the keypoints on both sides
                out[k_dst * per:] = src[k_src * per:]
            new_state[key] = out
            report.remapped.append(key)
        elif src is not None and src.shape == dst.shape:
            new_state[key] = src.to(dst.dtype)
            report.loaded.append(key)
        else:
            report.fresh.append(key)
    report.unused = sorted(set(source) - set(new_state))
    net.load_state_dict({**target, **new_state})
    return report


def load_source(path: str | Path, source_spec: str | None = None
                ) -> tuple[dict[str, Tensor], tuple[str, ...] | None, bool]:
    """Read a fine-tuning source through the one checkpoint loader (:func:`dekr.checkpoint.read_weights`:
    ours, official, MMPose, SuperGradients or a zoo name): (state dict in our key names, its keypoint
    names, whether its offset head is disentangled)."""
    converted, names = read_weights(path)
    if source_spec is not None:
        names = load_spec(source_spec).keypoint_names
    if names is not None and len(names) != converted.net_config.num_keypoints:
        raise ValueError(f"{path}: {converted.net_config.num_keypoints} keypoints, but source spec "
                         f"{source_spec!r} has {len(names)}")
    return converted.state_dict, names, converted.net_config.disentangled


def transfer_from_file(net: DEKRNet, path: str | Path, target_spec: KeypointSpec | str,
                       source_spec: str | None = None) -> TransferReport:
    """Initialise ``net`` from one of our ``.ckpt`` files or an official ``.pth`` (see module doc)."""
    spec = target_spec if isinstance(target_spec, KeypointSpec) else load_spec(target_spec)
    state, names, disentangled = load_source(path, source_spec)
    return transfer_state(net, state, names, spec.keypoint_names, disentangled, description=str(path))


__all__ = ["TransferReport", "load_source", "transfer_from_file", "transfer_state"]

