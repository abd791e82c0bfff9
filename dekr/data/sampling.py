"""Training-sample order, per-sample random streams and the batch-size arithmetic of the datamodule.

Reproducibility design: the augmentation of a training sample is a pure function of
``(seed, epoch, index)``, and the order of the samples a pure function of ``(seed, epoch)``
(plus the rank and world size for the shard). Nothing depends on a random state that lives in
the main process or in a worker, so that

* a run resumed from an end-of-epoch checkpoint (``--ckpt_path last``) sees exactly the batches
  of an uninterrupted run, with any ``num_workers`` (0 included: a per-process RNG would restart
  from its seed after a resume);
* ``num_workers`` 0, 1, 8, persistent or not, gives the same samples.

:class:`EpochShardSampler` is a ``DistributedSampler`` (so Lightning keeps it instead of
installing its own under DDP, and calls its ``set_epoch`` every epoch) that yields
:class:`SampleKey` items: the index *and* the epoch travel to the worker with every sample, so a
persistent worker, whose copy of the dataset never sees the main process again, still knows the
epoch.

Mid-epoch resume (a SLURM requeue checkpoint saved at the end of batch k - 1): Lightning restores
its loop counters and continues the epoch at ``batch_idx`` k, but a plain DataLoader would start
the epoch's data again from its first batch (repeating batches 0..k-1, never reaching the last k).
:class:`ResumableDataLoader` asks the loop how many batches of the epoch it has already done when
an iteration actually starts, and its sampler then skips those ``k x batch_size`` indices of the
epoch's order, once: the rest of the epoch is exactly the batches k, k+1, ... of an uninterrupted
run (per rank under DDP: every rank resumes at the same k in its own shard).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from torch.utils.data import DataLoader, Dataset, DistributedSampler

log = logging.getLogger(__name__)


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
    ``skip_next(n)`` makes the next iteration only start at position ``n`` of the epoch's order
    (a mid-epoch resume); ``len()`` stays the whole shard, as Lightning counts the epoch's batches
    from it.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=False)
        self._skip = 0

    def skip_next(self, count: int) -> None:
        """Start the next iteration (only that one) at position ``count`` of the epoch's order."""
        self._skip = max(int(count), 0)

    def __iter__(self) -> Iterator[SampleKey]:  # type: ignore[override]
        # The epoch and the start are read here, when the iteration starts, not at the first index.
        epoch, skip = self.epoch, self._skip
        self._skip = 0
        return iter([SampleKey(int(index), epoch) for index in list(super().__iter__())[skip:]])


