"""OKS-based keypoint AP/AR (COCO and CrowdPose protocols) as a torchmetrics ``Metric``.

The metric accumulates predicted poses per image across batches and DDP ranks (list states,
concatenated on sync), de-duplicates images repeated by a ``DistributedSampler``'s padding,
and evaluates once in ``compute()`` with one of two backends that give identical numbers:

- ``"pycocotools"``: the reference ``pycocotools.cocoeval.COCOeval``;
- ``"faster_coco_eval"``: faster-coco-eval's C++ ``COCOeval_faster`` (several times faster).

Protocols:

- COCO: ``COCOeval(gt, dt, "keypoints")`` with the spec's sigmas, at most 20 poses per image
  (``maxDets=[20]``, official behaviour), AP / AP50 / AP75 / APM / APL / AR / AR50 / AR75 / ARM / ARL.
- CrowdPose (``spec.crowd_eval``): the CrowdPose evaluator's rules -- object area
  = 0.53 x bbox width x height (the annotations carry no ``area``), persons with
  ``num_keypoints == 0`` ignored, and AP easy / medium / hard over the images whose
  ``crowdIndex`` is < 0.2, in [0.2, 0.8) and >= 0.8. Like the CrowdPose evaluator (and
  xtcocotools / faster-coco-eval's ``keypoints_crowd``), the easy/medium/hard figures are the
  plain mean of the precision array, -1 entries included.

Documented behaviour for odd inputs:

- a prediction for an image id that is not in the ground truth: ``ValueError`` in ``update``;
- NaN / inf keypoint coordinates or scores: ``ValueError`` in ``update``;
- no prediction at all (or only empty ones): every metric is 0 (a warning is logged);
- ground truth without ``area``: computed as 0.53 x bbox area in CrowdPose mode, ``ValueError``
  in COCO mode (the COCO protocol needs the segmentation area);
- ground truth without ``num_keypoints``: counted from the keypoint triplets (v > 0), with a
  warning (CrowdPose's own count covers the 12 body joints only; it matters only for the
  ``num_keypoints == 0`` ignore rule).

Categories: the ground truth's instances are its annotations of the spec's ``category_ids``
(COCO: the person; AP-10K: 54 species); other categories' annotations are dropped. DEKR is
class-agnostic (one centre heatmap, no class score), so the chosen categories are evaluated pooled:
every kept ground-truth annotation and every prediction gets the first of the spec's ids
(``KeypointSpec.pooled_category_id``), the id predictions are written with (a category the ground truth
has), and COCOeval runs on that one category. This is what ``params.useCats = 0`` means, done
with categories because pycocotools' ``computeOks`` ignores ``useCats`` (it would find no ground
truth under the category -1 that ``useCats = 0`` evaluates) and it works the same in both backends.

By default only images passed to ``update`` (``images="seen"``) are evaluated, so a partial
validation run (``limit_val_batches``) is scored on what it saw; ``images="all"`` evaluates every
ground-truth image (unseen images count as images with no prediction).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from dekr.data.spec import KeypointSpec, load_spec

log = logging.getLogger(__name__)

Backend = Literal["pycocotools", "faster_coco_eval"]
BACKENDS: tuple[str, ...] = ("pycocotools", "faster_coco_eval")

COCO_KEYS = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
CROWD_KEYS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard")
CROWD_AREA_FACTOR = 0.53
CROWD_INDEX_SPLITS = (0.2, 0.8)


# --------------------------------------------------------------------------------------------
# Ground truth preparation and the two backends (pure functions, no Metric state)
# --------------------------------------------------------------------------------------------
def load_ground_truth(ground_truth: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Read a COCO-format ground truth from a json path, or deep-copy an in-memory dict."""
    if isinstance(ground_truth, (str, Path)):
        with open(ground_truth) as f:
            return json.load(f)
    if isinstance(ground_truth, dict):
        return copy.deepcopy(ground_truth)
    raise TypeError(f"ground truth must be a json path or a COCO-format dict, got {type(ground_truth).__name__}")


