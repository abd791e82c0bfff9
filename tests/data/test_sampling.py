"""dekr.data.sampling and the datamodule's batch-size options: global batch resolution, seeded shards."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import Dataset, DistributedSampler

from dekr.data.datamodule import DEKRDataModule
from dekr.data.sampling import BatchSplit, EpochShardSampler, ResumableDataLoader, SampleKey, split_batch
from dekr.data.synthetic import SyntheticConfig


def test_per_device_batch_size_is_kept_without_global():
    assert split_batch(10, None, world_size=4) == BatchSplit(10, 4, 1, "per_device")
    assert split_batch(10, None, world_size=4, accumulate_grad_batches=3).images_per_step == 120


@pytest.mark.parametrize("cap, world, expected", [
    (10, 1, (10, 4)),  # W32 on one GPU: 10 x 4 accumulated
    (10, 4, (10, 1)),  # W32, the official 4 GPUs
    (10, 8, (5, 1)),
    (5, 1, (5, 8)),    # W48 on one GPU
    (5, 2, (5, 4)),    # W48 on 2 GPUs: 5 x 4
    (5, 8, (5, 1)),    # W48, the official 8 GPUs
    (10, 5, (8, 1)),
    (3, 2, (2, 10)),   # the largest per-device batch up to the cap that makes 40 exactly
    (40, 1, (40, 1)),
])
def test_global_batch_is_split_up_to_the_per_device_cap_and_accumulated(cap, world, expected):
    split = split_batch(cap, 40, world_size=world)
    assert (split.per_device, split.accumulate) == expected
    assert split.images_per_step == 40 and split.per_device <= cap


def test_explicit_accumulation_is_kept_within_the_cap():
    assert split_batch(10, 40, world_size=2, accumulate_grad_batches=2) == BatchSplit(10, 2, 2, "global")
    with pytest.raises(ValueError, match=r"needs 20 images per device, more than data.batch_size=10"):
        split_batch(10, 80, world_size=2, accumulate_grad_batches=2)


def test_a_split_that_cannot_make_the_global_batch_lists_the_choices():
    with pytest.raises(ValueError, match=r"data.global_batch_size=40 images per step cannot be split evenly over 3 "
                                         r"device") as err:
        split_batch(10, 40, world_size=3)
    message = str(err.value)
    assert "Device counts that can: [1, 2, 4, 5, 8, 10, 20, 40]" in message
    assert "a multiple of 3 (e.g. 39 or 42" in message and "trainer.devices x trainer.num_nodes" in message
    with pytest.raises(ValueError, match="multiple of 6"):
        split_batch(10, 40, world_size=3, accumulate_grad_batches=2)
    with pytest.raises(ValueError, match="data.global_batch_size must be >= 1"):
        split_batch(10, 0, world_size=1)
    with pytest.raises(ValueError, match="data.batch_size must be >= 1"):
        DEKRDataModule(batch_size=0)


def _dm(**kw) -> DEKRDataModule:
    return DEKRDataModule(dataset="synthetic", input_size=64, num_workers=0, pin_memory=False,
                          synthetic=SyntheticConfig(num_train=16, num_val=2, image_size=64, seed=1), **kw)


def _attach(dm: DEKRDataModule, world: int, rank: int = 0, accumulate: int = 1) -> None:
    # What setup() and train_dataloader() read from the Trainer.
    dm.trainer = SimpleNamespace(world_size=world, global_rank=rank, accumulate_grad_batches=accumulate)


def test_datamodule_resolves_global_batch_in_setup_and_logs_it(caplog):
    dm = _dm(batch_size=4, global_batch_size=8)
    _attach(dm, world=2, rank=1)
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
    assert dm.per_device_batch_size == 4
    # (logged by rank_zero_info: this test process is rank 0 for it, whatever the fake trainer says)
    assert "4 images per device (from data.global_batch_size) x 2 device(s) = 8 images per optimizer step" \
        in caplog.text
    loader = dm.train_dataloader()
    assert loader.batch_size == 4 and isinstance(loader.sampler, EpochShardSampler)
    assert isinstance(loader, ResumableDataLoader) and loader.batches_done() == 0  # no fit loop: from the start
    assert (loader.sampler.num_replicas, loader.sampler.rank) == (2, 1)
    assert [len(b["image_id"]) for b in loader] == [4, 4]  # this rank's 8 of the 16 images


def test_datamodule_setup_rejects_an_uneven_global_batch():
    dm = _dm(global_batch_size=8)
    _attach(dm, world=3)
    with pytest.raises(ValueError, match="data.global_batch_size=8"):
        dm.setup("fit")


def test_datamodule_sets_the_accumulation_that_makes_the_global_batch(caplog):
    dm = _dm(batch_size=2, global_batch_size=8)
    _attach(dm, world=2)
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
    assert dm.per_device_batch_size == 2 and dm.trainer.accumulate_grad_batches == 2
    assert "2 images per device (from data.global_batch_size) x 2 device(s) x 2 accumulated = 8" in caplog.text
    dm.setup("fit")  # a second setup (e.g. a resumed fit) chooses again instead of keeping it as explicit
    assert dm.trainer.accumulate_grad_batches == 2 and dm.per_device_batch_size == 2


def test_batch_size_stays_per_device_without_global(caplog):
    dm = _dm(batch_size=3)
    _attach(dm, world=2, accumulate=2)
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
    assert dm.per_device_batch_size == 3
    assert "3 images per device (data.batch_size, per device) x 2 device(s) x 2 accumulated = 12" in caplog.text


def test_epoch_shard_sampler_is_lightnings_distributed_order_with_the_epoch():
    data = list(range(10))
    for rank in (0, 1):
        ours = EpochShardSampler(data, num_replicas=2, rank=rank, seed=7)
        ref = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=7)
        for epoch in (0, 3):
            ours.set_epoch(epoch)
            ref.set_epoch(epoch)
            keys = list(ours)
            assert all(isinstance(k, SampleKey) and k.epoch == epoch for k in keys)
            assert [k.index for k in keys] == list(ref)
    one = EpochShardSampler(data, seed=7)
    orders = []
    for epoch in (0, 1, 0):
        one.set_epoch(epoch)
        orders.append([k.index for k in one])
    assert sorted(orders[0]) == data and orders[0] == orders[2] != orders[1]


def test_sample_streams_are_a_function_of_seed_epoch_and_index():
    ds = _dm().dataset("train")
    ds.reseed(3)
    a = ds[SampleKey(2, 5)]["image"]
    assert torch.equal(a, ds[SampleKey(2, 5)]["image"])
    ds.epoch = 5
    assert torch.equal(a, ds[2]["image"])  # a plain index uses ds.epoch
    assert not torch.equal(a, ds[SampleKey(2, 6)]["image"])
    ds.reseed(4)
    assert not torch.equal(a, ds[SampleKey(2, 5)]["image"])


class Keys(Dataset):
    """Returns the SampleKey itself, as a (index, epoch) tensor."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, key: SampleKey) -> torch.Tensor:
        return torch.tensor([key.index, key.epoch])