class ResumableDataLoader(DataLoader):
    """Training DataLoader over an :class:`EpochShardSampler` that continues an interrupted epoch.

    ``batches_done()`` returns how many batches of the current epoch the training loop has already
    completed (the datamodule reads Lightning's restored loop progress: 0 at the start of an epoch,
    k when resuming from a checkpoint saved at the end of batch k - 1). It is called, and the
    sampler told to skip ``k x batch_size`` indices, when the iterator delivers its first batch,
    not in ``iter()``, because Lightning creates the resumed epoch's iterator *before* it restores
    the sampler's epoch (``set_epoch``) and resets its batch counters, and a multi-process
    DataLoader draws its first indices from the sampler as soon as its iterator exists (which also
    made an end-of-epoch resume with ``num_workers > 0`` start with the order and augmentation of
    epoch 0). The skip uses the loop's own count, not what the workers prefetched, so the batch
    the loop calls ``batch_idx`` k is always the epoch's batch k.

    ``state_dict`` / ``load_state_dict`` (Lightning's stateful-dataloader protocol; saved under
    ``loops.fit_loop.state_dict.combined_loader``) record where the loader was (epoch, batches
    delivered) and with which per-device batch and world size; restoring has nothing to set (the
    position comes from the restored loop) beyond a check that the batch split did not change,
    and it tells Lightning that this loader resumes inside an epoch (no "not resumable" warning).
    """

    def __init__(self, *args: Any, batches_done: Callable[[], int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches_done = batches_done
        self._position = {"epoch": 0, "batches": 0}  # the current iteration: epoch, batches handed out
        self._loaded: dict[str, int] | None = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return _StartOnFirstBatch(self)

    def _start(self) -> Iterator[Any]:
        done = int(self.batches_done()) if self.batches_done is not None else 0
        sampler = self.sampler
        if done > 0:
            if isinstance(sampler, EpochShardSampler) and self.batch_size is not None:
                self._check_resume(done)
                sampler.skip_next(done * self.batch_size)
            else:
                log.warning(f"Resuming at batch {done} of the epoch with a {type(sampler).__name__}: its "
                            "data restarts from the epoch's first batch")
        self._loaded = None
        self._position = {"epoch": int(getattr(sampler, "epoch", 0)), "batches": done}
        return super().__iter__()

    def _check_resume(self, done: int) -> None:
        saved, now = self._loaded, self._split()
        if saved is not None and any(saved.get(key) != value for key, value in now.items()):
            log.warning(f"Resuming inside an epoch with another batch split ({saved} when saved, {now} now): "
                        f"the epoch continues at sample {done * now['batch_size']} of this rank's new shard, "
                        "not with the batches an uninterrupted run would have trained on")

    def _split(self) -> dict[str, int]:
        return {"batch_size": int(self.batch_size or 0),
                "num_replicas": int(getattr(self.sampler, "num_replicas", 1))}

    def state_dict(self) -> dict[str, int]:
        return {**self._position, **self._split()}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._loaded = dict(state_dict)


class _StartOnFirstBatch(Iterator[Any]):
    """The iterator of a :class:`ResumableDataLoader`: the DataLoader's own iterator (workers, the
    sampler's order) is only created when the first batch is asked for."""

    def __init__(self, loader: ResumableDataLoader) -> None:
        self._loader = loader
        self._iterator: Iterator[Any] | None = None

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._loader._start()
        batch = next(self._iterator)
        self._loader._position["batches"] += 1
        return batch


@dataclass(frozen=True)
class BatchSplit:
    """How the training images of one optimizer step are spread: ``per_device`` images per
    forward pass on each of ``world_size`` devices (devices x nodes), ``accumulate`` forward passes
    per optimizer step."""

    per_device: int
    world_size: int
    accumulate: int
    #: where ``per_device`` came from: ``global`` (split of data.global_batch_size) or ``per_device``
    source: str = "per_device"

    @property
    def images_per_step(self) -> int:
        return self.per_device * self.world_size * self.accumulate

    def describe(self) -> str:
        how = "from data.global_batch_size" if self.source == "global" else "data.batch_size, per device"
        accumulated = f" x {self.accumulate} accumulated" if self.accumulate > 1 else ""
        return (f"training batch: {self.per_device} images per device ({how}) x {self.world_size} device(s)"
                f"{accumulated} = {self.images_per_step} images per optimizer step (the learning rate is not "
                "scaled)")


def split_batch(batch_size: int, global_batch_size: int | None, world_size: int,
                accumulate_grad_batches: int = 1) -> BatchSplit:
    """The training batch split for ``world_size`` devices (devices x nodes).

    * ``global_batch_size`` None: ``batch_size`` images per device, ``accumulate_grad_batches`` as
      given (the effective batch grows with the devices).
    * ``global_batch_size`` set (the official recipe: 40 images per optimizer step) and
      ``accumulate_grad_batches`` 1 (not chosen): ``batch_size`` is the largest batch a device takes
      (official: 10 for W32 at 512, 5 for W48 at 640). The split uses the largest per-device batch
      up to it that makes ``global_batch_size`` exactly and accumulates the rest: 40 with at most 10
      per device is 10 x 4 accumulated on 1 device, 10 x 1 on 4, 5 x 1 on 8.
    * both set: ``global_batch_size / (world_size x accumulate_grad_batches)`` per device, which must
      be whole and at most ``batch_size``.

    Raises:
        ValueError: naming the options, and listing the device counts that can make the global batch.
    """
    if batch_size < 1:
        raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
    if accumulate_grad_batches < 1:
        raise ValueError(f"trainer.accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}")
    if global_batch_size is None:
        return BatchSplit(int(batch_size), int(world_size), int(accumulate_grad_batches), "per_device")
    if global_batch_size < 1:
        raise ValueError(f"data.global_batch_size must be >= 1, got {global_batch_size}")
    world, cap = int(world_size), int(batch_size)
    if accumulate_grad_batches > 1:
        shares = world * int(accumulate_grad_batches)
        per_device, rest = divmod(global_batch_size, shares)
        if rest or per_device > cap:
            why = (f"does not divide evenly over {world} device(s) (trainer.devices x trainer.num_nodes) x "
                   f"{accumulate_grad_batches} accumulated batch(es) (trainer.accumulate_grad_batches); choose a "
                   f"multiple of {shares}" if rest else
                   f"over {world} device(s) x {accumulate_grad_batches} accumulated batch(es) needs {per_device} "
                   f"images per device, more than data.batch_size={cap}")
            raise ValueError(f"data.global_batch_size={global_batch_size} {why}, or leave "
                             "trainer.accumulate_grad_batches at 1 to have it chosen")
        return BatchSplit(per_device, world, int(accumulate_grad_batches), "global")
    for per_device in range(min(cap, global_batch_size // world), 0, -1):
        if global_batch_size % (world * per_device) == 0:
            return BatchSplit(per_device, world, global_batch_size // (world * per_device), "global")
    counts = [n for n in range(1, global_batch_size + 1) if global_batch_size % n == 0]
    near = sorted({(global_batch_size // world) * world, -(-global_batch_size // world) * world} - {0})
    raise ValueError(
        f"data.global_batch_size={global_batch_size} images per step cannot be split evenly over {world} "
        f"device(s) (trainer.devices x trainer.num_nodes). Device counts that can: {counts}; or change "
        f"data.global_batch_size to a multiple of {world} (e.g. {' or '.join(map(str, near))}; the recipe's "
        "learning rate was set for the original value)")
