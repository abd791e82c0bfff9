"""DEKRDataModule: YAML configs, batch contracts, synthetic data, GPU targets, seeding and DDP shards."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch import LightningDataModule, LightningModule, seed_everything

from dekr.data.datamodule import DEKRDataModule, SplitPaths
from dekr.data.synthetic import SyntheticConfig, SyntheticKeypoints, write_synthetic_coco
from dekr.data.transforms import AugmentationConfig

warnings.filterwarnings("ignore", message=".*worker.*")


def from_yaml(repo_root, name, **overrides):
    from jsonargparse import ArgumentParser

    with open(repo_root / "configs" / "data" / f"{name}.yaml") as f:
        config = yaml.safe_load(f)
    config["init_args"].update(overrides)
    parser = ArgumentParser()
    parser.add_subclass_arguments(LightningDataModule, "data")
    parsed = parser.parse_object({"data": config})
    return parser.instantiate_classes(parsed).data


def check_train_batch(batch, n, k, s):
    r = s // 4
    assert batch["image"].shape == (n, 3, s, s) and batch["image"].dtype == torch.float32
    assert batch["heatmap"].shape == (n, k + 1, r, r) and batch["heatmap"].dtype == torch.float32
    assert batch["heatmap_weight"].shape == (n, k + 1, r, r)
    assert batch["offset"].shape == (n, 2 * k, r, r) and batch["offset_weight"].shape == (n, 2 * k, r, r)
    assert batch["image_id"].shape == (n,) and batch["image_id"].dtype == torch.int64
    assert -2.2 < batch["image"].min() < 0 < batch["image"].max() < 2.7  # ImageNet-normalised


def check_val_batch(batch):
    assert isinstance(batch["image"], list) and isinstance(batch["image_id"], list)
    for image, image_id, size in zip(batch["image"], batch["image_id"], batch["orig_size"]):
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape[2] == 3
        assert image.shape[:2] == tuple(size) and isinstance(image_id, int)


def test_coco_yaml_on_fixtures(repo_root, fixtures_dir):
    dm = from_yaml(repo_root, "coco", root=str(fixtures_dir / "coco_minicoco"), num_workers=0, batch_size=2,
                   val_batch_size=3, input_size=256)
    assert dm.input_size == 256 and dm.output_size == 64 and dm.augmentation.max_rotation == 30.0
    dm.setup("fit")
    check_train_batch(next(iter(dm.train_dataloader())), 2, 17, 256)
    batch = next(iter(dm.val_dataloader()))
    check_val_batch(batch)
    assert len({im.shape for im in batch["image"]}) > 1 or len(batch["image"]) == 3
    gt = dm.val_ground_truth
    assert len(gt["images"]) == 30 and gt["annotations"]
    assert dm.spec.name == "coco"
    dm.setup("test")
    check_val_batch(next(iter(dm.test_dataloader())))
    check_val_batch(next(iter(dm.predict_dataloader())))


def test_crowdpose_yaml_on_fixtures(repo_root, fixtures_dir):
    split = {"annotations": "test_crowdpose.json", "images": "."}
    dm = from_yaml(repo_root, "crowdpose", root=str(fixtures_dir / "crowdpose"), num_workers=0, batch_size=2,
                   input_size=128, train_split=split, val_split=split, test_split=split)
    dm.setup("fit")
    assert dm.spec.name == "crowdpose" and dm.spec.num_keypoints == 14
    check_train_batch(next(iter(dm.train_dataloader())), 2, 14, 128)
    check_val_batch(next(iter(dm.val_dataloader())))
    assert "crowdIndex" in dm.val_ground_truth["images"][0]


def test_default_layouts(repo_root):
    coco = from_yaml(repo_root, "coco")
    assert coco.split_paths("train") == (coco.root / "annotations/person_keypoints_train2017.json",
                                         coco.root / "images/train2017")
    assert coco.root.as_posix() == "data/coco" and coco.input_size == 512 and coco.batch_size == 10
    crowd = from_yaml(repo_root, "crowdpose")
    assert crowd.split_paths("train")[0].as_posix() == "data/crowdpose/json/crowdpose_trainval.json"
    assert crowd.split_paths("val")[0].as_posix() == "data/crowdpose/json/crowdpose_test.json"
    custom = from_yaml(repo_root, "custom")
    assert custom.dataset_kind == "custom" and custom.splits["train"] == SplitPaths("annotations/train.json", "images")


def test_pin_memory_defaults_to_whether_cuda_is_available(repo_root):
    # pinned batches only help copies to a GPU; on a CPU-only machine DataLoader warns about them
    assert from_yaml(repo_root, "coco").pin_memory is torch.cuda.is_available()
    assert from_yaml(repo_root, "coco", pin_memory=True).pin_memory is True
    assert from_yaml(repo_root, "synthetic_demo", pin_memory=False).pin_memory is False


def test_synthetic_yaml_and_contract(repo_root):
    dm = from_yaml(repo_root, "synthetic_demo")
    dm.setup("fit")
    check_train_batch(next(iter(dm.train_dataloader())), dm.batch_size, 17, dm.input_size)
    batch = next(iter(dm.val_dataloader()))
    check_val_batch(batch)
    gt = dm.val_ground_truth
    assert isinstance(gt, dict) and len(gt["images"]) == dm.synthetic.num_val
    assert {im["id"] for im in gt["images"]} >= set(batch["image_id"])
    full = from_yaml(repo_root, "synthetic")
    assert full.dataset_kind == "synthetic" and full.synthetic.num_train == 512


def test_synthetic_is_deterministic_and_sane():
    cfg = SyntheticConfig(num_train=6, num_val=3, image_size=128, seed=3)
    a, b = SyntheticKeypoints("val", cfg), SyntheticKeypoints("val", cfg)
    assert a.coco == b.coco
    for info in a.coco["images"]:
        image = a.render(info)
        assert image.shape == (info["height"], info["width"], 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, b.render(info))
    anns = a.coco["annotations"]
    assert anns and all(len(x["keypoints"]) == 51 for x in anns)
    assert len({x["id"] for x in anns}) == len(anns)
    other = SyntheticKeypoints("val", SyntheticConfig(num_train=6, num_val=3, image_size=128, seed=4))
    assert other.coco["annotations"] != anns
    vis = np.concatenate([np.asarray(x["keypoints"]).reshape(17, 3)[:, 2] for x in anns])
    assert (vis == 2).any()


def test_synthetic_ground_truth_scores_ap_one():
    """The COCO-format ground truth is well-formed: GT fed back as predictions gets AP 1.0."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = SyntheticKeypoints("val", SyntheticConfig(num_train=1, num_val=12, image_size=160))
    gt = COCO()
    gt.dataset = json.loads(json.dumps(data.coco))
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        preds = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
                 for a in data.coco["annotations"]]
        dt = gt.loadRes(preds)
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_synthetic_cache_dir_writes_coco_files(tmp_path):
    cfg = SyntheticConfig(num_train=4, num_val=2, image_size=96, cache_dir=str(tmp_path / "syn"))
    dm = DEKRDataModule(dataset="synthetic", input_size=64, batch_size=2, num_workers=0, pin_memory=False,
                        synthetic=cfg)
    dm.setup("fit")
    assert (tmp_path / "syn/annotations/person_keypoints_train.json").is_file()
    check_train_batch(next(iter(dm.train_dataloader())), 2, 17, 64)
    mem = DEKRDataModule(dataset="synthetic", input_size=64, num_workers=0,
                         synthetic=SyntheticConfig(num_train=4, num_val=2, image_size=96))
    mem.setup("fit")
    assert mem.val_ground_truth["annotations"] == dm.val_ground_truth["annotations"]
    from_files = dm.dataset("val")[0]["image"]
    in_memory = mem.dataset("val")[0]["image"]
    np.testing.assert_array_equal(from_files, in_memory)  # PNG is lossless
    write_synthetic_coco(tmp_path / "syn", cfg)  # idempotent