def prepare_ground_truth(data: dict[str, Any], spec: KeypointSpec, crowd: bool) -> dict[str, Any]:
    """Check a COCO-format ground truth against ``spec`` and fill what the protocol needs (in place).

    Keeps the annotations of ``spec.category_ids`` only, under ``spec.pooled_category_id``.
    CrowdPose: ``area`` := 0.53 x bbox w x h (always, as the CrowdPose evaluator does).
    Missing ``num_keypoints``: counted from the triplets. COCO without ``area``: ``ValueError``.
    """
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"ground truth has no {key!r} list")
    wanted, pooled = set(spec.category_ids), spec.pooled_category_id
    kept = [ann for ann in data["annotations"] if ann.get("category_id") in wanted]
    if data["annotations"] and not kept:
        found = sorted({ann.get("category_id") for ann in data["annotations"]}, key=str)
        raise ValueError(f"no ground-truth annotation has a category of spec {spec.name!r} (category_ids "
                         f"{sorted(wanted)}); the annotations have category_id {found}")
    if len(kept) < len(data["annotations"]):
        log.info("OKS-AP: %d ground-truth annotations of categories outside spec %r dropped",
                 len(data["annotations"]) - len(kept), spec.name)
    for ann in kept:
        ann["category_id"] = pooled
    data["annotations"] = kept
    k = spec.num_keypoints
    missing_num = 0
    for ann in data["annotations"]:
        kpts = ann.get("keypoints")
        if kpts is None or len(kpts) != 3 * k:
            n = None if kpts is None else len(kpts) // 3
            raise ValueError(f"ground-truth annotation {ann.get('id')} has {n} keypoints, spec {spec.name!r} has {k}")
        if "bbox" not in ann:
            raise ValueError(f"ground-truth annotation {ann.get('id')} has no 'bbox'")
        ann.setdefault("iscrowd", 0)
        if "num_keypoints" not in ann:
            missing_num += 1
            ann["num_keypoints"] = int(np.count_nonzero(np.asarray(kpts[2::3]) > 0))
        if crowd:
            ann["area"] = CROWD_AREA_FACTOR * float(ann["bbox"][2]) * float(ann["bbox"][3])
        elif "area" not in ann:
            raise ValueError(
                f"ground-truth annotation {ann.get('id')} has no 'area': the COCO protocol needs it "
                "(CrowdPose-style annotations: use a spec with crowd_eval: true, or pass crowd=True)"
            )
    if missing_num:
        log.warning("%d ground-truth annotations had no 'num_keypoints'; counted from the keypoints (v > 0)",
                    missing_num)
    if crowd:
        without = [img["id"] for img in data["images"] if "crowdIndex" not in img]
        if without:
            raise ValueError(f"CrowdPose evaluation needs 'crowdIndex' per image; {len(without)} images lack it "
                             f"(e.g. {without[:3]})")
    return data


