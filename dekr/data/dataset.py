"""One COCO-format keypoint dataset for COCO, CrowdPose and users' own data, driven by a KeypointSpec.

The instances ("persons" below) are the annotations whose ``category_id`` is one of the spec's
``category_ids`` (COCO: the person; AP-10K: its 54 species); annotations of other categories are
ignored, and a file with none of them is an error.

Training semantics (shared/docs/dekr_recipe.md):

* images with at least one annotation (crowd regions included);
* persons = annotations that are not crowd regions or that have keypoints; a person's centre is
  the mean of its labelled keypoints; persons with ``area < min_center_area`` (32^2) get no centre
  (v = 0) but keep their keypoints. Datasets without an ``area`` field (CrowdPose) have no
  small-person filter, as in the official code;
* an ignore mask (loss weight 0) from ``iscrowd`` regions and persons with ``num_keypoints == 0``:
  their segmentation (polygons or RLE, via pycocotools) or, where an annotation has no
  segmentation (CrowdPose), its box;
* the offset weight's person area: the squared diagonal of the labelled keypoints' extent, in
  input pixels (floored at ``min_center_area`` image pixels, so a person with one labelled
  keypoint gets no huge weight).

``official_quirks=True`` reproduces the official code instead: a person with no labelled keypoint
(and area >= 32^2) gets a centre at image (0, 0); the "area" is taken over all K+1 keypoint
slots including the unlabelled (0, 0) ones and the still-zero centre; annotations without
segmentation give no ignore region (official CrowdPose: a mask of ones); the flip is applied after
the warp (see ``transforms.DEKRAffineTransform``); and the target quirks of ``targets.py``.

Augmentation randomness: every random draw of a training sample (the affine warp, the flip and
the albumentations pixel transforms) comes from generators derived from (``seed``, epoch, index)
alone (:mod:`dekr.data.sampling`); the training sampler sends the epoch along with each index.

Validation keeps every image (with or without persons) and returns the original RGB image with
its id, file name and size; the evaluation code does the test-time resizing.

Bad input never yields a silently wrong target: a missing, unreadable or truncated image, an
image whose size differs from the json, an annotation with the wrong number of keypoint values,
NaN or infinite values or negative visibility flags raise :class:`DataError` naming the file and
the annotation id; with ``on_bad_sample="skip"`` the image is dropped instead and a warning is
logged. Labelled keypoints outside the image (negative, or beyond the width or height) are not
faults: as in the official code they are kept, and the augmentation decides what lands inside
the map.
"""
from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from dekr.data.normalize import normalize_image
from dekr.data.sampling import SampleKey, sample_seed_sequence
from dekr.data.spec import KeypointSpec
from dekr.data.targets import TargetConfig, build_targets
from dekr.data.transforms import (AffineParams, AugmentationConfig, DEKRAffineTransform,
                                  build_pixel_transforms)

log = logging.getLogger(__name__)

_IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION  # COCO labels live in the raw pixel frame


class DataError(ValueError):
    """Bad dataset input (file, image or annotation); the message names the file and annotation id."""


def load_coco_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"annotation file {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise DataError(f"annotation file {path}: expected a COCO-format object, got {type(data).__name__}")
    return data


