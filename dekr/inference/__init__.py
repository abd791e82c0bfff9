"""Decoding network outputs into poses: flip/multi-scale test, NMS, rescoring, smoothing.

Entry point: :func:`predict_poses` (images -> poses in original image coordinates) with a
:class:`DecodeConfig` (``DecodeConfig.for_dataset(spec)`` gives the official test values).
"""
from dekr.inference.config import DecodeConfig
from dekr.inference.predict import Timer, decode_batch, predict_poses, to_coco_results

__all__ = ["DecodeConfig", "Timer", "decode_batch", "predict_poses", "to_coco_results"]
