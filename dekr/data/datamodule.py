"""LightningDataModule for COCO, CrowdPose, custom COCO-format datasets and the synthetic default.

Batches:

* training: dict with ``image`` (N, 3, S, S) float32 ImageNet-normalised RGB, ``heatmap`` and
  ``heatmap_weight`` (N, K+1, R, R) (keypoints then centre), ``offset`` and ``offset_weight``
  (N, 2K, R, R) (x, y per keypoint; offset = pixel - keypoint in output-map pixels), ``image_id``
  (N,) int64. With ``gpu_targets`` the workers send the uint8 image, the warped keypoints
  (``joints`` (N, P, K+1, 3), padded), ``area`` and ``mask``; ``on_after_batch_transfer`` builds
  the same maps on the device and normalises the image.
* validation / test / predict: dict with ``image`` (list of original-resolution (H, W, 3) uint8
  RGB arrays), ``image_id`` (list[int]), ``file_name`` (list[str]) and ``orig_size``
  (list of (H, W)). ``val_ground_truth`` is the COCO-format dict of the evaluated split.

Batch size: ``batch_size`` is per device; ``global_batch_size`` (images per optimizer step over
all devices, nodes and accumulated batches, the official recipe's "images per GPU x GPUs") instead
derives the per-device batch (at most ``batch_size``) and the gradient accumulation from the
trainer in ``setup()``. The learning rate is never scaled.

Distributed training: the training loader's sampler is an :class:`EpochShardSampler` (a
``DistributedSampler`` with this rank's shard, so Lightning keeps it), reshuffled every epoch from
``seed + epoch``. The validation loaders use no custom sampler, so Lightning
(``use_distributed_sampler=True``, its default) shards them; validation shards may repeat a few
images to pad the last batch; the metric de-duplicates by ``image_id``.

Seeding (see :mod:`dekr.data.sampling`): the training order is a function of (seed, epoch) and
each sample's augmentation of (seed, epoch, index), with the seed of ``seed_everything``
(``PL_GLOBAL_SEED``, 0 when unset). Nothing depends on the worker or on an RNG state that a resume
would lose: resumed runs and any ``num_workers`` see the same batches. ``worker_init_fn`` still
seeds each worker's global numpy RNG (distinct per worker and rank) for third-party code.

Mid-epoch resume (SLURM requeue checkpoints): the training loader is a
:class:`~dekr.data.sampling.ResumableDataLoader` that asks the trainer's restored loop progress how
many batches of the epoch were already trained and skips exactly those, so the resumed epoch
continues with the batches an uninterrupted run would have trained on.
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, get_worker_info

from dekr.data.dataset import CocoKeypointDataset, load_coco_json
from dekr.dataclass_config import as_config
from dekr.data.normalize import normalize_batch
from dekr.data.sampling import BatchSplit, EpochShardSampler, ResumableDataLoader, split_batch
from dekr.data.spec import KeypointSpec, load_spec
from dekr.data.synthetic import SyntheticConfig, SyntheticKeypoints, write_synthetic_coco
from dekr.data.targets import TargetConfig, build_targets_torch
from dekr.data.transforms import AugmentationConfig

log = logging.getLogger(__name__)

# Default file layout per dataset kind, relative to ``root``: (annotation json, image folder).
LAYOUTS: dict[str, dict[str, tuple[str, str]]] = {
    "coco": {"train": ("annotations/person_keypoints_train2017.json", "images/train2017"),
             "val": ("annotations/person_keypoints_val2017.json", "images/val2017"),
             "test": ("annotations/person_keypoints_val2017.json", "images/val2017")},
    # the official DEKR layout: json/crowdpose_{trainval,test}.json + images/; evaluated on test
    "crowdpose": {"train": ("json/crowdpose_trainval.json", "images"),
                  "val": ("json/crowdpose_test.json", "images"),
                  "test": ("json/crowdpose_test.json", "images")},
    "custom": {"train": ("annotations/train.json", "images"),
               "val": ("annotations/val.json", "images"),
               "test": ("annotations/val.json", "images")},
}
DEFAULT_SPEC = {"coco": "coco", "crowdpose": "crowdpose", "custom": "coco", "synthetic": "coco"}


@dataclass
class SplitPaths:
    """Annotation json and image folder of one split; relative paths are taken under ``root``."""

    annotations: str | None = None
    images: str | None = None


def _worker_init_fn(worker_id: int) -> None:
    info = get_worker_info()
    if info is None:
        return
    dataset = info.dataset
    rank = getattr(dataset, "global_rank", 0)
    seq = np.random.SeedSequence([torch.initial_seed() % 2 ** 63, int(rank), int(worker_id)])
    seed = int(seq.generate_state(1, dtype=np.uint64)[0] % 2 ** 63)
    # Only for third-party code that draws from the global RNG: our augmentations use per-sample
    # generators (dekr.data.sampling) and do not depend on the worker.
    np.random.seed(seed % 2 ** 32)
    # Deliberately no cv2.setNumThreads() here: called in a forked worker after the parent used
    # OpenCV's thread pool, it deadlocks (checked with OpenCV 5.0).


def collate_train(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack training samples; pad per-sample keypoint arrays (GPU-target mode) to the batch max."""
    batch: dict[str, Any] = {}
    for key in samples[0]:
        if key == "joints":
            p = max(s["joints"].shape[0] for s in samples)
            j = samples[0]["joints"].shape[1]
            joints = torch.zeros((len(samples), p, j, 3), dtype=torch.float64)
            area = torch.ones((len(samples), p), dtype=torch.float64)
            for i, s in enumerate(samples):
                joints[i, : len(s["joints"])] = s["joints"]
                area[i, : len(s["area"])] = s["area"]
            batch["joints"], batch["area"] = joints, area
        elif key == "area":
            continue
        else:
            batch[key] = torch.stack([s[key] for s in samples])
    return batch


