"""Training-sample order, per-sample random streams and the batch-size arithmetic of the datamodule.

Reproducibility design: the augmentation of a training sample is a pure function of
``(seed, epoch, index)``, and the order of the samples a pure function of ``(seed, epoch)``
(plus the rank and world size for the shard). Nothing depends on a random state that lives in
the main process or in a worker, so that

* a run resumed from an end-of-epoch checkpoint (``--ckpt_path last``) sees exactly the batches
  of an uninterrupted run, with any ``num_workers`` (0 included, where the old per-process RNG
  restarted from its seed after a resume);
* ``num_workers`` 0, 1, 8, persistent or not, gives the same samples.

:class:`EpochShardSampler` is a ``DistributedSampler`` (so Lightning keeps it instead of
installing its own under DDP, and calls its ``set_epoch`` every epoch) that yields
:class:`SampleKey` items: the index *and* the epoch travel to the worker with every sample, so a
persistent worker, whose copy of the dataset never sees the main process again, still knows the
epoch.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from torch.utils.data import Dataset, DistributedSampler


class SampleKey(NamedTuple):
    """What the training sampler yields: a dataset index and the epoch it is drawn for."""

    index: int
    epoch: int


def sample_seed_sequence(seed: int, epoch: int, index: int, stream: int) -> np.random.SeedSequence:
    """Independent random stream ``stream`` of sample ``index`` at ``epoch`` under base ``seed``.

    Streams: 0 the affine draw, 1 and 2 the albumentations numpy and Python generators.
    SeedSequence hashes the entropy, so neighbouring (epoch, index) pairs give unrelated streams.
    """
    return np.random.SeedSequence([int(seed) % 2 ** 64, int(epoch), int(index)], spawn_key=(int(stream),))


class EpochShardSampler(DistributedSampler):
    """This rank's shard of the dataset, reshuffled per epoch from ``seed + epoch``; yields SampleKey.

    The order is ``DistributedSampler``'s (so identical to what Lightning would install under DDP
    with the same seed); with ``num_replicas=1`` it is a seeded full shuffle. Lightning calls
    ``set_epoch`` before each training epoch, from the restored epoch counter when resuming.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=False)

    def __iter__(self) -> Iterator[SampleKey]:  # type: ignore[override]
        epoch = self.epoch  # fixed when the epoch's iteration starts
        for index in super().__iter__():
            yield SampleKey(int(index), epoch)


def resolve_batch_size(batch_size: int, global_batch_size: int | None, world_size: int,
                       accumulate_grad_batches: int = 1) -> int:
    """Training images per device and step.

    ``global_batch_size`` None: ``batch_size`` (per device) as given. Otherwise the images per
    optimizer step over all devices and nodes, ``world_size`` x ``accumulate_grad_batches`` x the
    per-device batch, which must come out whole.
    """
    if global_batch_size is None:
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        return int(batch_size)
    if global_batch_size < 1:
        raise ValueError(f"data.global_batch_size must be >= 1, got {global_batch_size}")
    shares = int(world_size) * int(accumulate_grad_batches)
    if global_batch_size % shares:
        raise ValueError(
            f"data.global_batch_size={global_batch_size} does not divide evenly over {world_size} device(s) "
            f"(trainer.devices x trainer.num_nodes) x {accumulate_grad_batches} accumulated batch(es) "
            f"(trainer.accumulate_grad_batches); choose a multiple of {shares}, or set data.batch_size "
            "(per device) and leave data.global_batch_size unset")
    return global_batch_size // shares
