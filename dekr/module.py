"""DEKRModule: the LightningModule that owns the network, the losses, optimisation and OKS-AP."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import lightning as L
import torch
from torch import Tensor

from dekr.data.spec import KeypointSpec, load_spec
from dekr.losses import LossConfig, dekr_loss
from dekr.models.dekr import DEKRNet, DEKRNetConfig

log = logging.getLogger(__name__)


@dataclass
class OptimConfig:
    """Optimiser and schedule. Defaults: the official COCO recipe.

    The official config sets weight decay 1e-4, but it reaches only the SGD branch: Adam runs
    without weight decay, hence 0.0 here.
    """

    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    milestones: list[int] = field(default_factory=lambda: [90, 120])
    gamma: float = 0.1
    backbone_lr_mult: float = 1.0
    freeze_backbone: bool = False


def _as_config(cls: type, value: Any) -> Any:
    """Accept a dataclass instance, a dict (checkpoint hparams) or None (defaults)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**value)
    raise TypeError(f"expected {cls.__name__} or dict, got {type(value).__name__}")


class DEKRModule(L.LightningModule):
    """DEKR for training, evaluation and inference.

    ``module(images)`` returns ``(heatmaps, offsets)`` in the official layout (see
    :class:`dekr.models.dekr.DEKRNet`).

    Args:
        net: architecture (backbone, K, head widths, ablation switches).
        spec: keypoint spec name (``coco``, ``crowdpose``) or path to a spec YAML.
        loss: loss factors.
        optim: optimiser and LR schedule.
        decode: test-time decoding options (see ``dekr.inference``); ``None`` takes the
            official test defaults for the spec.
    """

    def __init__(
        self,
        net: DEKRNetConfig | None = None,
        spec: str = "coco",
        loss: LossConfig | None = None,
        optim: OptimConfig | None = None,
        decode: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        net_cfg = _as_config(DEKRNetConfig, net)
        self.loss_cfg = _as_config(LossConfig, loss)
        self.optim_cfg = _as_config(OptimConfig, optim)
        self.spec: KeypointSpec = load_spec(spec)
        if self.spec.num_keypoints != net_cfg.num_keypoints:
            raise ValueError(f"spec {spec!r} has {self.spec.num_keypoints} keypoints but net.num_keypoints="
                             f"{net_cfg.num_keypoints}; set net.num_keypoints to match the dataset")
        self.decode_options = dict(decode or {})
        # Plain dicts in the checkpoint: loadable with torch.load(weights_only=True).
        self.save_hyperparameters({"net": asdict(net_cfg), "spec": spec, "loss": asdict(self.loss_cfg),
                                   "optim": asdict(self.optim_cfg), "decode": self.decode_options})
        self.net = DEKRNet(net_cfg)
        if self.optim_cfg.freeze_backbone:
            self.net.backbone.requires_grad_(False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3, H, W) normalised RGB -> heatmaps (N, K+1, H/4, W/4), offsets (N, 2K, H/4, W/4)."""
        return self.net(images)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        heatmaps, offsets = self(batch["image"])
        losses = dekr_loss(heatmaps, offsets, batch, self.loss_cfg)
        if not torch.isfinite(losses["loss"]):
            ids = batch.get("image_id")
            raise FloatingPointError(
                f"non-finite loss {losses['loss'].item()} at step {self.global_step} "
                f"(image ids {ids.tolist() if isinstance(ids, Tensor) else ids}); the last good checkpoint is kept"
            )
        batch_size = batch["image"].shape[0]
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=batch_size)
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

    @classmethod
    def from_official(cls, checkpoint: str, **kwargs: Any) -> "DEKRModule":
        """Build a module from keyword config (as :meth:`__init__`) and load an official DEKR ``.pth``."""
        from dekr.convert import convert_official_state_dict, load_official_state_dict

        module = cls(**kwargs)
        module.net.load_state_dict(convert_official_state_dict(load_official_state_dict(checkpoint), module.net))
        return module