def _batches(loader) -> list[list[tuple[int, int]]]:
    return [[tuple(row) for row in batch.tolist()] for batch in loader]


def test_sampler_skip_applies_to_the_next_iteration_only():
    sampler = EpochShardSampler(list(range(10)), seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.skip_next(4)
    assert list(sampler) == full[4:]
    assert list(sampler) == full and len(sampler) == 10


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resumable_loader_continues_the_epoch_at_the_loops_batch(num_workers):
    """Lightning's order on a mid-epoch resume: iter() (workers start, prefetch), then set_epoch, then
    its batch counters are reset to k, then the first batch is fetched: it must be the epoch's batch k."""
    def loader(done: list[int]) -> ResumableDataLoader:
        return ResumableDataLoader(Keys(), batch_size=3, sampler=EpochShardSampler(Keys(), seed=5),
                                   num_workers=num_workers, drop_last=True, batches_done=lambda: done[0],
                                   persistent_workers=num_workers > 0)

    reference = loader([0])
    reference.sampler.set_epoch(4)
    full = _batches(reference)
    assert len(full) == len(reference) == 5 and {e for b in full for _, e in b} == {4}  # 16 // 3, last dropped

    done = [0]
    resumed = loader(done)
    iterator = iter(resumed)  # in FitLoop.setup_data, before the epoch and the counters are restored
    resumed.sampler.set_epoch(4)
    done[0] = 2
    assert _batches(iterator) == full[2:]
    assert len(resumed) == 5  # Lightning's num_training_batches: the whole epoch
    assert resumed.state_dict() == {"epoch": 4, "batches": 5, "batch_size": 3, "num_replicas": 1}
    done[0] = 0  # the next epoch starts from its first batch (persistent workers reused)
    resumed.sampler.set_epoch(5)
    iterator = iter(resumed)
    next(iterator)
    assert resumed.state_dict()["batches"] == 1  # batches handed to the loop, not what workers prefetched
    following = _batches(iterator)
    assert len(following) == 4 and {e for b in following for _, e in b} == {5}


def test_resumable_loader_shards_skip_the_same_batches_on_every_rank():
    full, resumed = [], []
    for rank in (0, 1):
        for done, out in ((0, full), (1, resumed)):
            sampler = EpochShardSampler(Keys(), num_replicas=2, rank=rank, seed=5)
            sampler.set_epoch(1)
            out.append(_batches(ResumableDataLoader(Keys(), batch_size=2, sampler=sampler,
                                                    batches_done=lambda d=done: d)))
    assert [r[1:] for r in full] == resumed


def test_resume_with_another_batch_split_warns(caplog):
    loader = ResumableDataLoader(Keys(), batch_size=4, sampler=EpochShardSampler(Keys()), batches_done=lambda: 1)
    loader.load_state_dict({"epoch": 0, "batches": 2, "batch_size": 2, "num_replicas": 2})
    with caplog.at_level(logging.WARNING):
        assert len(_batches(loader)) == 3
    assert "another batch split" in caplog.text and "'batch_size': 2" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _batches(loader)  # the check is for the resumed iteration only
    assert caplog.text == ""
