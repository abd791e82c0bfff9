"""Checkpoint layouts of other DEKR implementations, converted to ours.

* :mod:`dekr.convert.official`: HRNet/DEKR ``pose_dekr_hrnet*.pth`` (and its reverse mapping);
* :mod:`dekr.convert.mmpose`: MMPose 1.x DEKR (via the official layout), with its rescoring net;
* :mod:`dekr.convert.supergradients`: SuperGradients ``dekr_w32_no_dc`` (plain offset blocks,
  sigmoid heatmaps, BGR letterboxed input).

Each ``convert_<format>(raw)`` takes what ``torch.load`` returned and gives a
:class:`~dekr.convert.base.ConvertedCheckpoint`, or None when the content is not its format;
:func:`dekr.checkpoint.load_checkpoint` tries them in turn.

Every converter is strict: each key of the source is used once and each tensor of ours is filled,
or a :class:`CheckpointMismatchError` lists what does not fit.
"""
from dekr.convert.mmpose import convert_mmpose, mmpose_to_official
from dekr.convert.official import (
    CheckpointMismatchError,
    convert_official,
    convert_official_state_dict,
    load_official_state_dict,
    official_net_config,
    to_official_state_dict,
)
from dekr.convert.supergradients import convert_supergradients

__all__ = [
    "CheckpointMismatchError",
    "convert_mmpose",
    "convert_official",
    "convert_official_state_dict",
    "convert_supergradients",
    "load_official_state_dict",
    "mmpose_to_official",
    "official_net_config",
    "to_official_state_dict",
]
