"""The DEKR rescoring net: predicts a pose's OKS from its shape and keypoint scores, any skeleton.

Features (the official layout): for the spec's ``rescore_limbs``
(a, b), the limb vectors kp[a] - kp[b] (x, y interleaved per limb), then the limb lengths, both
divided by the mean length of the ``rescore_torso_limbs`` (at least 1), then the K keypoint
scores: ``3 * L + K`` inputs (74 for COCO, 59 for CrowdPose). The MLP has the official
parameter names ``l1`` (in -> 256), ``l2`` (256 -> 256), ``l3`` (256 -> 1), so official
``final_rescore_*.pth`` files load strictly.

A rescoring net fits one skeleton: its features are that spec's limbs and keypoints, in that order.
Our files record the skeleton they were trained for (spec name, keypoint names, rescoring limbs);
:func:`rescore_net_from_state` refuses a net for another spec (a recorded skeleton that differs, or
an input size that does not fit, e.g. the official COCO net, 74 inputs, for AP-10K's 68) with
:class:`dekr.checkpoint.ModelLoadError` naming the file and both specs.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dekr.checkpoint import ModelLoadError
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


#: Parameter names of a rescoring net (official and ours).
RESCORE_KEYS = ("l1.weight", "l1.bias", "l2.weight", "l2.bias", "l3.weight", "l3.bias")


def trained_skeleton(spec: KeypointSpec) -> dict[str, Any]:
    """What a rescoring-net file records of the spec it was trained for (checked when it is loaded)."""
    return {"spec_name": spec.name, "keypoint_names": list(spec.keypoint_names),
            "rescore_limbs": [list(limb) for limb in spec.rescore_limbs]}


def _describe(spec: KeypointSpec) -> str:
    return (f"spec {spec.name!r} ({spec.num_keypoints} keypoints, {len(spec.rescore_limbs)} rescoring limbs: "
            f"{num_features(spec)} features)")


def rescore_net_from_state(state: dict[str, Tensor], spec: KeypointSpec, where: str,
                           trained_for: dict[str, Any] | None = None) -> RescoreNet:
    """A rescoring net holding ``state``, checked to fit ``spec``.

    Args:
        state: the net's tensors (``l1``, ``l2``, ``l3``; a ``module.`` prefix is dropped).
        spec: the keypoint spec of the model it will rescore.
        where: the file (or checkpoint) it comes from, for the errors.
        trained_for: the skeleton it was trained for (:func:`trained_skeleton`), when recorded.

    Raises:
        ModelLoadError: not a rescoring net; ``spec`` has no rescoring limbs; or the net was trained
            for another skeleton (recorded, or seen from its input size).
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing = sorted(set(RESCORE_KEYS) - set(state))
    if missing:
        raise ModelLoadError(f"{where}: not a rescoring-net checkpoint (missing {missing})")
    if not spec.rescore_limbs:
        raise ModelLoadError(f"rescoring net {where}: spec {spec.name!r} defines no rescore_limbs; add them to "
                             "its YAML (scripts/make_spec.py derives them from the skeleton) to use rescoring")
    in_features, hidden = state["l1.weight"].shape[1], state["l1.weight"].shape[0]
    retrain = (f"train one for this skeleton with scripts/train_rescore.py --spec <{spec.name} spec>, or "
               "turn rescoring off")
    if trained_for and "keypoint_names" in trained_for:
        names = tuple(trained_for["keypoint_names"])
        limbs = tuple(tuple(limb) for limb in trained_for.get("rescore_limbs", ()))
        if names != spec.keypoint_names or limbs != spec.rescore_limbs:
            raise ModelLoadError(
                f"rescoring net {where} was trained for spec {trained_for.get('spec_name')!r} ({len(names)} "
                f"keypoints: {', '.join(names[:4])}, ...; {len(limbs)} limbs), not for the model's "
                f"{_describe(spec)}: {retrain}")
    if in_features != num_features(spec):
        raise ModelLoadError(
            f"rescoring net {where} takes {in_features} features, but the model's spec {spec.name!r} gives "
            f"{num_features(spec)} ({spec.num_keypoints} keypoints, {len(spec.rescore_limbs)} rescoring limbs; "
            f"the official COCO net takes 74, CrowdPose's 59): it was trained for another skeleton; {retrain}")
    net = RescoreNet(in_features, hidden)
    net.load_state_dict({k: state[k] for k in RESCORE_KEYS}, strict=True)
    return net.eval()


def load_rescore_net(path: str | Path, spec: KeypointSpec, map_location: Any = "cpu") -> RescoreNet:
    """Load our rescoring-net file (``{"state_dict", "spec_name", "keypoint_names", "rescore_limbs",
    ...}``, :func:`save_rescore_net`) or an official bare state dict, checked to fit ``spec``
    (:func:`rescore_net_from_state`).

    Official files are legacy torch pickles of a plain state dict; they are read with
    ``weights_only=True`` (tensors only).
    """
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ModelLoadError(f"rescoring net {path} does not exist") from None
    except Exception as err:  # truncated zip, a pickle with objects, not a torch file
        raise ModelLoadError(f"rescoring net {path} is not a readable PyTorch file: "
                             f"{type(err).__name__}: {str(err)[:300]}") from err
    if not isinstance(obj, dict):
        raise ModelLoadError(f"{path}: not a rescoring-net checkpoint (a {type(obj).__name__})")
    ours = isinstance(obj.get("state_dict"), dict)
    return rescore_net_from_state(obj["state_dict"] if ours else obj, spec, str(path), obj if ours else None)


def save_rescore_net(net: RescoreNet, path: str | Path, spec: KeypointSpec, **meta: Any) -> Path:
    """Write ``net`` with the skeleton it was trained for (:func:`trained_skeleton`) and ``meta``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), **trained_skeleton(spec), **meta}, path)
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
