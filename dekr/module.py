"""DEKRModule: the LightningModule that owns the network, the losses, optimisation and OKS-AP."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import lightning as L
import torch
from torch import Tensor

from dekr.checkpoint import SPEC_CONTENTS_KEY, TEST_INPUT_SIZE_KEY
from dekr.data.spec import KeypointSpec, load_spec
from dekr.dataclass_config import as_config
from dekr.losses import LossConfig, dekr_loss
from dekr.models.dekr import DEKRNet, DEKRNetConfig

log = logging.getLogger(__name__)


@dataclass
class OptimConfig:
    """Optimiser and schedule. Defaults: the official COCO recipe.

    The official config sets weight decay 1e-4, but it reaches only the SGD branch: Adam runs
    without weight decay, hence 0.0 here.

    Attributes:
        optimizer: ``adam`` (official), ``adamw`` or ``sgd``.
        lr: base learning rate (heads; the backbone gets ``lr * backbone_lr_mult``).
        weight_decay: L2 (adam, sgd) or decoupled (adamw) weight decay.
        momentum: SGD momentum.
        milestones: epochs at which the lr is multiplied by ``gamma`` (official COCO: 90, 120 of 140;
            CrowdPose: 200, 260 of 300).
        gamma: multiplicative lr decay at each milestone.
        backbone_lr_mult: backbone lr factor (fine-tuning: e.g. 0.1).
        freeze_backbone: no gradients for the backbone (its BatchNorm statistics are frozen too).
    """

    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    milestones: list[int] = field(default_factory=lambda: [90, 120])
    gamma: float = 0.1
    backbone_lr_mult: float = 1.0
    freeze_backbone: bool = False


class DEKRModule(L.LightningModule):
    """DEKR for training, evaluation and inference.

    ``module(images)`` returns ``(heatmaps, offsets)`` in the official layout (see
    :class:`dekr.models.dekr.DEKRNet`). When ``fit`` sets up with a datamodule that has an
    ``input_size`` S, ``example_input_array`` becomes zeros (1, 3, S, S), so that Lightning's model
    summary counts FLOPs (not for a compiled network).

    Validation (and test) batches hold the original images (a list of (H, W, 3) uint8 RGB
    arrays, see :mod:`dekr.data.datamodule`): poses are decoded with
    :func:`dekr.inference.predict_poses` and fed to :class:`dekr.metrics.oks_ap.OKSAP` built from
    the datamodule's ``val_ground_truth``; the AP/AR figures are logged as ``val/AP``, ``val/AP50``,
    ... at the end of the epoch. Batches in the training layout (with ``heatmap``) give a
    validation loss instead (``val/loss``).

    Args:
        net: architecture (backbone, K, head widths, ablation switches, init); its ImageNet
            ``pretrained_backbone`` is loaded when ``fit`` starts without a checkpoint to resume
            and without ``init_from`` (which brings its own backbone).
        spec: keypoint spec name (``coco``, ``crowdpose``), path to a spec YAML, or its contents
            (a dict, as :meth:`from_checkpoint` passes the one a checkpoint carries).
        loss: loss factors.
        optim: optimiser and LR schedule.
        decode: test-time decoding options (fields of ``dekr.inference.DecodeConfig``); ``None``
            takes the official test defaults for the spec.
        init_from: fine-tuning: one of our ``.ckpt`` files or an official DEKR ``.pth`` whose
            matching tensors initialise the network at the start of ``fit`` (not when resuming);
            keypoint heads are remapped by keypoint name. See :mod:`dekr.finetune`.
        init_from_spec: keypoint spec of an official ``init_from`` file (default: ``coco`` for 17
            keypoints, ``crowdpose`` for 14); ignored for our checkpoints, which record it.
        compile: compile the network in place with ``nn.Module.compile`` (training and evaluation
            forward passes; parameter names and checkpoints unchanged).
        compile_options: keyword arguments of ``torch.compile`` (e.g. ``{"mode": "max-autotune"}``,
            or ``{"backend": "aot_eager"}`` to check graph capture without code generation).
        metric_backend: OKS-AP backend, ``faster_coco_eval`` or ``pycocotools`` (same numbers).
    """

    def __init__(
        self,
        net: DEKRNetConfig | None = None,
        spec: str | dict[str, Any] = "coco",
        loss: LossConfig | None = None,
        optim: OptimConfig | None = None,
        decode: dict[str, Any] | None = None,
        init_from: str | None = None,
        init_from_spec: str | None = None,
        compile: bool = False,
        compile_options: dict[str, Any] | None = None,
        metric_backend: str = "faster_coco_eval",
    ) -> None:
        super().__init__()
        net_cfg = as_config(DEKRNetConfig, net, "DEKRNetConfig")
        self.loss_cfg = as_config(LossConfig, loss, "LossConfig")
        self.optim_cfg = as_config(OptimConfig, optim, "OptimConfig")
        self.spec: KeypointSpec = load_spec(spec)
        if self.spec.num_keypoints != net_cfg.num_keypoints:
            raise ValueError(f"spec {spec!r} has {self.spec.num_keypoints} keypoints but net.num_keypoints="
                             f"{net_cfg.num_keypoints}; set net.num_keypoints to match the dataset")
        from dekr.inference.config import merge_decode_options

        self.decode_options = merge_decode_options(("model.decode", decode))  # checked now, not at validation
        self.init_from = init_from
        self.init_from_spec = init_from_spec
        self.compile_options = dict(compile_options or {}) if compile else None
        self.metric_backend = metric_backend
        # Plain dicts in the checkpoint: loadable with torch.load(weights_only=True).
        self.save_hyperparameters({"net": asdict(net_cfg), "spec": spec, "loss": asdict(self.loss_cfg),
                                   "optim": asdict(self.optim_cfg), "decode": self.decode_options,
                                   "init_from": init_from, "init_from_spec": init_from_spec,
                                   "compile": compile, "compile_options": compile_options,
                                   "metric_backend": metric_backend})
        # The ImageNet backbone is loaded when a fit starts from scratch (on_fit_start), not here:
        # a module rebuilt to evaluate, export or resume a checkpoint never needs (or downloads) it.
        self.net = DEKRNet(replace(net_cfg, pretrained_backbone=False))
        self.pretrained_backbone = net_cfg.pretrained_backbone
        if self.optim_cfg.freeze_backbone:
            self.net.backbone.requires_grad_(False)
        self.val_metric: Any = None
        self.test_metric: Any = None
        self.transfer_report: Any = None

    # ------------------------------------------------------------------ forward
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3, H, W) normalised RGB -> heatmaps (N, K+1, H/4, W/4), offsets (N, 2K, H/4, W/4)."""
        return self.net(images)

    def configure_model(self) -> None:
        if self.compile_options is not None and self.net._compiled_call_impl is None:
            self.net.compile(**self.compile_options)

    def train(self, mode: bool = True) -> "DEKRModule":
        super().train(mode)
        if mode and self.optim_cfg.freeze_backbone:
            # A frozen backbone keeps its BatchNorm statistics too (standard fine-tuning practice).
            self.net.backbone.eval()
        return self

    # ------------------------------------------------------------------ fine-tuning
    def on_fit_start(self) -> None:
        # Here and not in __init__ / setup: only now is it known whether fit resumes from a
        # checkpoint (then the checkpoint's weights win, and neither the ImageNet backbone nor
        # init_from is read at all). Every DDP process loads the same files.
        if self.trainer.ckpt_path is None:
            # init_from brings a whole DEKR network, backbone included: ImageNet weights loaded
            # first would be overwritten, so a fine-tune neither needs nor reads them.
            if self.init_from:
                self.apply_init_from()
            elif self.pretrained_backbone:
                self.net.backbone.load_pretrained(self.pretrained_backbone)
        self._reset_metric(self.val_metric)  # the sanity check updated it

    def apply_init_from(self) -> Any:
        """Initialise the network from ``init_from`` (see :func:`dekr.finetune.transfer_from_file`)."""
        from dekr.finetune import transfer_from_file

        report = transfer_from_file(self.net, self.init_from, self.spec, source_spec=self.init_from_spec)
        self.transfer_report = report
        if self.trainer is None or self.trainer.is_global_zero:
            log.info("%s", report.format())
            fresh_backbone = [key for key in report.fresh if key.startswith("backbone.")]
            if fresh_backbone:  # e.g. a W48 file into a W32 network: its backbone trains from scratch
                log.warning("init_from %s left %d backbone tensors freshly initialised (%s, ...): is it the "
                            "same backbone as model.net.backbone?", self.init_from, len(fresh_backbone),
                            fresh_backbone[0])
        return report

    # ------------------------------------------------------------------ training
    def compute_losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Forward a training batch and return ``loss``, ``heatmap_loss`` and ``offset_loss``
        (factors applied). The losses keep the outputs' dtype (float32, or float64 for a float64
        module), except that half-precision outputs under mixed precision are computed in float32.

        Batch keys: ``image`` (N, 3, H, W); ``heatmap``, ``heatmap_weight`` (N, K+1, H/4, W/4);
        ``offset``, ``offset_weight`` (N, 2K, H/4, W/4).
        """
        heatmaps, offsets = self(batch["image"])
        return dekr_loss(heatmaps, offsets, batch, self.loss_cfg)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        losses = self.compute_losses(batch)
        if not torch.isfinite(losses["loss"]):
            ids = batch.get("image_id")
            raise FloatingPointError(
                f"non-finite loss {losses['loss'].item()} at epoch {self.current_epoch} step {self.global_step} "
                f"(image ids {ids.tolist() if isinstance(ids, Tensor) else ids}); training stopped, "
                "the last good checkpoint is kept"
            )
        batch_size = batch["image"].shape[0]
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=batch_size)
        self.log("train/epoch_loss", losses["loss"], on_step=False, on_epoch=True, batch_size=batch_size,
                 sync_dist=True)
        return losses["loss"]

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.optim_cfg
        backbone = [p for p in self.net.backbone.parameters() if p.requires_grad]
        heads = [p for n, p in self.net.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
        groups = [{"params": heads, "lr": cfg.lr}]
        if backbone:
            groups.append({"params": backbone, "lr": cfg.lr * cfg.backbone_lr_mult})
        if cfg.optimizer == "adam":
            optimizer = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        else:
            raise ValueError(f"optim.optimizer must be adam, adamw or sgd, got {cfg.optimizer!r}")
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones, cfg.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    # ------------------------------------------------------------------ evaluation
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "spec"):
            return
        if datamodule.spec.keypoint_names != self.spec.keypoint_names:
            raise ValueError(f"the data's keypoint spec {datamodule.spec.name!r} ({datamodule.spec.num_keypoints} "
                             f"keypoints) differs from the model's spec {self.spec.name!r} "
                             f"({self.spec.num_keypoints}); set model.spec and model.net.num_keypoints to match")
        size = self.data_input_size()
        if stage == "fit" and size and self.compile_options is None:
            # Lightning's ModelSummary forwards this once (batch 1, eval, no_grad) to show FLOPs; at the
            # data's input size, the test size too. Not for a compiled network: the summary would compile
            # one more graph just for it. In the precision's input dtype ("bf16-true" weights).
            example = torch.zeros(1, 3, size, size)
            self.example_input_array = self.trainer.precision_plugin.convert_input(example)
        if stage in ("fit", "validate") and self.val_metric is None:
            self.val_metric = self._make_metric(datamodule.val_ground_truth)
        if stage == "test" and self.test_metric is None:
            self.test_metric = self._make_metric(datamodule.test_ground_truth)

    def _make_metric(self, ground_truth: Any) -> Any:
        from dekr.metrics.oks_ap import OKSAP

        # A child module, so that it moves to the device (NCCL gathers device tensors); its list
        # states are not persistent, so checkpoints do not change.
        return OKSAP(ground_truth, self.spec, backend=self.metric_backend)

    @staticmethod
    def _reset_metric(metric: Any) -> None:
        if metric is not None:
            metric.reset()

    def decode_config(self) -> Any:
        """The ``DecodeConfig`` for validation/test (:func:`dekr.inference.config.resolve_decode`):
        the official test values for the spec, the data's input size (unless ``decode`` sets one),
        then the ``decode`` options."""
        from dekr.inference.config import resolve_decode

        size = self.data_input_size()
        data = {"input_size": size} if size and "input_size" not in self.decode_options else {}
        return resolve_decode(self.spec, ("data.input_size", data), ("model.decode", self.decode_options))

    def data_input_size(self) -> int | None:
        """The attached datamodule's ``input_size`` (pixels), None without a trainer or datamodule."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        size = getattr(datamodule, "input_size", None)
        return int(size) if size else None

    def predict_batch_poses(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Decode the poses of an evaluation batch: one dict per image with ``image_id``,
        ``keypoints`` (P, K, 3) (x, y, score in original image pixels) and ``scores`` (P,)."""
        from dekr.inference import predict_poses

        was_training = self.net.training
        self.net.eval()
        try:
            with torch.no_grad():
                cfg = self.decode_config()
                # a checkpoint's own rescoring net (from_checkpoint), unless decode.rescore names a file
                carried = None if cfg.rescore else self.__dict__.get("carried_rescore")
                poses = predict_poses(self.net, batch["image"], self.spec, cfg, rescore_net=carried)
        finally:
            self.net.train(was_training)
        out = []
        for image_id, pose in zip(batch["image_id"], poses):
            out.append({"image_id": int(image_id), "keypoints": pose["keypoints"], "scores": pose["scores"]})
        return out

    def _eval_step(self, batch: dict[str, Any], metric: Any, prefix: str) -> list[dict[str, Any]] | None:
        if isinstance(batch.get("heatmap"), Tensor):  # a batch in the training layout: loss only
            heatmaps, offsets = self(batch["image"])
            losses = dekr_loss(heatmaps.float(), offsets.float(), batch, self.loss_cfg)
            self.log_dict({f"{prefix}/{k}": v for k, v in losses.items()}, sync_dist=True,
                          batch_size=batch["image"].shape[0])
            return None
        if metric is None:
            raise RuntimeError(f"{prefix} batches of original images need a datamodule with a ground truth "
                               "(DEKRDataModule); none is attached to the trainer")
        preds = self.predict_batch_poses(batch)
        metric.update(preds)
        return preds

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]] | None:
        """Decode and score one batch; returns the poses (for callbacks, e.g. the image logger)."""
        return self._eval_step(batch, self.val_metric, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]] | None:
        return self._eval_step(batch, self.test_metric, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        return self.predict_batch_poses(batch)

    def _log_metric(self, metric: Any, prefix: str) -> None:
        """Log the metric's AP/AR figures (``trainer.validate``/``test`` return them) and reset it."""
        # Gather the list states of every rank once (torchmetrics sync), evaluate, un-sync.
        with metric.sync_context(should_sync=self.trainer.world_size > 1 if self._trainer else False):
            stats = metric.compute_with(metric.backend_name)
            _, seen = metric.results()
        values = {f"{prefix}/{k}": float(v) for k, v in stats.items()}
        values[f"{prefix}/num_images"] = float(len(seen))
        # Every rank holds the same gathered value: no sync_dist (AP is not an average).
        ap_key = f"{prefix}/AP"
        self.log(ap_key, values.pop(ap_key), prog_bar=True)
        self.log_dict(values, prog_bar=False)
        metric.reset()

    def on_validation_epoch_start(self) -> None:
        self._reset_metric(self.val_metric)

    def on_validation_epoch_end(self) -> None:
        if self.val_metric is not None and self.val_metric.update_count:
            self._log_metric(self.val_metric, "val")

    def on_test_epoch_start(self) -> None:
        self._reset_metric(self.test_metric)

    def on_test_epoch_end(self) -> None:
        if self.test_metric is not None and self.test_metric.update_count:
            self._log_metric(self.test_metric, "test")

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The spec's contents go with the weights (``hyper_parameters["spec"]`` is only its name or
        path), so the checkpoint loads where the spec file is not; so does the data's input size,
        the test size of validation that loading the checkpoint elsewhere keeps."""
        checkpoint[SPEC_CONTENTS_KEY] = self.spec.to_dict()
        if size := self.data_input_size():  # the test size of validation goes with it (dekr.load)
            checkpoint[TEST_INPUT_SIZE_KEY] = size

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse, with the differing fields named, to resume from another architecture or spec
        (Lightning calls this before it loads the weights)."""
        from dekr.checkpoint import check_resume_compatible

        check_resume_compatible(checkpoint.get("hyper_parameters", {}), dict(self.hparams), self.spec)

    @classmethod
    def from_checkpoint(cls, source: str, spec: str | None = None, **kwargs: Any) -> "DEKRModule":
        """A module holding the network of any checkpoint :func:`dekr.checkpoint.load_checkpoint`
        reads (ours, official, MMPose, SuperGradients, a zoo name), e.g. to evaluate or keep training
        it. The architecture, spec, decode options and rescoring net come from the checkpoint;
        ``kwargs`` set the other arguments of :meth:`__init__` (``decode`` is merged over the
        checkpoint's)."""
        from dekr.checkpoint import load_checkpoint
        from dekr.inference.config import merge_decode_options

        loaded = load_checkpoint(source, spec=spec)
        user = ("from_checkpoint(decode=...)", kwargs.pop("decode", None))
        decode = merge_decode_options(loaded.decode_layer, user)
        kwargs.pop("net", None)
        module = cls(net=loaded.net.config.to_dict(), spec=spec or loaded.spec.to_dict(), decode=decode, **kwargs)
        module.net.load_state_dict(loaded.net.state_dict())
        # Kept out of the module registry (not a trained part: no optimizer, no state dict entry);
        # used by evaluation as the checkpoint's authors did.
        module.__dict__["carried_rescore"] = loaded.rescore
        return module