def read_image_rgb(path: str | Path, check_truncated: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 RGB, EXIF orientation ignored (as the official code); DataError on bad files."""
    path = str(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except OSError as err:
        raise DataError(f"cannot read image file {path}: {err}") from err
    if data.size == 0:
        raise DataError(f"image file is empty: {path}")
    if check_truncated and data.size > 2 and data[0] == 0xFF and data[1] == 0xD8:
        # OpenCV may decode a truncated JPEG with a grey bottom and only a stderr warning: check the
        # end-of-image marker (allowing some trailing padding after it).
        if b"\xff\xd9" not in data[-4096:].tobytes():
            raise DataError(f"image file {path} is a truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(data, _IMREAD_FLAGS)
    if image is None:
        raise DataError(f"cannot decode image file {path} (unreadable or not an image)")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _num_labelled(kpts: np.ndarray) -> int:
    return int(np.count_nonzero(kpts[:, 2] > 0))


def person_area(kpts: np.ndarray, official: bool, floor: float) -> float:
    """Offset-weight area of one person in image pixels^2 (before the augmentation's scale).

    ``kpts``: (K, 3) image-frame keypoints. Official: (max - min)^2 of x plus of y over the K
    slots and a zero centre slot. Default: the same over the labelled keypoints, at least ``floor``.
    """
    if official:
        xs = np.append(kpts[:, 0], 0.0)
        ys = np.append(kpts[:, 1], 0.0)
        return float((xs.max() - xs.min()) ** 2 + (ys.max() - ys.min()) ** 2)
    lab = kpts[kpts[:, 2] > 0]
    if len(lab) == 0:
        return float(floor)
    w = lab[:, 0].max() - lab[:, 0].min()
    h = lab[:, 1].max() - lab[:, 1].min()
    return float(max(w * w + h * h, floor))


class CocoKeypointDataset(Dataset):
    """COCO-format keypoint dataset (train: augmented samples with targets; val: original images).

    Args:
        annotations: path of a COCO-format json, or the parsed dict.
        image_dir: folder that ``file_name`` is relative to (unused with ``image_loader``).
        spec: the keypoint spec (K, flip pairs, ...).
        train: training samples (augment + targets) or validation samples (original image).
        input_size, output_size: S and R (R defaults to S / 4).
        augmentation, targets: see ``transforms.AugmentationConfig`` and ``targets.TargetConfig``.
        official_quirks: reproduce the official code's quirks (module docstring).
        min_center_area: persons with a smaller ``area`` get no centre (official 32^2).
        gpu_targets: training samples carry the warped keypoints, areas and mask (and a uint8
            image) instead of target maps; ``build_targets_torch`` makes the maps on the device.
        on_bad_sample: ``error`` (raise DataError) or ``skip`` (log a warning, drop the image).
        check_truncated: detect truncated JPEGs (costs nothing measurable).
        image_loader: optional ``f(image_info) -> RGB uint8`` replacing file reads (synthetic data).
        source: what error messages call the annotations when they are given parsed (their file).
    """

    def __init__(self, annotations: str | Path | dict[str, Any], image_dir: str | Path | None,
                 spec: KeypointSpec, *, train: bool, input_size: int = 512, output_size: int | None = None,
                 augmentation: AugmentationConfig | None = None, targets: TargetConfig | None = None,
                 official_quirks: bool = False, min_center_area: float = 32.0 ** 2, gpu_targets: bool = False,
                 on_bad_sample: str = "error", check_truncated: bool = True,
                 image_loader: Callable[[dict[str, Any]], np.ndarray] | None = None,
                 source: str | None = None) -> None:
        if on_bad_sample not in ("error", "skip"):
            raise ValueError(f"on_bad_sample must be 'error' or 'skip', got {on_bad_sample!r}")
        self.spec = spec
        self.train = train
        self.input_size = int(input_size)
        self.output_size = int(output_size) if output_size else self.input_size // 4
        self.augmentation = augmentation or AugmentationConfig()
        self.target_config = targets or TargetConfig(official_quirks=official_quirks)
        self.official_quirks = official_quirks
        self.min_center_area = float(min_center_area)
        self.gpu_targets = gpu_targets
        self.on_bad_sample = on_bad_sample
        self.check_truncated = check_truncated
        self.image_loader = image_loader
        self.image_dir = Path(image_dir) if image_dir is not None else None
        if isinstance(annotations, dict):
            self.source = source or "<in-memory annotations>"
            coco = annotations
        else:
            self.source = str(annotations)
            coco = load_coco_json(annotations)
        self.transform = DEKRAffineTransform(self.input_size, self.output_size, spec.flip_index,
                                             self.augmentation, official_flip=official_quirks,
                                             official_visibility=official_quirks)
        self.pixel_transforms = build_pixel_transforms(self.augmentation.pixel_transforms) if train else None
        self.seed = 0  # base seed of the augmentations
        self.epoch = 0  # the epoch of plain integer indices (the training sampler sends SampleKeys)
        self.skipped: list[str] = []
        self._rle_cache: dict[int, dict[str, Any]] = {}
        self._index(coco)

    # ------------------------------------------------------------------ parsing and validation
    def _bad(self, message: str) -> None:
        if self.on_bad_sample == "error":
            raise DataError(message)
        log.warning("skipping: %s", message)
        self.skipped.append(message)

    def _index(self, coco: dict[str, Any]) -> None:
        k = self.spec.num_keypoints
        images = coco.get("images")
        if not isinstance(images, list):
            raise DataError(f"{self.source}: no 'images' list")
        annotations = coco.get("annotations")
        if annotations is None:
            annotations = []
        if not isinstance(annotations, list):
            raise DataError(f"{self.source}: 'annotations' must be a list")
        wanted = set(self.spec.category_ids)
        for c in coco.get("categories") or []:
            if isinstance(c, dict) and c.get("id") in wanted and "keypoints" in c and len(c["keypoints"]) != k:
                raise DataError(f"{self.source}: category {c.get('name', c.get('id'))!r} has "
                                f"{len(c['keypoints'])} keypoints but spec {self.spec.name!r} has {k}")
        # Only the spec's categories are instances of its skeleton; a file with none of them (a spec
        # made for another file, or one without category_ids) must not train on empty targets.
        if annotations and not any(ann.get("category_id") in wanted for ann in annotations):
            found = sorted({ann.get("category_id") for ann in annotations}, key=str)
            raise DataError(f"{self.source}: no annotation has a category of spec {self.spec.name!r} "
                            f"(category_ids {sorted(wanted)}); the annotations have category_id {found}: "
                            f"set the spec's category_ids (scripts/make_spec.py writes them)")

        image_by_id: dict[int, dict[str, Any]] = {}
        for info in images:
            for field in ("id", "file_name", "height", "width"):
                if field not in info:
                    raise DataError(f"{self.source}: image entry {info.get('id', info)!r} misses {field!r}")
            image_by_id[int(info["id"])] = info

        anns_by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        bad_images: set[int] = set()
        for ann in annotations:
            if ann.get("category_id") not in wanted:
                continue
            image_id = ann.get("image_id")
            if image_id not in image_by_id:
                self._bad(f"{self.source}: annotation id {ann.get('id')} refers to unknown "
                          f"image id {image_id}")
                continue
            problem = self._check_annotation(ann, image_by_id[image_id], k)
            if problem:
                self._bad(problem)
                bad_images.add(image_id)
                continue
            anns_by_image[image_id].append(ann)

        ids, file_names, sizes, starts = [], [], [], [0]
        joints_all, area_all, ignore = [], [], {}
        for info in images:
            image_id = int(info["id"])
            if image_id in bad_images:
                continue
            anns = anns_by_image.get(image_id, [])
            if self.train and not anns:
                continue
            h, w = int(info["height"]), int(info["width"])
            if self.train:
                joints, areas, ignore_regions = self._persons(anns)
                if ignore_regions:
                    ignore[len(ids)] = ignore_regions
                joints_all.append(joints)
                area_all.append(areas)
                starts.append(starts[-1] + len(joints))
            ids.append(image_id)
            file_names.append(str(info["file_name"]))
            sizes.append((h, w))
        if self.train and not ids:
            raise DataError(f"{self.source}: no image with annotations to train on "
                            f"({len(images)} images, {len(annotations)} annotations)")
        self.image_ids = np.asarray(ids, dtype=np.int64)
        self.file_names = np.asarray(file_names, dtype=str) if file_names else np.zeros(0, dtype="<U1")
        self.sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        self._image_info = {int(i): image_by_id[int(i)] for i in ids} if self.image_loader else None
        self.kept_image_ids = set(ids)
        if self.train:
            self._starts = np.asarray(starts, dtype=np.int64)
            self._joints = (np.concatenate(joints_all) if joints_all
                            else np.zeros((0, k + 1, 3))).astype(np.float64)
            self._areas = np.concatenate(area_all) if area_all else np.zeros(0)
            self._ignore = ignore

    def _check_annotation(self, ann: dict[str, Any], info: dict[str, Any], k: int) -> str | None:
        where = f"{self.source}: annotation id {ann.get('id')} (image {info['file_name']})"
        kp = ann.get("keypoints")
        if kp is None:
            return f"{where} has no 'keypoints'"
        try:
            arr = np.asarray(kp, dtype=np.float64)
        except (TypeError, ValueError):
            return f"{where}: keypoints are not numbers"
        if arr.ndim != 1 or arr.size != 3 * k:
            return (f"{where} has {arr.size} keypoint values, expected {3 * k} "
                    f"({k} keypoints of spec {self.spec.name!r} as x, y, v)")
        arr = arr.reshape(k, 3)
        if not np.all(np.isfinite(arr)):
            return f"{where} has NaN or infinite keypoint values"
        if np.any(arr[:, 2] < 0):
            return f"{where} has negative keypoint visibility flags"
        # Labelled keypoints a few pixels outside the image (x = -1 in 8 CrowdPose val
        # annotations, x = width in one) are real labels: the official code keeps them, and so do
        # we; the augmentation and the target builder decide what lies inside the output map.
        if "area" in ann and not (np.isfinite(ann["area"]) and ann["area"] >= 0):
            return f"{where} has an invalid area {ann['area']!r}"
        bbox = ann.get("bbox")
        if bbox is not None and (len(bbox) != 4
                                 or not np.all(np.isfinite(np.asarray(bbox, dtype=np.float64)))):
            return f"{where} has an invalid bbox {bbox!r}"
        return None

    def _persons(self, anns: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, list[Any]]:
        """Joints (P, K+1, 3) in the image frame (centre last), offset areas (P,), ignore regions."""
        k = self.spec.num_keypoints
        quirks = self.official_quirks
        ignore_regions = []
        joints, areas = [], []
        for ann in anns:
            kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(k, 3)
            num_kp = int(ann["num_keypoints"]) if "num_keypoints" in ann else _num_labelled(kpts)
            crowd = bool(ann.get("iscrowd", 0))
            if crowd or num_kp == 0:
                seg = ann.get("segmentation")
                if seg:
                    ignore_regions.append(seg)
                elif not quirks and ann.get("bbox") is not None:
                    x, y, w, h = (float(c) for c in ann["bbox"])
                    ignore_regions.append([[x, y, x + w, y, x + w, y + h, x, y + h]])
            if crowd and num_kp == 0:
                continue  # the official filter: persons = not crowd, or with keypoints
            n_lab = _num_labelled(kpts)
            if n_lab == 0 and not quirks:
                continue  # nothing to learn from it; its region is in the ignore mask
            person = np.zeros((k + 1, 3))
            person[:k] = kpts
            small = "area" in ann and float(ann["area"]) < self.min_center_area
            if not small:
                if n_lab > 0:
                    if quirks:  # official: sum over all slots (unlabelled are usually (0, 0))
                        person[k, :2] = kpts[:, :2].sum(0) / n_lab
                    else:
                        person[k, :2] = kpts[kpts[:, 2] > 0, :2].mean(0)
                person[k, 2] = 1.0
            joints.append(person)
            areas.append(person_area(kpts, quirks, self.min_center_area))
        joints_arr = np.asarray(joints, dtype=np.float64).reshape(-1, k + 1, 3)
        return joints_arr, np.asarray(areas, dtype=np.float64), ignore_regions

    # ------------------------------------------------------------------ sample access
    def __len__(self) -> int:
        return len(self.image_ids)

    def reseed(self, seed: int) -> None:
        """Set the base seed of the augmentations (the datamodule passes ``seed_everything``'s)."""
        self.seed = int(seed)

    def sample_rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The affine draw's generator for sample ``index`` at ``epoch`` (default ``self.epoch``).

        A pure function of (seed, epoch, index): no state carried from sample to sample, so the
        augmentation does not depend on the worker, the number of workers or on a resume.
        """
        epoch = self.epoch if epoch is None else epoch
        return np.random.default_rng(sample_seed_sequence(self.seed, epoch, index, stream=0))

    def _seed_pixel_transforms(self, index: int, epoch: int) -> None:
        # albumentations 2.x draws only from the Compose's own numpy and Python generators (never
        # the global ones): give them this sample's streams.
        np_rng = np.random.default_rng(sample_seed_sequence(self.seed, epoch, index, stream=1))
        py_seed = sample_seed_sequence(self.seed, epoch, index, stream=2).generate_state(2, np.uint64)
        self.pixel_transforms.set_random_state(np_rng, random.Random(int(py_seed[0]) << 64 | int(py_seed[1])))

    def image_path(self, index: int) -> Path:
        return (self.image_dir or Path(".")) / self.file_names[index]

    def load_image(self, index: int) -> np.ndarray:
        """Original RGB image of sample ``index``; DataError if unreadable or of the wrong size."""
        if self.image_loader is not None:
            image = self.image_loader(self._image_info[int(self.image_ids[index])])
            where = f"image id {int(self.image_ids[index])}"
        else:
            path = self.image_path(index)
            image = read_image_rgb(path, self.check_truncated)
            where = str(path)
        h, w = (int(s) for s in self.sizes[index])
        if image.shape[:2] != (h, w):
            raise DataError(f"{where} (image id {int(self.image_ids[index])}) is "
                            f"{image.shape[1]}x{image.shape[0]} "
                            f"but {self.source} says {w}x{h}")
        return image

    def persons(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(P, K+1, 3) image-frame joints (centre last) and (P,) offset areas of a training sample."""
        a, b = self._starts[index], self._starts[index + 1]
        return self._joints[a:b].copy(), self._areas[a:b].copy()

    def keep_mask(self, index: int) -> np.ndarray:
        """(H, W) uint8, 1 where the loss counts, 0 in crowd / unlabelled-person regions."""
        h, w = (int(s) for s in self.sizes[index])
        regions = self._ignore.get(index)
        if not regions:
            return np.ones((h, w), dtype=np.uint8)
        rle = self._rle_cache.get(index)
        if rle is None:
            rle = self._merged_rle(regions, h, w)
            self._rle_cache[index] = rle  # small (run lengths), saves ~1 ms per sample on polygons
        from pycocotools import mask as mask_utils

        return np.ascontiguousarray(1 - mask_utils.decode(rle))

    @staticmethod
    def _merged_rle(regions: list[Any], h: int, w: int) -> dict[str, Any]:
        """Union of segmentations (polygons, uncompressed or compressed RLE) as one RLE."""
        from pycocotools import mask as mask_utils

        rles = []
        for seg in regions:
            if isinstance(seg, dict) and isinstance(seg.get("counts"), (str, bytes)):
                rle = dict(seg)
                if isinstance(rle["counts"], str):
                    rle["counts"] = rle["counts"].encode()
                rles.append(rle)
            else:
                rle = mask_utils.frPyObjects(seg, h, w)
                rles.extend(rle if isinstance(rle, list) else [rle])
        return mask_utils.merge(rles) if len(rles) > 1 else rles[0]

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        """Sample ``key``: an index (augmented as of ``self.epoch``) or a SampleKey(index, epoch)."""
        index, epoch = (key.index, key.epoch) if isinstance(key, SampleKey) else (int(key), self.epoch)
        if self.on_bad_sample == "error":
            return self._get(index, epoch)
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            try:
                return self._get(i, epoch)
            except DataError as err:
                log.warning("skipping sample %d: %s", i, err)
        raise DataError(f"{self.source}: no readable sample left")

    def _get(self, index: int, epoch: int) -> dict[str, Any]:
        image = self.load_image(index)
        image_id = int(self.image_ids[index])
        if not self.train:
            h, w = image.shape[:2]
            return {"image": image, "image_id": image_id, "file_name": str(self.file_names[index]),
                    "orig_size": (h, w)}
        return self.train_sample(index, image, epoch=epoch)

    def train_sample(self, index: int, image: np.ndarray, params: AffineParams | None = None,
                     epoch: int | None = None) -> dict[str, Any]:
        """Augment one decoded image and build its targets (or the GPU-target inputs).

        The random draws come from (``self.seed``, ``epoch`` (default ``self.epoch``), ``index``)
        only; ``params`` fixes the affine draw instead.
        """
        epoch = self.epoch if epoch is None else int(epoch)
        joints, area = self.persons(index)
        mask = self.keep_mask(index)
        out = self.transform(image, mask, joints, rng=self.sample_rng(index, epoch), params=params)
        warped = out["image"]
        if self.pixel_transforms is not None:
            self._seed_pixel_transforms(index, epoch)
            warped = self.pixel_transforms(image=warped)["image"]
        area_input = area * out["scale_factor"]  # image px^2 -> input px^2 (official)
        sample: dict[str, Any] = {"image_id": torch.tensor(int(self.image_ids[index]), dtype=torch.int64)}
        if self.gpu_targets:
            sample["image"] = torch.from_numpy(np.ascontiguousarray(warped.transpose(2, 0, 1)))
            sample["joints"] = torch.from_numpy(out["keypoints"])
            sample["area"] = torch.from_numpy(area_input)
            sample["mask"] = torch.from_numpy(out["mask"])
            return sample
        targets = build_targets(out["keypoints"], area_input, out["mask"], self.output_size,
                                self.target_config)
        sample["image"] = torch.from_numpy(normalize_image(warped))
        for key, value in targets.items():
            sample[key] = torch.from_numpy(value)
        return sample

    def ground_truth(self, coco: dict[str, Any]) -> dict[str, Any]:
        """``coco`` restricted to the images this dataset kept (drops skipped images)."""
        keep = self.kept_image_ids
        out = dict(coco)
        out["images"] = [im for im in coco.get("images", []) if int(im["id"]) in keep]
        out["annotations"] = [a for a in coco.get("annotations", []) or [] if a.get("image_id") in keep]
        return out