def crowd_splits(data: dict[str, Any], image_ids: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """Easy / medium / hard image ids by ``crowdIndex`` (< 0.2, < 0.8, rest), restricted to ``image_ids``."""
    wanted = set(int(i) for i in image_ids)
    first, second = CROWD_INDEX_SPLITS
    easy, medium, hard = [], [], []
    for img in data["images"]:
        if img["id"] not in wanted:
            continue
        ci = img["crowdIndex"]
        (easy if ci < first else medium if ci < second else hard).append(img["id"])
    return easy, medium, hard


def _mean_valid(s: np.ndarray) -> float:
    valid = s[s > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def summarize(precision: np.ndarray, recall: np.ndarray, iou_thrs: np.ndarray, area_labels: Sequence[str],
              crowd: bool) -> dict[str, float]:
    """The COCO keypoint summary (``COCOeval.summarize``) from the accumulated arrays, silently.

    ``precision``: (T, R, K, A, M); ``recall``: (T, K, A, M); the last maxDets entry (20) is used.
    """
    def ap(thr: float | None = None, area: str = "all") -> float:
        s = precision[..., area_labels.index(area), -1]
        if thr is not None:
            s = s[np.where(np.isclose(iou_thrs, thr))[0]]
        return _mean_valid(s)

    def ar(thr: float | None = None, area: str = "all") -> float:
        s = recall[..., area_labels.index(area), -1]
        if thr is not None:
            s = s[np.where(np.isclose(iou_thrs, thr))[0]]
        return _mean_valid(s)

    out = {"AP": ap(), "AP50": ap(0.5), "AP75": ap(0.75)}
    if not crowd:
        out.update(APM=ap(area="medium"), APL=ap(area="large"))
    out.update(AR=ar(), AR50=ar(0.5), AR75=ar(0.75))
    if not crowd:
        out.update(ARM=ar(area="medium"), ARL=ar(area="large"))
    return out


class _Backend:
    """Builds the ground-truth COCO object once and evaluates result lists against it."""

    def __init__(self, name: str, gt: dict[str, Any], sigmas: Sequence[float]):
        if name not in BACKENDS:
            raise ValueError(f"unknown OKS-AP backend {name!r}; choose one of {BACKENDS}")
        self.name = name
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        if name == "pycocotools":
            from pycocotools.coco import COCO

            with contextlib.redirect_stdout(io.StringIO()):
                self.coco_gt = COCO()
                self.coco_gt.dataset = gt
                self.coco_gt.createIndex()
        else:
            from faster_coco_eval import COCO

            self.coco_gt = COCO(gt, print_function=lambda *a, **k: None)

    def evaluate(self, results: list[dict[str, Any]], image_ids: Sequence[int], category_id: int,
                 splits: Sequence[Sequence[int]] = ()) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]]:
        """Evaluate + accumulate on ``image_ids``, then on each subset in ``splits``.

        Returns (precision, recall, iouThrs, area labels) for the full set, then per split. The
        faster backend reuses the OKS matrices of the full evaluation for the splits.
        """
        quiet = lambda *a, **k: None  # noqa: E731
        # loadRes adds area/bbox/id to the dicts it gets: hand it shallow copies.
        results = [dict(r) for r in results]
        out = []
        if self.name == "pycocotools":
            from pycocotools.cocoeval import COCOeval

            with contextlib.redirect_stdout(io.StringIO()):
                coco_dt = self.coco_gt.loadRes(results)
                for ids in (image_ids, *splits):
                    ev = COCOeval(self.coco_gt, coco_dt, "keypoints")
                    ev.params.kpt_oks_sigmas = self.sigmas
                    ev.params.imgIds = sorted(ids)
                    ev.params.catIds = [category_id]
                    ev.evaluate()
                    ev.accumulate()
                    out.append(self._arrays(ev))
            return out
        import faster_coco_eval.faster_eval_api_cpp as _C
        from faster_coco_eval import COCOeval_faster

        coco_dt = self.coco_gt.loadRes(results)
        ev = COCOeval_faster(self.coco_gt, coco_dt, "keypoints", print_function=quiet, kpt_oks_sigmas=list(self.sigmas))
        ev.params.imgIds = sorted(image_ids)
        ev.params.catIds = [category_id]
        ev.evaluate()
        ev.accumulate()
        out.append(self._arrays(ev))
        for ids in splits:
            # Same C++ evaluate+accumulate as COCOeval_faster.evaluate, on the subset's cached OKS.
            params = copy.deepcopy(ev._paramsEval)
            params.imgIds = sorted(ids)
            ious = [[ev.ious[img, category_id]] for img in params.imgIds]
            ev.eval = _C.COCOevalEvaluateAccumulate(params, ious, ev.gt_dataset, ev.dt_dataset, params.imgIds,
                                                    params.catIds, bool(params.useCats))
            ev.params = params
            out.append(self._arrays(ev))
        return out

    @staticmethod
    def _arrays(ev: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        return (np.asarray(ev.eval["precision"]), np.asarray(ev.eval["recall"]), np.asarray(ev.params.iouThrs),
                list(ev.params.areaRngLbl))


def check_result_categories(results: Sequence[dict[str, Any]], category_ids: Sequence[int]) -> None:
    """ValueError when a result's ``category_id`` is not one of ``category_ids`` (a missing one is fine)."""
    foreign = sorted({r["category_id"] for r in results if r.get("category_id", category_ids[0])
                      not in category_ids}, key=str)
    if foreign:
        raise ValueError(f"results with category_id {foreign}, not among the spec's categories {list(category_ids)}")


def evaluate_results(results: list[dict[str, Any]], backend: _Backend, gt: dict[str, Any], image_ids: Sequence[int],
                     crowd: bool, category_ids: Sequence[int]) -> dict[str, float]:
    """Evaluate COCO-format keypoint results (``image_id``, ``category_id``, ``keypoints``, ``score``).

    ``gt`` comes from :func:`prepare_ground_truth`; ``category_ids`` are the spec's: results of any
    of them (or without a ``category_id``) are evaluated pooled under the first, others are an error.
    ``results`` must not carry a ``bbox`` (pycocotools would then take the object area from it).
    """
    keys = CROWD_KEYS if crowd else COCO_KEYS
    check_result_categories(results, category_ids)
    pooled = category_ids[0]
    results = [{**r, "category_id": pooled} for r in results]
    image_ids = sorted(set(int(i) for i in image_ids))
    if not results or not image_ids:
        log.warning("OKS-AP: no predictions to evaluate; every metric is 0")
        return {k: 0.0 for k in keys}
    names = ("AP_easy", "AP_medium", "AP_hard")
    splits = crowd_splits(gt, image_ids) if crowd else ()
    evaluated = backend.evaluate(results, image_ids, pooled, [s for s in splits if s])
    precision, recall, thrs, areas = evaluated[0]
    out = summarize(precision, recall, thrs, areas, crowd)
    if crowd:
        rest = iter(evaluated[1:])
        for name, split in zip(names, splits):
            # CrowdPose evaluator: plain mean over the 'all' area slice, -1 entries included.
            out[name] = float(np.mean(next(rest)[0][:, :, :, 0, :])) if split else -1.0
    return {k: out[k] for k in keys}


# --------------------------------------------------------------------------------------------
# The Metric
# --------------------------------------------------------------------------------------------
class OKSAP(Metric):
    """Keypoint AP/AR over predicted poses, COCO or CrowdPose protocol.

    Args:
        ground_truth: COCO-format keypoint annotations, a json path or an in-memory dict (copied).
        spec: the dataset's ``KeypointSpec`` (or a spec name / path); its sigmas are always used,
            and ``spec.crowd_eval`` selects the CrowdPose protocol.
        crowd: override ``spec.crowd_eval``.
        backend: ``"faster_coco_eval"`` (default) or ``"pycocotools"``; identical numbers.
        images: ``"seen"`` evaluates the images passed to ``update``; ``"all"`` every GT image.

    The ground truth's annotations of ``spec.category_ids`` are evaluated pooled (module docstring);
    :meth:`results` writes every pose with ``spec.pooled_category_id``.

    ``update(preds)`` takes a list with one dict per image: ``image_id`` (int), ``keypoints``
    (P, K, 3) as (x, y, score) in original image coordinates and ``scores`` (P,); P may be 0.
    ``compute()`` returns a dict of scalar tensors (``COCO_KEYS`` or ``CROWD_KEYS``).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    image_ids: list[Tensor]
    num_poses: list[Tensor]
    keypoints: list[Tensor]
    scores: list[Tensor]

    def __init__(self, ground_truth: str | Path | dict[str, Any], spec: KeypointSpec | str | Path,
                 crowd: bool | None = None, backend: Backend = "faster_coco_eval",
                 images: Literal["seen", "all"] = "seen", **kwargs: Any):
        super().__init__(**kwargs)
        self.spec = spec if isinstance(spec, KeypointSpec) else load_spec(spec)
        self.crowd = self.spec.crowd_eval if crowd is None else bool(crowd)
        if backend not in BACKENDS:
            raise ValueError(f"unknown OKS-AP backend {backend!r}; choose one of {BACKENDS}")
        if images not in ("seen", "all"):
            raise ValueError(f"images must be 'seen' or 'all', got {images!r}")
        self.backend_name = backend
        self.images = images
        self.category_id = self.spec.pooled_category_id
        self.gt = prepare_ground_truth(load_ground_truth(ground_truth), self.spec, self.crowd)
        self.gt_image_ids = frozenset(int(img["id"]) for img in self.gt["images"])
        self._backends: dict[str, _Backend] = {}
        self.add_state("image_ids", default=[], dist_reduce_fx="cat")
        self.add_state("num_poses", default=[], dist_reduce_fx="cat")
        self.add_state("keypoints", default=[], dist_reduce_fx="cat")
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def _backend(self, name: str) -> _Backend:
        if name not in self._backends:
            self._backends[name] = _Backend(name, self.gt, self.spec.sigmas)
        return self._backends[name]

    def _sync_dist(self, *args: Any, **kwargs: Any) -> None:
        # A rank that saw no image would otherwise contribute torchmetrics' generic empty float
        # tensor, whose dtype/ndim differ from the other ranks' states and break all_gather.
        k = self.spec.num_keypoints
        empty = {"image_ids": (torch.int64, (0,)), "num_poses": (torch.int64, (0,)),
                 "keypoints": (torch.float32, (0, k, 3)), "scores": (torch.float32, (0,))}
        for name, (dtype, shape) in empty.items():
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                setattr(self, name, [torch.zeros(shape, dtype=dtype, device=self.device)])
        super()._sync_dist(*args, **kwargs)

    def update(self, preds: Sequence[dict[str, Any]]) -> None:  # type: ignore[override]
        k = self.spec.num_keypoints
        for pred in preds:
            image_id = int(pred["image_id"])
            if image_id not in self.gt_image_ids:
                raise ValueError(f"prediction for image id {image_id}, which is not in the ground truth")
            kpts = torch.as_tensor(pred["keypoints"], dtype=torch.float32, device=self.device).reshape(-1, k, 3)
            scores = torch.as_tensor(pred["scores"], dtype=torch.float32, device=self.device).reshape(-1)
            if scores.numel() != kpts.shape[0]:
                raise ValueError(f"image {image_id}: {kpts.shape[0]} poses but {scores.numel()} scores")
            if not (torch.isfinite(kpts).all() and torch.isfinite(scores).all()):
                raise ValueError(f"image {image_id}: NaN or infinite keypoint coordinates or scores")
            self.image_ids.append(torch.tensor([image_id], dtype=torch.int64, device=self.device))
            self.num_poses.append(torch.tensor([kpts.shape[0]], dtype=torch.int64, device=self.device))
            self.keypoints.append(kpts)
            self.scores.append(scores)

    def update_from_results(self, results: Sequence[dict[str, Any]], image_ids: Sequence[int] | None = None) -> None:
        """Add COCO result-format poses (``image_id``, ``keypoints`` flat list, ``score``).

        ``image_ids`` lists the images seen (default: those in ``results``; images with no
        result then count only with ``images="all"``). A result's ``category_id`` may be any of the
        spec's (they are pooled); another one is a ``ValueError``.
        """
        k = self.spec.num_keypoints
        check_result_categories(results, self.spec.category_ids)
        grouped: dict[int, list[dict[str, Any]]] = {int(i): [] for i in (image_ids or [])}
        for r in results:
            grouped.setdefault(int(r["image_id"]), []).append(r)
        preds = [{
            "image_id": img_id,
            "keypoints": np.asarray([r["keypoints"] for r in rs], dtype=np.float64).reshape(-1, k, 3),
            "scores": np.asarray([r["score"] for r in rs], dtype=np.float64),
        } for img_id, rs in grouped.items()]
        self.update(preds)

    def results(self) -> tuple[list[dict[str, Any]], list[int]]:
        """The accumulated, de-duplicated predictions in COCO result format, and the seen image ids.

        Images repeated by DDP sampler padding keep their first occurrence only.
        """
        # After a DDP sync the list states arrive as already concatenated tensors.
        if isinstance(self.image_ids, list) and not self.image_ids:
            return [], []
        if isinstance(self.image_ids, Tensor) and self.image_ids.numel() == 0:
            return [], []
        image_ids = dim_zero_cat(self.image_ids).cpu().numpy()
        num_poses = dim_zero_cat(self.num_poses).cpu().numpy()
        keypoints = dim_zero_cat(self.keypoints).cpu().double().numpy()
        scores = dim_zero_cat(self.scores).cpu().double().numpy()
        offsets = np.concatenate([[0], np.cumsum(num_poses)])
        results: list[dict[str, Any]] = []
        seen: set[int] = set()
        for i, img_id in enumerate(image_ids.tolist()):
            if img_id in seen:
                continue
            seen.add(img_id)
            for p in range(offsets[i], offsets[i + 1]):
                results.append({"image_id": img_id, "category_id": self.category_id,
                                "keypoints": keypoints[p].reshape(-1).tolist(), "score": float(scores[p])})
        return results, sorted(seen)

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        return {k: torch.tensor(v, dtype=torch.float32) for k, v in self.compute_with(self.backend_name).items()}

    def compute_with(self, backend: Backend) -> dict[str, float]:
        """Evaluate the accumulated predictions with a given backend (python floats)."""
        results, seen = self.results()
        image_ids = sorted(self.gt_image_ids) if self.images == "all" else seen
        return evaluate_results(results, self._backend(backend), self.gt, image_ids, self.crowd,
                                self.spec.category_ids)


#: How :func:`format_table` shows a metric COCOeval could not define.
UNDEFINED_CELL = "n/a"


def format_cell(value: float) -> str:
    """One table cell: ``value`` x 100 with one decimal, or :data:`UNDEFINED_CELL` where COCOeval
    reports -1 (no ground truth in the area range or CrowdPose subset, e.g. APL with no large
    people), which x 100 would otherwise read as a real AP of -100.0."""
    if math.isnan(value) or value < 0:
        return UNDEFINED_CELL
    return f"{100 * value:.1f}"


def format_table(stats: dict[str, float], title: str = "") -> str:
    """The AP table in the paper's layout (values x 100, one decimal), as a markdown table.

    Undefined metrics (COCOeval's -1) show as :data:`UNDEFINED_CELL`; ``stats`` itself, and so the
    logged and saved values, keep the -1.
    """
    keys = [k for k in (*COCO_KEYS, *CROWD_KEYS) if k in stats]
    keys = list(dict.fromkeys(keys))
    head = "| " + " | ".join(["model" if title else ""] + keys) + " |"
    sep = "|" + "---|" * (len(keys) + 1)
    row = "| " + " | ".join([title] + [format_cell(float(stats[k])) for k in keys]) + " |"
    return "\n".join([head, sep, row])