def _dm(**kw):
    base = dict(dataset="synthetic", input_size=64, batch_size=4, num_workers=0, pin_memory=False,
                synthetic=SyntheticConfig(num_train=16, num_val=4, image_size=96, seed=1))
    base.update(kw)
    return DEKRDataModule(**base)


def test_gpu_targets_equal_cpu_targets():
    cpu, gpu = _dm(), _dm(gpu_targets=True)
    cpu.setup("fit")
    gpu.setup("fit")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    seed_everything(5)
    batch_cpu = next(iter(cpu.train_dataloader()))
    seed_everything(5)
    raw = next(iter(gpu.train_dataloader()))
    assert raw["image"].dtype == torch.uint8 and "joints" in raw
    raw = {k: v.to(device) for k, v in raw.items()}
    batch_gpu = gpu.on_after_batch_transfer(raw, 0)
    assert set(batch_gpu) == set(batch_cpu)
    for key in batch_cpu:
        got = batch_gpu[key].cpu()
        if got.is_floating_point():
            torch.testing.assert_close(got, batch_cpu[key], atol=1e-5, rtol=0)
        else:
            assert torch.equal(got, batch_cpu[key])


def _ids_and_images(loader, epochs=1):
    out = []
    for _ in range(epochs):
        for batch in loader:
            out.append((batch["image_id"].clone(), batch["image"].clone()))
    return out


