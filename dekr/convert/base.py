"""What every checkpoint converter returns: our network's architecture and weights, plus what the
source model needs at inference (its rescoring net, preprocessing and decode options)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from dekr.models.dekr import DEKRNetConfig


@dataclass
class ConvertedCheckpoint:
    """A foreign DEKR checkpoint in our terms.

    Attributes:
        format: ``official``, ``mmpose`` or ``supergradients``.
        net_config: the architecture, read off the tensor shapes (width, K, head sizes, switches).
        state_dict: the weights under :class:`dekr.models.dekr.DEKRNet`'s keys, every key filled.
        rescore_state: the rescoring net's ``l1``/``l2``/``l3`` weights and biases when the file
            carries one (MMPose, SuperGradients), else None.
        decode: :class:`dekr.inference.DecodeConfig` fields the model needs to be used as its
            authors used it (e.g. input channel order, letterboxing); empty for official files.
    """

    format: str
    net_config: DEKRNetConfig
    state_dict: dict[str, Tensor]
    rescore_state: dict[str, Tensor] | None = None
    decode: dict[str, Any] = field(default_factory=dict)
