"""Decoding network outputs into poses: flip/multi-scale test, NMS, rescoring, smoothing."""

