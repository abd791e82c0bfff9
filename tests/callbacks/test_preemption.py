"""SLURM requeue signal (SIGUSR1) delivered at chosen points of a training run: the requeue checkpoint
must be consistent wherever the signal lands, so that the requeued run resumes and ends with exactly
``epochs * steps`` optimizer steps (issue 4: 21 instead of 20 when the signal landed mid-epoch).

The run is in-process on a tiny model; the loop-consistency tests use a plain (non-resumable)
DataLoader, the mid-epoch resume tests DEKR's datamodule (whose training loader continues an
interrupted epoch with the batches an uninterrupted run would have trained on). SLURM is simulated by
its environment variables; only the ``scontrol requeue`` call is a test double, which records the call
and then "kills" the run (an exception), as SLURM's requeue does.
tests/scripts/test_slurm.py is the end-to-end check on a real SLURM with 2 DDP ranks.
"""
from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.trainer.connectors import signal_connector
from torch.utils.data import DataLoader

from dekr.callbacks import EpochHistory, RequeueAtSafePoint
from dekr.data.datamodule import DEKRDataModule
from dekr.data.synthetic import SyntheticConfig

EPOCHS, STEPS, BATCH = 3, 4, 2
JOB_ID = "4242"


def data(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))


class TinyModel(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.layer(batch).pow(2).mean()
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/loss", self.layer(batch).pow(2).mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)  # its per-parameter "step" counts the updates

    def train_dataloader(self) -> DataLoader:
        return DataLoader(data(STEPS * BATCH, seed=0), batch_size=BATCH)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(data(3 * BATCH, seed=1), batch_size=BATCH)


class SignalAt(L.Callback):
    """Sends SIGUSR1 to this process once, at ``point`` in epoch 1 (the handler runs right there)."""

    def __init__(self, point: str) -> None:
        self.point, self.sent = point, False

    def _send(self, trainer: L.Trainer, point: str) -> None:
        if not self.sent and point == self.point and trainer.current_epoch == 1 \
                and not trainer.sanity_checking:
            self.sent = True
            os.kill(os.getpid(), signal.SIGUSR1)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The window of issue 4: the optimizer step is counted (global_step + 1) but the batch is not yet
        # marked processed. There is no hook there, so wrap Lightning's step counter.
        counter = trainer.fit_loop.epoch_loop.automatic_optimization.optim_progress.optimizer.step
        increment = counter.increment_completed

        def increment_then_signal() -> None:
            increment()
            if trainer.fit_loop.epoch_loop.batch_progress.current.ready == 2:
                self._send(trainer, "after_step_counted")

        counter.increment_completed = increment_then_signal
        # Inside optimizer.step: the weights are updated, the step is not counted yet.
        trainer.optimizers[0].register_step_post_hook(
            lambda *_: trainer.fit_loop.epoch_loop.batch_progress.current.ready == 3
            and self._send(trainer, "inside_optimizer_step"))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._send(trainer, "train_epoch_start")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: torch.Tensor,
                             batch_idx: int) -> None:
        if batch_idx == 1:
            self._send(trainer, "train_batch_start")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object,
                           batch: torch.Tensor, batch_idx: int) -> None:
        if batch_idx == STEPS - 1:
            self._send(trainer, "last_train_batch_end")

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        self._send(trainer, "validation")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._send(trainer, "train_epoch_end")  # before EpochHistory's own on_train_epoch_end


class Requeued(BaseException):
    """What happens to the job after ``scontrol requeue``: it is killed."""