@pytest.mark.timeout(300)
def test_worker_seeding_is_deterministic_and_distinct():
    dm = _dm(num_workers=2, persistent_workers=False)
    dm.setup("fit")
    dm.dataset("train")[0]  # use OpenCV's thread pool in the parent before forking (a past deadlock)
    seed_everything(11, workers=True)
    a = _ids_and_images(dm.train_dataloader())
    seed_everything(11, workers=True)
    b = _ids_and_images(dm.train_dataloader())
    for (ia, xa), (ib, xb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(xa, xb)
    # the same image with another base seed gives a different augmentation
    ds = dm.dataset("train")
    ds.reseed(1)
    first = ds[0]["image"]
    ds.reseed(2)
    assert not torch.equal(first, ds[0]["image"])
    # each worker (and each rank) gets a different global numpy seed (for third-party code)
    from dekr.data import datamodule as dmod

    draws = set()
    state = np.random.get_state()
    for rank in (0, 1):
        for worker in (0, 1):
            class Info:
                dataset = type("D", (), {"global_rank": rank})()

            orig = dmod.get_worker_info
            dmod.get_worker_info = lambda: Info
            try:
                torch.manual_seed(100 + worker)  # torch gives each worker base_seed + worker_id
                dmod._worker_init_fn(worker)
                draws.add(np.random.randint(2 ** 31))
            finally:
                dmod.get_worker_info = orig
    np.random.set_state(state)
    assert len(draws) == 4


def _epochs(dm, epochs):
    """{epoch: {image_id: augmented image}} from the training loader, epochs set as Lightning does."""
    loader = dm.train_dataloader()
    out = {}
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        out[epoch] = [(int(i), x) for batch in loader for i, x in zip(batch["image_id"], batch["image"])]
    return out


@pytest.mark.timeout(300)
def test_augmentation_is_the_same_for_any_num_workers_and_after_a_resume(monkeypatch):
    """Order and augmentation are functions of (seed, epoch, index): workers and restarts change nothing."""
    from dekr.data.transforms import AugmentationConfig

    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    aug = AugmentationConfig(pixel_transforms=[{"name": "ColorJitter", "params": {"p": 0.5}}])
    main = _epochs(_dm(augmentation=aug), (0, 1))
    # persistent workers keep their dataset copy across epochs: the epoch reaches them with each index
    workers = _epochs(_dm(augmentation=aug, num_workers=2, persistent_workers=True), (0, 1))
    resumed = _epochs(_dm(augmentation=aug), (1,))  # a fresh process that starts at epoch 1
    for epoch in (0, 1):
        assert [i for i, _ in main[epoch]] == [i for i, _ in workers[epoch]]
        for (_, a), (_, b) in zip(main[epoch], workers[epoch]):
            assert torch.equal(a, b)
    assert [i for i, _ in resumed[1]] == [i for i, _ in main[1]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(main[1], resumed[1]))
    # ... and a new epoch is a new order and new augmentations
    assert [i for i, _ in main[0]] != [i for i, _ in main[1]]
    first = dict(main[0])
    assert not any(torch.equal(first[i], x) for i, x in main[1])


def test_distributed_shards_are_distinct():
    """Lightning re-creates our loader with a DistributedSampler: ranks see disjoint shards."""
    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import DistributedSampler

    dm = _dm(batch_size=2)
    dm.setup("fit")
    loader = dm.train_dataloader()
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sharded = _update_dataloader(loader, sampler)
        assert sharded.collate_fn is loader.collate_fn and sharded.worker_init_fn is loader.worker_init_fn
        ids = torch.cat([b["image_id"] for b in sharded]).tolist()
        seen.append(set(ids))
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == len(dm.dataset("train"))


def test_pixel_transforms_from_config_run():
    from dekr.data.transforms import AugmentationConfig

    dm = _dm(augmentation=AugmentationConfig(pixel_transforms=[{"name": "ColorJitter", "params": {"p": 1.0}}]))
    dm.setup("fit")
    check_train_batch(next(iter(dm.train_dataloader())), 4, 17, 64)


def test_bad_arguments():
    with pytest.raises(ValueError, match="dataset must be"):
        DEKRDataModule(dataset="imagenet")
    with pytest.raises(ValueError, match="on_bad_sample"):
        _dm(on_bad_sample="ignore").setup("fit")


class RecordIds(LightningModule):
    """A minimal LightningModule that writes the image ids each rank trains on."""

    def __init__(self, out_dir: str):
        super().__init__()
        self.out_dir = out_dir
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.ids = []

    def training_step(self, batch, batch_idx):
        self.ids += batch["image_id"].tolist()
        assert batch["heatmap"].shape[1] == 18
        return (self.weight * batch["heatmap"].mean()).sum() + self.weight.pow(2).sum()

    def on_train_epoch_end(self):
        with open(f"{self.out_dir}/rank{self.global_rank}_epoch{self.current_epoch}.json", "w") as f:
            json.dump(self.ids, f)
        self.ids = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_ddp_ranks_train_on_distinct_shards(tmp_path):
    """Two CPU processes (ddp_spawn): Lightning's automatic DistributedSampler shards our loader."""
    import lightning.pytorch as pl

    dm = _dm(batch_size=2, synthetic=SyntheticConfig(num_train=12, num_val=2, image_size=64, seed=2))
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0)
    trainer.fit(RecordIds(str(tmp_path)), datamodule=dm)
    for epoch in range(2):
        ids = [set(json.loads((tmp_path / f"rank{r}_epoch{epoch}.json").read_text())) for r in range(2)]
        assert ids[0] and ids[1] and not ids[0] & ids[1]
        assert len(ids[0] | ids[1]) == 12


def test_synthetic_with_flips_warns_about_its_colour_coded_sides(caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="dekr.data.datamodule"):
        DEKRDataModule(dataset="synthetic", augmentation=AugmentationConfig(flip_prob=0.5))
    assert "flip_prob=0.5 on the synthetic dataset" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dekr.data.datamodule"):
        DEKRDataModule(dataset="synthetic", augmentation=AugmentationConfig(flip_prob=0.0))
        DEKRDataModule(dataset="coco", augmentation=AugmentationConfig(flip_prob=0.5))
    assert "flip_prob" not in caplog.text
