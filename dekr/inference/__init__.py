"""Decoding network outputs into poses: flip/multi-scale test, NMS, rescoring, smoothing.

Entry points: :func:`load` (any checkpoint -> a :class:`Predictor` for images, folders, videos and
cameras, results as :class:`PoseResult`) and, below it, :func:`predict_poses` (images -> poses in
original image coordinates) with a :class:`DecodeConfig` (``DecodeConfig.for_dataset(spec)`` gives
the official test values). Inputs: :mod:`dekr.inference.sources`; output folders:
:mod:`dekr.inference.outputs`.
"""
from dekr.inference.config import DecodeConfig
from dekr.inference.predict import Timer, decode_batch, predict_poses, to_coco_results
from dekr.inference.predictor import Predictor, load
from dekr.inference.result import PoseResult

__all__ = ["DecodeConfig", "PoseResult", "Predictor", "Timer", "decode_batch", "load", "predict_poses",
           "to_coco_results"]
