"""Keypoint specifications: the per-dataset facts (names, flip pairs, OKS sigmas, skeleton).

A spec is plain data loaded from YAML (`configs/datasets/*.yaml`). A user's own COCO-format
dataset needs only a new spec file; nothing in the code is COCO-specific.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATASET_SPEC_DIR = Path(__file__).resolve().parents[2] / "configs" / "datasets"


@dataclass(frozen=True)
class KeypointSpec:
    """Everything the model, targets, decoding and metrics need to know about a skeleton.

    Attributes:
        name: short dataset name (``coco``, ``crowdpose``, ...).
        keypoint_names: K names, in the order of the annotation's ``keypoints`` triplets.
        flip_pairs: (left, right) index pairs swapped by a horizontal flip.
        sigmas: K OKS sigmas (already divided by 10, as pycocotools uses them).
        skeleton: 0-based (a, b) limbs used for drawing.
        rescore_limbs: 0-based (a, b) limbs of the rescoring net's features (vector = kp[a] - kp[b]).
        rescore_torso_limbs: indices into ``rescore_limbs`` whose mean length normalises the features.
        crowd_eval: evaluate with the CrowdPose protocol (AP easy/medium/hard) instead of COCO's.
    """

    name: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    rescore_limbs: tuple[tuple[int, int], ...] = ()
    rescore_torso_limbs: tuple[int, ...] = ()
    crowd_eval: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        k = len(self.keypoint_names)
        if len(self.sigmas) != k:
            raise ValueError(f"spec {self.name!r}: {len(self.sigmas)} sigmas for {k} keypoints")
        for pair in (*self.flip_pairs, *self.skeleton, *self.rescore_limbs):
            if len(pair) != 2 or not all(0 <= i < k for i in pair):
                raise ValueError(f"spec {self.name!r}: keypoint pair {pair} is out of range for K={k}")
        for i in self.rescore_torso_limbs:
            if not 0 <= i < len(self.rescore_limbs):
                raise ValueError(f"spec {self.name!r}: torso limb {i} is not a rescore limb index")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def flip_index(self) -> list[int]:
        """Permutation p with ``flipped[..., i] = original[..., p[i]]`` (left <-> right)."""
        index = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            index[a], index[b] = b, a
        return index

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "KeypointSpec":
        known = {"name", "keypoint_names", "flip_pairs", "sigmas", "skeleton", "rescore_limbs",
                 "rescore_torso_limbs", "crowd_eval", "extra"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{source}: unknown keypoint spec field(s) {sorted(unknown)}; known: {sorted(known)}")
        missing = {"name", "keypoint_names", "flip_pairs", "sigmas"} - set(data)
        if missing:
            raise ValueError(f"{source}: keypoint spec misses field(s) {sorted(missing)}")
        try:
            return cls(
                name=str(data["name"]),
                keypoint_names=tuple(data["keypoint_names"]),
                flip_pairs=tuple(tuple(p) for p in data["flip_pairs"]),
                sigmas=tuple(float(s) for s in data["sigmas"]),
                skeleton=tuple(tuple(p) for p in data.get("skeleton", ())),
                rescore_limbs=tuple(tuple(p) for p in data.get("rescore_limbs", ())),
                rescore_torso_limbs=tuple(data.get("rescore_torso_limbs", ())),
                crowd_eval=bool(data.get("crowd_eval", False)),
                extra=dict(data.get("extra", {})),
            )
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from err


def load_spec(name_or_path: str | Path) -> KeypointSpec:
    """Load a spec by bare name (``coco`` -> ``configs/datasets/coco.yaml``) or by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = DATASET_SPEC_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"keypoint spec {str(name_or_path)!r} not found (looked at {path})")
    with open(path) as f:
        data = yaml.safe_load(f)
    # A dataset config may hold the spec under a `spec:` key next to paths.
    if isinstance(data, dict) and "spec" in data and "keypoint_names" not in data:
        data = data["spec"]
    return KeypointSpec.from_dict(data, source=str(path))
