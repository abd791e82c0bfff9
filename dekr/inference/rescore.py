"""The DEKR rescoring net: predicts a pose's OKS from its shape and keypoint scores, any skeleton.

Features (official layout, ``shared/docs/dekr_recipe.md``): for the spec's ``rescore_limbs``
(a, b), the limb vectors kp[a] - kp[b] (x, y interleaved per limb), then the limb lengths, both
divided by the mean length of the ``rescore_torso_limbs`` (at least 1), then the K keypoint
scores: ``3 * L + K`` inputs (74 for COCO, 59 for CrowdPose). The MLP has the official
parameter names ``l1`` (in -> 256), ``l2`` (256 -> 256), ``l3`` (256 -> 1), so official
``final_rescore_*.pth`` files load strictly.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dekr.data.spec import KeypointSpec

log = logging.getLogger(__name__)


def _limbs(spec: KeypointSpec) -> tuple[list[int], list[int], list[int]]:
    if not spec.rescore_limbs:
        raise ValueError(f"spec {spec.name!r} defines no rescore_limbs: add them to its YAML to use rescoring")
    torso = list(spec.rescore_torso_limbs) or list(range(len(spec.rescore_limbs)))
    a = [p[0] for p in spec.rescore_limbs]
    b = [p[1] for p in spec.rescore_limbs]
    return a, b, torso


def num_features(spec: KeypointSpec) -> int:
    return 3 * len(_limbs(spec)[0]) + spec.num_keypoints


def rescore_features(keypoints: Tensor, spec: KeypointSpec) -> Tensor:
    """(P, K, 3) poses (x, y, score), any frame -> (P, 3L + K) features."""
    a, b, torso = _limbs(spec)
    xy = keypoints[..., :2].float()
    limb = xy[:, a] - xy[:, b]  # (P, L, 2)
    length = limb.norm(dim=-1)  # (P, L)
    norm = length[:, torso].mean(dim=1).clamp(min=1.0)[:, None]  # (P, 1)
    return torch.cat([(limb / norm[..., None]).flatten(1), length / norm, keypoints[..., 2].float()], dim=1)


class RescoreNet(nn.Module):
    """MLP features -> predicted OKS, with the official layer names."""

    def __init__(self, in_features: int, hidden: int = 256) -> None:
        super().__init__()
        self.l1 = nn.Linear(in_features, hidden)
        self.l2 = nn.Linear(hidden, hidden)
        self.l3 = nn.Linear(hidden, 1)
        self.relu = nn.ReLU()

    def forward(self, features: Tensor) -> Tensor:
        """(P, F) -> (P,)."""
        return self.l3(self.relu(self.l2(self.relu(self.l1(features)))))[:, 0]


def load_rescore_net(path: str | Path, spec: KeypointSpec | None = None, map_location: Any = "cpu") -> RescoreNet:
    """Load our checkpoint (``{"state_dict", "spec_name", ...}``) or an official bare state dict.

    Official files are legacy torch pickles of a plain state dict; they are read with
    ``weights_only=True`` (tensors only).
    """
    obj = torch.load(path, map_location=map_location, weights_only=True)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing = {"l1.weight", "l1.bias", "l2.weight", "l2.bias", "l3.weight", "l3.bias"} - set(state)
    if missing:
        raise ValueError(f"{path}: not a rescoring-net checkpoint (missing {sorted(missing)})")
    in_features, hidden = state["l1.weight"].shape[1], state["l1.weight"].shape[0]
    if spec is not None and in_features != num_features(spec):
        raise ValueError(f"{path}: rescoring net takes {in_features} features but spec {spec.name!r} gives "
                         f"{num_features(spec)} ({len(spec.rescore_limbs)} limbs, {spec.num_keypoints} keypoints)")
    net = RescoreNet(in_features, hidden)
    net.load_state_dict(state, strict=True)
    return net.eval()


def save_rescore_net(net: RescoreNet, path: str | Path, spec: KeypointSpec, **meta: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "spec_name": spec.name, **meta}, path)
    return path


@torch.no_grad()
def rescore(net: RescoreNet, keypoints: Tensor, scores: Tensor, spec: KeypointSpec, rule: str = "official") -> Tensor:
    """Final pose scores from the rescoring net.

    ``official``: predicted OKS (NaN -> 0) times the mean keypoint score ``scores``;
    ``sigmoid`` (SuperGradients): sigmoid of the net's output, which replaces the score.
    keypoints (P, K, 3) in original image coordinates, scores (P,) -> (P,).
    """
    if keypoints.shape[0] == 0:
        return scores
    param = next(net.parameters())
    pred = net(rescore_features(keypoints, spec).to(param.device, param.dtype)).to(scores)
    if rule == "sigmoid":
        return torch.sigmoid(pred)
    return torch.nan_to_num(pred, nan=0.0) * scores
