"""What a run costs, for tables that compare configurations: parameters, forward GFLOPs at the test
input size, training and inference throughput, peak memory and wall time.

:class:`RunCosts` measures them during ``fit``; :class:`~dekr.callbacks.EpochHistory` writes
:meth:`RunCosts.costs` as the ``costs`` entry of ``metrics.json`` (also for stopped and failed runs),
with exactly the keys of :data:`COST_KEYS`:

* ``parameters``: all parameters of the LightningModule (int); ``trainable_parameters``: those with
  ``requires_grad``.
* ``gflops``: forward FLOPs / 1e9 of the network, batch 1, at ``input_size``. A multiply-add counts
  2 FLOPs (``FlopCounterMode``'s convention); the DEKR paper's "GFLOPs" are multiply-adds, half of
  this (HRNet-W32 at 512x512: 90.81 here, 45.4 in the paper). See :func:`forward_flops` for what is
  not counted.
* ``input_size``: [H, W] of that count: the data's square ``input_size``, which is also the short
  side that validation and testing resize to (official DEKR: 512 for W32, 640 for W48).
* ``train_images_per_s``: training images of all ranks / training time of all epochs (data loading
  included, validation excluded).
* ``inference_images_per_s``: validation images of all ranks / time of the validation steps
  (network and pose decoding; data loading and the AP evaluation excluded).
* ``peak_memory_mb``: MiB (2**20 bytes) of ``memory_kind``: ``cuda_max_allocated``
  (``torch.cuda.max_memory_allocated`` of the rank's device) or ``cpu_max_rss`` (the process's
  maximum resident set, ``resource.getrusage``), both since the process started (nothing is reset);
  the maximum over ranks when training ends normally, rank 0's after a stop or failure, and over the
  sessions of a resumed run.
* ``wall_time_s``: seconds of ``fit``, summed over the sessions of a resumed run (an earlier
  session's time up to the checkpoint the run resumed from).
* ``device``: e.g. ``NVIDIA H100 80GB HBM3``, ``4 x NVIDIA H100 80GB HBM3``, ``cpu (2 threads)``.

A value not measured (no validation ran, no input size known, the count failed) is ``None``.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

log = logging.getLogger(__name__)

#: The keys of ``metrics.json``'s ``costs``, in order.
COST_KEYS = ("parameters", "trainable_parameters", "gflops", "input_size", "train_images_per_s",
             "inference_images_per_s", "peak_memory_mb", "memory_kind", "wall_time_s", "device")


def forward_flops(module: nn.Module, input: Tensor) -> int:
    """FLOPs of ``module.forward(input)`` counted by ``torch.utils.flop_counter.FlopCounterMode``
    (a multiply-add is 2 FLOPs), in eval mode without gradients; every submodule's train/eval mode
    is restored afterwards.

    ``module.forward`` is called rather than ``module(input)``: a module compiled in place
    (``nn.Module.compile``) would otherwise compile a graph for this one call.

    FlopCounterMode counts the matrix products and convolutions of the ATen operators it sees
    (``convolution``, ``mm``, ``bmm``, ``addmm``, ``baddbmm``, attention), nothing else: not
    normalisation, activations, additions, upsampling nor ``grid_sample``. For DEKR's adaptive
    convolution on the ``grid_sample`` backend it counts the 3x3 convolutions that predict the
    affine matrix and translation, the product of the sampled columns with the kernel (a ``bmm``:
    the deformable convolution's multiply-adds, as a plain 3x3 convolution of the same widths) and
    the affine grid offsets (an ``einsum``, tiny), but not the bilinear sampling itself.
    ``torchvision::deform_conv2d`` (the adaptive convolution's ``torchvision`` backend, the
    ``deformable`` offset block) is counted as the convolution it computes (:func:`deform_conv2d_flops`),
    its bilinear sampling not either, so every offset block is counted alike.
    """
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_custom_flops()) as counter:
            module.forward(input)
    finally:
        for m, training in modes.items():
            m.training = training
    return int(counter.get_total_flops())


def deform_conv2d_flops(input_shape: Any, weight_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs of ``torchvision::deform_conv2d``: those of the convolution of its weight (out, in/groups,
    kh, kw) producing ``out_shape`` (N, out, H, W), 2 per multiply-add; the sampling is not counted."""
    _, in_per_group, kh, kw = weight_shape
    n, out_channels, h, w = out_shape
    return 2 * n * out_channels * h * w * in_per_group * kh * kw


def _custom_flops() -> dict[Any, Any]:
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)

    return {torch.ops.torchvision.deform_conv2d: deform_conv2d_flops}