@pytest.fixture
def slurm_env(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    for key in list(os.environ):
        if key.startswith("SLURM_"):
            monkeypatch.delenv(key)
    for key, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "dekr-test", "SLURM_JOB_ID": JOB_ID,
                       "SLURM_NODELIST": "localhost", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
                       "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(key, value)
    calls: list[list[str]] = []

    def fake_call(cmd, *args, **kwargs):  # the `call` Lightning's requeue handler runs scontrol with
        calls.append(list(cmd) if not isinstance(cmd, str) else cmd.split())
        raise Requeued

    monkeypatch.setattr(signal_connector, "call", fake_call)
    return calls


def make_trainer(root: Path, *callbacks: L.Callback, max_epochs: int = EPOCHS) -> L.Trainer:
    return L.Trainer(default_root_dir=root, max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     callbacks=[*callbacks, EpochHistory(), RequeueAtSafePoint()])


def adam_steps(optimizer_state: dict) -> int:
    return {int(s["step"]) for s in optimizer_state["state"].values()}.pop()


@pytest.mark.parametrize("point", ["after_step_counted", "inside_optimizer_step", "train_batch_start",
                                   "train_epoch_start", "last_train_batch_end", "validation",
                                   "train_epoch_end"])
def test_requeue_checkpoint_is_consistent_wherever_the_signal_lands(point: str, slurm_env: list[list[str]],
                                                                    tmp_path: Path) -> None:
    L.seed_everything(0)
    handler_before = signal.getsignal(signal.SIGUSR1)
    first = make_trainer(tmp_path, SignalAt(point))
    with pytest.raises(Requeued):
        first.fit(TinyModel())
    assert slurm_env == [["scontrol", "requeue", JOB_ID]]
    assert signal.getsignal(signal.SIGUSR1) == handler_before  # handlers restored after the run
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    saved = torch.load(hpc, map_location="cpu", weights_only=False)

    # The requeued job: same folder, SLURM environment -> Lightning resumes from hpc_ckpt_1.ckpt.
    second = make_trainer(tmp_path)
    second.fit(TinyModel())
    assert second.ckpt_path == str(hpc)
    history = next(c for c in second.callbacks if isinstance(c, EpochHistory)).history
    assert [(row["epoch"], row["step"]) for row in history] == [(e, (e + 1) * STEPS) for e in range(EPOCHS)]
    assert second.global_step == EPOCHS * STEPS
    assert all("val/loss" in row for row in history)  # no epoch lost its validation
    # No batch trained twice or skipped: the optimizer applied exactly the counted steps, before and after.
    assert adam_steps(saved["optimizer_states"][0]) == saved["global_step"]
    assert adam_steps(second.optimizers[0].state_dict()) == EPOCHS * STEPS
    batches = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert batches["ready"] == batches["started"] == batches["processed"]


def test_mid_epoch_signal_checkpoints_at_that_batch_end(slurm_env: list[list[str]], tmp_path: Path) -> None:
    first = make_trainer(tmp_path, SignalAt("after_step_counted"))
    with pytest.raises(Requeued):
        first.fit(TinyModel())
    saved = torch.load(tmp_path / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == STEPS + 2  # epoch 1, the end of its second batch: mid-epoch
    batches = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert batches["processed"] == 2 and batches["completed"] == 1  # saved in on_train_batch_end


def test_inert_without_slurm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("SLURM_"):
            monkeypatch.delenv(key)
    callback = RequeueAtSafePoint()
    seen = []
    original = RequeueAtSafePoint._install

    def spy(self, trainer):
        original(self, trainer)
        seen.append(self._deferred)

    monkeypatch.setattr(RequeueAtSafePoint, "_install", spy)
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=1, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[callback])
    trainer.fit(TinyModel())
    assert seen and all(handler is None for handler in seen)
    assert trainer.global_step == STEPS


# -- mid-epoch resume: the interrupted epoch continues with the batches it would have trained on ---------

class ImageModel(L.LightningModule):
    """Trains on DEKR's training batches (a linear map of the mean colour), nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return (self.layer(batch["image"].mean(dim=(2, 3))) - 1).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class SeenBatches(L.Callback):
    """(epoch, batch_idx, image ids) of every training batch."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, list[int]]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict,
                             batch_idx: int) -> None:
        self.seen.append((trainer.current_epoch, batch_idx, batch["image_id"].tolist()))


def dekr_data(num_workers: int) -> DEKRDataModule:
    # 16 images in batches of 3: 5 batches per epoch, the 16th image dropped (drop_last)
    return DEKRDataModule(dataset="synthetic", input_size=64, batch_size=3, num_workers=num_workers,
                          pin_memory=False, synthetic=SyntheticConfig(num_train=16, num_val=2, image_size=64, seed=1))


def train(root: Path, num_workers: int, *callbacks: L.Callback) -> tuple[L.Trainer, ImageModel, SeenBatches]:
    L.seed_everything(0)
    model, seen = ImageModel(), SeenBatches()
    trainer = make_trainer(root, seen, *callbacks, max_epochs=2)
    trainer.fit(model, datamodule=dekr_data(num_workers))
    return trainer, model, seen


@pytest.mark.parametrize("num_workers", [0, 2])
def test_mid_epoch_resume_trains_on_the_uninterrupted_runs_batches(num_workers: int, slurm_env: list[list[str]],
                                                                   tmp_path: Path) -> None:
    _, straight, expected = train(tmp_path / "straight", 0)
    assert [(e, i) for e, i, _ in expected.seen] == [(e, i) for e in range(2) for i in range(5)]

    with pytest.raises(Requeued):  # SIGUSR1 during epoch 1's batch 1 -> hpc checkpoint at that batch's end
        train(tmp_path / "run", num_workers, SignalAt("after_step_counted"))
    first = [(e, i, ids) for e, i, ids in expected.seen[:7]]
    saved = torch.load(tmp_path / "run" / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 7
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 1, "batches": 2, "batch_size": 3, "num_replicas": 1}]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, resumed, seen = train(tmp_path / "run", num_workers)
    assert trainer.ckpt_path == str(tmp_path / "run" / "hpc_ckpt_1.ckpt")
    # The rest of epoch 1 is its batches 2..4 (not 0..2 again), then epoch 1's successor as usual.
    assert first + seen.seen == expected.seen
    assert not [w for w in caught if "not resumable" in str(w.message)]
    assert trainer.global_step == straight.trainer.global_step == 10
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name  # bit-equal: same samples, same augmentations, same order