def collate_eval(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Keep variable-size validation images as a list of numpy arrays."""
    return {key: [s[key] for s in samples] for key in samples[0]}


class DEKRDataModule(LightningDataModule):
    """Data for DEKR training and evaluation.

    Args:
        dataset: ``coco``, ``crowdpose``, ``custom`` (any COCO-format keypoint data + a spec) or
            ``synthetic`` (generated, no files).
        root: dataset folder; the split paths below are relative to it.
        spec: keypoint spec name (shipped in ``dekr/data/specs/<name>.yaml``) or path; default per dataset.
        train_split, val_split, test_split: override the default layout (``LAYOUTS``).
        input_size: S, the square training input (512 for W32, 640 for W48).
        output_size: R, the target map size; default S / 4.
        batch_size: training images per device; with ``global_batch_size``, the most a device takes
            (official: 10 for W32 at 512, 5 for W48 at 640).
        global_batch_size: training images per optimizer step over all devices, nodes and
            accumulated batches (official: 40). The split takes the largest per-device batch up to
            ``batch_size`` that makes it exactly and sets ``trainer.accumulate_grad_batches`` for
            the rest (W32 on 1 GPU: 10 x 4; on 8 GPUs: 5 x 1); an explicit
            ``accumulate_grad_batches`` is kept. A split that cannot make it is an error listing the
            device counts that can. The learning rate is not scaled.
        val_batch_size: evaluation images per device (a list of original images per batch).
        num_workers, persistent_workers: DataLoader settings.
        pin_memory: page-locked batches for fast copies to a GPU; None (default): when CUDA is
            available (on a CPU-only machine pinning does nothing but warn).
        augmentation: random affine / flip / pixel transforms (official defaults).
        targets: heatmap and offset parameters (official defaults).
        official_quirks: reproduce the official code's quirks (see ``dataset.py``, ``targets.py``).
        gpu_targets: build the target maps on the device in ``on_after_batch_transfer``.
        min_center_area: persons with smaller COCO ``area`` get no centre.
        on_bad_sample: ``error`` or ``skip`` (logged) for bad images / annotations.
        synthetic: size and seed of the synthetic data (``dataset: synthetic``).
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str = "data/coco",
        spec: str | None = None,
        train_split: SplitPaths | None = None,
        val_split: SplitPaths | None = None,
        test_split: SplitPaths | None = None,
        input_size: int = 512,
        output_size: int | None = None,
        batch_size: int = 10,
        global_batch_size: int | None = None,
        val_batch_size: int = 1,
        num_workers: int = 4,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        augmentation: AugmentationConfig | None = None,
        targets: TargetConfig | None = None,
        official_quirks: bool = False,
        gpu_targets: bool = False,
        min_center_area: float = 1024.0,
        on_bad_sample: str = "error",
        synthetic: SyntheticConfig | None = None,
    ) -> None:
        super().__init__()
        if dataset not in ("coco", "crowdpose", "custom", "synthetic"):
            raise ValueError(f"dataset must be coco, crowdpose, custom or synthetic, got {dataset!r}")
        if on_bad_sample not in ("error", "skip"):
            raise ValueError(f"on_bad_sample must be 'error' or 'skip', got {on_bad_sample!r}")
        if input_size % 4 != 0 and output_size is None:
            raise ValueError(f"input_size {input_size} is not a multiple of 4; set output_size")
        self.dataset_kind = dataset
        self.root = Path(root)
        self.spec_name = spec or DEFAULT_SPEC[dataset]
        self.splits = {name: as_config(SplitPaths, paths, f"data.{name}_split")
                       for name, paths in (("train", train_split), ("val", val_split), ("test", test_split))}
        self.input_size = int(input_size)
        self.output_size = int(output_size) if output_size else self.input_size // 4
        self.batch_size = batch_size
        self.global_batch_size = global_batch_size
        # Resolved against the trainer in setup(); until then as if on one device.
        self.per_device_batch_size = split_batch(batch_size, global_batch_size, 1).per_device
        self._chosen_accumulation: int | None = None  # set when setup() chose trainer.accumulate_grad_batches
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers
        self.augmentation = as_config(AugmentationConfig, augmentation, "data.augmentation")
        if dataset == "synthetic" and self.augmentation.enabled and self.augmentation.flip_prob > 0:
            # The synthetic people encode left/right by colour; a flip swaps the labels, not the colours.
            log.warning("data.augmentation.flip_prob=%s on the synthetic dataset: its people are colour-coded "
                        "left/right, so flips make the side labels contradictory; use flip_prob 0 "
                        "(see dekr/data/synthetic.py)", self.augmentation.flip_prob)
        self.targets = copy.copy(as_config(TargetConfig, targets, "data.targets"))
        if official_quirks:
            self.targets.official_quirks = True
        self.official_quirks = official_quirks
        self.gpu_targets = gpu_targets
        self.min_center_area = min_center_area
        self.on_bad_sample = on_bad_sample
        self.synthetic = as_config(SyntheticConfig, synthetic, "data.synthetic")
        self._spec: KeypointSpec | None = None
        self._datasets: dict[str, CocoKeypointDataset] = {}
        self._coco: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ public attributes
    @property
    def spec(self) -> KeypointSpec:
        if self._spec is None:
            self._spec = load_spec(self.spec_name)
        return self._spec

    @property
    def val_ground_truth(self) -> dict[str, Any]:
        """COCO-format ground truth (dict) of the validation split, restricted to the kept images."""
        return self.ground_truth("val")

    @property
    def test_ground_truth(self) -> dict[str, Any]:
        return self.ground_truth("test")

    def ground_truth(self, split: str) -> dict[str, Any]:
        dataset = self.dataset(split)
        return dataset.ground_truth(self._coco[split])

    # ------------------------------------------------------------------ datasets
    def split_paths(self, split: str) -> tuple[Path, Path]:
        """(annotation json, image folder) of a split for file-backed datasets."""
        kind = "custom" if self.dataset_kind == "synthetic" else self.dataset_kind
        default_ann, default_img = LAYOUTS[kind][split]
        if self.dataset_kind == "synthetic":
            default_ann = f"annotations/person_keypoints_{split}.json"
            default_img = "images"
        paths = self.splits[split]
        ann = Path(paths.annotations or default_ann)
        img = Path(paths.images or default_img)
        base = self.root if self.dataset_kind != "synthetic" else Path(self.synthetic.cache_dir)
        return (ann if ann.is_absolute() else base / ann), (img if img.is_absolute() else base / img)

    def missing_files(self, splits: tuple[str, ...] = ("train", "val")) -> list[str]:
        """Problems with the files ``splits`` need, one line each (empty when all are there).

        Cheap (no file is read), so that a launcher can check the data once before any process
        starts; the datasets still validate their contents when they are built.
        """
        if self.dataset_kind == "synthetic":
            return []
        option = "--data.init_args.root"
        if not self.root.is_dir():
            layout = " + ".join(sorted({f"{ann} + {img}/" for ann, img in LAYOUTS[self.dataset_kind].values()}))
            return [f"dataset root {self.root} ({option}) does not exist; expected {layout} under it"]
        problems = []
        for split in splits:
            ann, img = self.split_paths(split)
            if not ann.is_file():
                problems.append(f"{split} annotation file {ann} not found (set {option} or "
                                f"--data.init_args.{split}_split.annotations)")
            if not img.is_dir():
                problems.append(f"{split} image folder {img} not found (set {option} or "
                                f"--data.init_args.{split}_split.images)")
        return list(dict.fromkeys(problems))  # val and test may share files

    def dataset(self, split: str) -> CocoKeypointDataset:
        """The dataset of ``train``, ``val`` or ``test`` (built once, on first use)."""
        if split not in self._datasets:
            self._datasets[split] = self._build(split)
        return self._datasets[split]

    def _build(self, split: str) -> CocoKeypointDataset:
        image_loader = None
        synthetic_split = "train" if split == "train" else "val"
        if self.dataset_kind == "synthetic" and not self.synthetic.cache_dir:
            data = SyntheticKeypoints(synthetic_split, self.synthetic, self.spec)
            coco, image_dir, image_loader = data.coco, None, data.render
            source = f"<synthetic {synthetic_split} annotations>"
        else:
            if self.dataset_kind == "synthetic":
                write_synthetic_coco(self.synthetic.cache_dir, self.synthetic, splits=(synthetic_split,),
                                     spec=self.spec)
                ann_path = (Path(self.synthetic.cache_dir) / "annotations"
                            / f"person_keypoints_{synthetic_split}.json")
                image_dir = Path(self.synthetic.cache_dir) / "images"
            else:
                ann_path, image_dir = self.split_paths(split)
            coco = load_coco_json(ann_path)
            source = str(ann_path)
        self._coco[split] = coco
        ds = CocoKeypointDataset(
            coco, image_dir, self.spec, train=split == "train", input_size=self.input_size,
            output_size=self.output_size, augmentation=self.augmentation, targets=self.targets,
            official_quirks=self.official_quirks, min_center_area=self.min_center_area,
            gpu_targets=self.gpu_targets, on_bad_sample=self.on_bad_sample, image_loader=image_loader,
            source=source)
        return ds

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.dataset("train")
            self.dataset("val")
        if stage == "validate":
            self.dataset("val")
        if stage in ("test", "predict"):
            self.dataset("test")
        rank = self.trainer.global_rank if self.trainer is not None else 0
        for ds in self._datasets.values():
            ds.global_rank = rank
        if stage in (None, "fit"):
            self.resolve_batch_size()

    def batch_split(self, world_size: int, accumulate_grad_batches: int = 1) -> BatchSplit:
        """The training batch split for ``world_size`` devices (see :func:`dekr.data.sampling.split_batch`).
        The launcher calls it before any process starts, so that an impossible split fails once."""
        return split_batch(self.batch_size, self.global_batch_size, world_size, accumulate_grad_batches)

    def resolve_batch_size(self) -> int:
        """Per-device training batch for the attached trainer's devices x nodes; with
        ``global_batch_size`` and no accumulation configured, also sets the trainer's
        ``accumulate_grad_batches`` so that each optimizer step sees exactly the global batch."""
        world = self.trainer.world_size if self.trainer is not None else 1
        accumulate = int(getattr(self.trainer, "accumulate_grad_batches", 1) or 1)
        if self._chosen_accumulation is not None and accumulate == self._chosen_accumulation:
            accumulate = 1  # our own choice of an earlier setup(): choose again
        split = self.batch_split(world, accumulate)
        if self.trainer is not None and split.accumulate != accumulate:
            self.trainer.accumulate_grad_batches = split.accumulate
            self._chosen_accumulation = split.accumulate
        self.per_device_batch_size = split.per_device
        rank_zero_info(split.describe())
        return self.per_device_batch_size

    @property
    def seed(self) -> int:
        """Base seed of the training order and augmentations: ``seed_everything``'s, else 0."""
        return int(os.environ.get("PL_GLOBAL_SEED", "0"))

    # ------------------------------------------------------------------ loaders
    def _loader(self, dataset, batch_size: int, shuffle: bool, collate, drop_last: bool,
                sampler: EpochShardSampler | None = None) -> DataLoader:
        workers = self.num_workers
        # The training loader (the one with an EpochShardSampler) continues an interrupted epoch.
        resumable: dict[str, Any] = {} if sampler is None else {"batches_done": self._train_batches_done}
        return (DataLoader if sampler is None else ResumableDataLoader)(
            dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, num_workers=workers,
            collate_fn=collate, pin_memory=self.pin_memory, persistent_workers=self.persistent_workers and workers > 0,
            worker_init_fn=_worker_init_fn, drop_last=drop_last, **resumable)

    def _train_batches_done(self) -> int:
        """Batches of the current training epoch the loop has already trained: 0 when an epoch starts,
        k after Lightning restored a checkpoint saved at the end of batch k - 1 (its ``batch_idx``
        continues at k). Read by the training loader when its iteration starts."""
        fit_loop = getattr(self.trainer, "fit_loop", None)
        if fit_loop is None:  # no trainer (a loader iterated by hand)
            return 0
        return int(fit_loop.epoch_loop.batch_progress.current.ready)

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        ds.reseed(self.seed)
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        sampler = EpochShardSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        batch = self.per_device_batch_size
        drop_last = len(sampler) >= batch
        return self._loader(ds, batch, False, collate_train, drop_last, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"), self.val_batch_size, False, collate_eval, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test"), self.val_batch_size, False, collate_eval, False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    # ------------------------------------------------------------------ GPU targets
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict) and "joints" in batch:
            batch = dict(batch)
            joints, area, mask = batch.pop("joints"), batch.pop("area"), batch.pop("mask")
            batch.update(build_targets_torch(joints, area, mask, self.output_size, self.targets))
            batch["image"] = normalize_batch(batch["image"])
        return batch