class RunCosts(Callback):
    """Measures a ``fit``'s costs (see the module docstring for the keys and units); read them with
    :meth:`costs`. Counts, times and memory are rank 0's; throughputs count the images of all
    ranks (``world_size`` x rank 0's). Its state in checkpoints carries the wall time, image counts,
    times and peak memory so far, so that a resumed run continues the sums.

    The FLOPs are counted once when ``fit`` starts, on rank 0: one batch-1 forward pass of
    ``pl_module.net`` (the LightningModule itself when it has no ``net``) on its device, at
    ``input_size``, else the datamodule's ``input_size`` (a square), else the size of the module's
    ``example_input_array``. See :func:`forward_flops` for what is counted.

    Training time runs from each training epoch's start to its last batch's end, data loading
    included, validation excluded (resumed after a validation in mid-epoch). Inference time is the
    sum of the validation steps (from ``on_validation_batch_start`` to ``on_validation_batch_end``),
    sanity check excluded. Both are host clocks between steps, not synchronised with the GPU: over
    many steps the queued work of the last one is negligible.

    At the end of training the numeric costs are also logged once to the trainer's loggers as
    ``cost/<key>``.

    Args:
        input_size: size of the FLOP count, ``S`` (square) or ``(H, W)``; ``None``: from the data.
        log_to_loggers: log the costs to the loggers at the end of training.
    """

    def __init__(self, input_size: int | tuple[int, int] | None = None, log_to_loggers: bool = True) -> None:
        self.input_size = input_size
        self.log_to_loggers = log_to_loggers
        self._reset()

    def _reset(self) -> None:
        self.parameters: int | None = None
        self.trainable_parameters: int | None = None
        self.gflops: float | None = None
        self.measured_size: list[int] | None = None
        self.train_images = 0
        self.train_seconds = 0.0
        self.inference_images = 0
        self.inference_seconds = 0.0
        self._prior_wall_time = 0.0  # the earlier sessions' (a resumed run's checkpoint)
        self._prior_peak: tuple[float, str] | None = None  # the earlier sessions' (MiB, kind)
        self._reduced_peak: float | None = None  # max over ranks, at the end of training
        self._session_start: float | None = None
        self._train_mark: float | None = None  # the training clock's last reading, None while stopped
        self._batch_start: float | None = None
        self._device = torch.device("cpu")  # this rank's, where its memory is measured

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._reset()  # a checkpoint's state, when resuming, is loaded after this
        self._session_start = time.perf_counter()
        self._device = trainer.strategy.root_device

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.parameters = sum(p.numel() for p in pl_module.parameters())
        self.trainable_parameters = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        if trainer.is_global_zero:
            self._count_flops(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._train_mark = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        if self._train_mark is not None:
            self.train_seconds += now - self._train_mark
            self.train_images += _batch_size(batch) * trainer.world_size
        self._train_mark = now

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._train_mark = None

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch_start = time.perf_counter()

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._batch_start is None or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        self.inference_seconds += time.perf_counter() - self._batch_start
        self.inference_images += _batch_size(batch) * trainer.world_size
        self._batch_start = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._train_mark is not None:  # a validation in mid-epoch: training time resumes now
            self._train_mark = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Every rank gets here (unlike on_exception), and the model is still on its device
        # (on_fit_end comes after the strategy's teardown): the one collective, and the loggers.
        peak, _ = _peak_memory(trainer.strategy.root_device)
        if peak is not None and trainer.world_size > 1:
            reduced = trainer.strategy.reduce(
                torch.tensor(peak, dtype=torch.float64, device=trainer.strategy.root_device), reduce_op="max")
            self._reduced_peak = float(reduced)
        if self.log_to_loggers and trainer.is_global_zero and trainer.loggers:
            numbers = {f"cost/{key}": float(value) for key, value in self.costs(trainer).items()
                       if isinstance(value, (int, float)) and not isinstance(value, bool)}
            for logger in trainer.loggers:
                logger.log_metrics(numbers, step=trainer.global_step)

    # ------------------------------------------------------------------ results
    def costs(self, trainer: L.Trainer) -> dict[str, Any]:
        """The costs so far (the keys of :data:`COST_KEYS`); rank 0's values are the run's."""
        peak, kind = _peak_memory(trainer.strategy.root_device)
        peak = _max_or_none(peak, self._reduced_peak)
        if self._prior_peak is not None and self._prior_peak[1] == kind:
            peak = _max_or_none(peak, self._prior_peak[0])
        return {
            "parameters": self.parameters,
            "trainable_parameters": self.trainable_parameters,
            "gflops": self.gflops,
            "input_size": self.measured_size,
            "train_images_per_s": _rate(self.train_images, self.train_seconds),
            "inference_images_per_s": _rate(self.inference_images, self.inference_seconds),
            "peak_memory_mb": None if peak is None else round(peak, 1),
            "memory_kind": kind,
            "wall_time_s": round(self.wall_time(), 3),
            "device": _device_name(trainer.strategy.root_device, trainer.world_size),
        }

    def wall_time(self) -> float:
        """Seconds of ``fit`` so far, the earlier sessions of a resumed run included."""
        session = 0.0 if self._session_start is None else time.perf_counter() - self._session_start
        return self._prior_wall_time + session

    def state_dict(self) -> dict[str, Any]:
        peak, kind = _peak_memory(self._device)
        if self._prior_peak is not None and self._prior_peak[1] == kind:
            peak = _max_or_none(peak, self._prior_peak[0])
        return {"wall_time_s": self.wall_time(), "train_images": self.train_images,
                "train_seconds": self.train_seconds, "inference_images": self.inference_images,
                "inference_seconds": self.inference_seconds, "peak_memory_mb": peak, "memory_kind": kind}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._prior_wall_time = float(state_dict.get("wall_time_s", 0.0))
        self.train_images = int(state_dict.get("train_images", 0))
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))
        self.inference_images = int(state_dict.get("inference_images", 0))
        self.inference_seconds = float(state_dict.get("inference_seconds", 0.0))
        peak = state_dict.get("peak_memory_mb")
        self._prior_peak = None if peak is None else (float(peak), str(state_dict.get("memory_kind")))

    # ------------------------------------------------------------------ FLOPs
    def _count_flops(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        size = self._flop_input_size(trainer, pl_module)
        if size is None:
            log.info("RunCosts: no input size known (no datamodule input_size or example_input_array): "
                     "FLOPs not counted")
            return
        net = getattr(pl_module, "net", None)
        net = net if isinstance(net, nn.Module) else pl_module
        reference = next(iter(net.parameters()), None)
        example = pl_module.example_input_array
        channels = example.shape[1] if isinstance(example, Tensor) and example.dim() == 4 else 3
        input = torch.zeros(1, channels, *size, device=trainer.strategy.root_device,
                            dtype=reference.dtype if reference is not None else torch.float32)
        try:
            with trainer.precision_plugin.forward_context():
                self.gflops = forward_flops(net, input) / 1e9
        except Exception:  # a figure for a table must not stop the training
            log.warning("RunCosts: counting the FLOPs at %s failed; gflops left out", size, exc_info=True)
            return
        self.measured_size = list(size)

    def _flop_input_size(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[int, int] | None:
        if self.input_size is not None:
            return _as_hw(self.input_size)
        size = getattr(getattr(trainer, "datamodule", None), "input_size", None)
        if size:
            return _as_hw(size)
        example = pl_module.example_input_array
        if isinstance(example, Tensor) and example.dim() >= 3:
            return int(example.shape[-2]), int(example.shape[-1])
        return None


def _as_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if not isinstance(size, (tuple, list)):
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


def _batch_size(batch: Any) -> int:
    """Images in a batch: a dict's ``image`` (a tensor or, in validation, a list of arrays), else
    the batch's own length."""
    if isinstance(batch, dict) and "image" in batch:
        batch = batch["image"]
    return int(batch.shape[0]) if isinstance(batch, Tensor) else len(batch)


def _rate(images: int, seconds: float) -> float | None:
    return round(images / seconds, 3) if images and seconds > 0 else None


def _max_or_none(a: float | None, b: float | None) -> float | None:
    values = [v for v in (a, b) if v is not None]
    return max(values) if values else None


def _peak_memory(device: torch.device) -> tuple[float | None, str]:
    """(MiB, kind) of this process: the CUDA allocator's peak on ``device``, else the maximum
    resident set (which includes what was loaded before ``fit``; dataloader workers not counted)."""
    if device.type == "cuda":
        try:
            return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
        except RuntimeError:  # e.g. a broken CUDA context after the error that stopped the run
            return None, "cuda_max_allocated"
    try:
        import resource
    except ImportError:  # Windows
        return None, "cpu_max_rss"
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return max_rss / (2**20 if sys.platform == "darwin" else 2**10), "cpu_max_rss"


def _device_name(device: torch.device, world_size: int) -> str:
    if device.type == "cuda":
        try:
            name = torch.cuda.get_device_name(device)
        except RuntimeError:
            name = "cuda"
    elif device.type == "cpu":
        name = f"cpu ({torch.get_num_threads()} threads)"
    else:
        name = device.type
    return name if world_size == 1 else f"{world_size} x {name}"
