"""Keypoint specifications: the per-dataset facts (names, flip pairs, OKS sigmas, skeleton).

A spec is plain data loaded from YAML. The shipped specs (``coco``, ``crowdpose``) are package data
(`dekr/data/specs/*.yaml`), so they load from an installed wheel as from a checkout. A user's own
COCO-format dataset needs only a new spec file, passed by path; nothing in the code is COCO-specific.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dekr.dataclass_config import dataclass_from_dict

#: Package folder of the shipped specs (``dekr/data/specs/<name>.yaml``), read via importlib.resources.
SPEC_PACKAGE, SPEC_FOLDER = "dekr.data", "specs"


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
        category_ids: the annotation ``category_id`` values this spec covers (COCO and CrowdPose:
            the person, 1; AP-10K: its 54 species). Datasets keep only these annotations; they
            are evaluated pooled, under :attr:`pooled_category_id`.
    """

    name: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    rescore_limbs: tuple[tuple[int, int], ...] = ()
    rescore_torso_limbs: tuple[int, ...] = ()
    crowd_eval: bool = False
    category_ids: tuple[int, ...] = (1,)
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
        if not self.category_ids or len(set(self.category_ids)) != len(self.category_ids):
            raise ValueError(f"spec {self.name!r}: category_ids must be distinct and non-empty, "
                             f"got {list(self.category_ids)}")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def pooled_category_id(self) -> int:
        """The category id the spec's categories are evaluated under and predictions are written with.

        DEKR is class-agnostic (one centre heatmap, no class score): the categories are pooled under
        the first id, a category the ground truth has (see :mod:`dekr.metrics.oks_ap`).
        """
        return self.category_ids[0]

    @property
    def flip_index(self) -> list[int]:
        """Permutation p with ``flipped[..., i] = original[..., p[i]]`` (left <-> right)."""
        index = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            index[a], index[b] = b, a
        return index

    def to_dict(self) -> dict[str, Any]:
        """The spec's contents as plain lists and values (what :meth:`from_dict` reads back): what a
        checkpoint and an ONNX export carry, so that they load without the spec file."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "extra"}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> KeypointSpec:
        missing = {"name", "keypoint_names", "flip_pairs", "sigmas"} - set(data)
        if missing:
            raise ValueError(f"{source}: keypoint spec misses field(s) {sorted(missing)}")
        # YAML gives lists; the frozen spec holds tuples (hashable, compared by value).
        pairs = ("flip_pairs", "skeleton", "rescore_limbs")
        values = {key: tuple(tuple(p) for p in value) if key in pairs
                  else tuple(value) if isinstance(value, list) else value
                  for key, value in data.items()}
        return dataclass_from_dict(cls, values, "keypoint spec", source=source)


def shipped_specs() -> list[str]:
    """Names of the specs that ship with the package (``coco``, ``crowdpose``, ...)."""
    folder = resources.files(SPEC_PACKAGE) / SPEC_FOLDER
    return sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))


def load_spec(name_or_path: str | Path | dict[str, Any] | KeypointSpec) -> KeypointSpec:
    """Load a spec by bare name (``coco`` -> the package's ``dekr/data/specs/coco.yaml``), by
    path to a YAML file (a spec, or a dataset config holding one under ``spec:``), or from its
    contents (a dict of :meth:`KeypointSpec.to_dict`, e.g. the one a checkpoint carries)."""
    if isinstance(name_or_path, KeypointSpec):
        return name_or_path
    if isinstance(name_or_path, dict):
        return KeypointSpec.from_dict(name_or_path, source=f"spec {name_or_path.get('name', '?')!r} (contents)")
    path = Path(name_or_path)
    if path.is_file():
        text, source = path.read_text(), str(path)
    elif not path.suffix and path.name == str(name_or_path):  # a bare name: a shipped spec
        resource = resources.files(SPEC_PACKAGE) / SPEC_FOLDER / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise FileNotFoundError(f"keypoint spec {str(name_or_path)!r} is neither a file nor a shipped spec "
                                    f"(shipped: {shipped_specs()}); pass the path of your spec YAML")
        text, source = resource.read_text(), f"{SPEC_PACKAGE}/{SPEC_FOLDER}/{name_or_path}.yaml"
    else:
        raise FileNotFoundError(f"keypoint spec file {str(name_or_path)!r} not found (shipped specs, by bare "
                                f"name: {shipped_specs()})")
    data = yaml.safe_load(text)
    # A dataset config may hold the spec under a `spec:` key next to paths.
    if isinstance(data, dict) and "spec" in data and "keypoint_names" not in data:
        data = data["spec"]
    return KeypointSpec.from_dict(data, source=source)


def _plain(value: Any) -> Any:
    """Tuples (of tuples) -> lists, as YAML and JSON write them."""
    return [_plain(v) for v in value] if isinstance(value, tuple) else value
