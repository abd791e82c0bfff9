"""``dekr.load(...)``: a checkpoint ready to predict poses on images, folders, videos and cameras.

    import dekr
    model = dekr.load("runs/demo/checkpoints/best.ckpt")   # ours, official / MMPose / SG .pth, .onnx, zoo name
    result = model("photo.jpg")[0]                            # PoseResult: keypoints (P, K, 3), scores (P,)
    print(result)                                            # PoseResult('photo.jpg', 3 poses, ...)
    result.save("poses.jpg")
    for frame in model.stream("clip.mp4"):                   # tracked (track_ids) and smoothed
        ...
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from dekr.data.spec import KeypointSpec
from dekr.inference.config import DecodeConfig, resolve_decode
from dekr.inference.result import PoseResult
from dekr.inference.smoothing import PoseSmoother, SmoothingConfig
from dekr.inference.sources import (
    Frame,
    ImageFiles,
    Source,
    VideoSource,
    image_ids,
    list_folder,
    open_source,
    read_image,
)
from dekr.inference.tracking import PoseTracker, TrackingConfig

ImageInput = np.ndarray | str | Path


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; a CUDA device without CUDA is a ValueError."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} but CUDA is not available here; use device='cpu'")
    return name


class Predictor:
    """A network with its keypoint spec, decoding options and rescoring net.

    Call it on images (``(H, W, 3)`` uint8 RGB arrays), image files, folders or a list of those:
    one :class:`PoseResult` per image. :meth:`stream` reads a video, a camera or a frame folder and
    tracks and smooths the poses. Poses scoring under ``decode.pose_thr`` are dropped (the same
    option and default as ``scripts/infer.py --pose-thr``); scores are never negative.

    Attributes:
        net: ``(N, 3, H, W)`` -> (heatmaps, offsets) (a ``DEKRNet`` in eval mode or an ONNX model).
        spec: keypoint spec.
        decode: decoding options (``decode.batch_size`` images per forward pass, ``decode.pose_thr``).
        rescore_net: the rescoring net the checkpoint carries, or None.
        device: where the network runs.
        source: the checkpoint loaded.
    """

    def __init__(self, net: Any, spec: KeypointSpec, decode: DecodeConfig | None = None, rescore_net: Any = None,
                 device: str = "cpu", source: str = "", format: str = "ours") -> None:
        self.net, self.spec, self.rescore_net = net, spec, rescore_net
        self.decode = decode or DecodeConfig.for_dataset(spec)
        self.device, self.source, self.format = device, source, format

    def __repr__(self) -> str:
        return (f"Predictor({self.source or 'net'!s}: {self.format}, spec {self.spec.name}, "
                f"{self.spec.num_keypoints} keypoints, {self.device})")

    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """RGB images -> per image (keypoints (P, K, 3) float32, scores (P,)) numpy, in one call of
        :func:`dekr.inference.predict_poses` (batched by ``decode.batch_size``): every candidate (no
        ``pose_thr``), keypoint and pose scores clipped at 0."""
        from dekr.inference.predict import predict_poses

        preds = predict_poses(self.net, list(images), self.spec, self.decode, rescore_net=self.rescore_net)
        out = []
        for pred in preds:
            keypoints = pred["keypoints"].detach().cpu().numpy()
            scores = pred["scores"].detach().cpu().numpy()
            # The heatmap head is linear (no sigmoid), so far from any person it undershoots 0 a little and
            # the scores read from it can be slightly negative (-3e-5). predict_poses keeps them, as the
            # official decoder does: the evaluation ranks every candidate by them, and the AP matches the
            # official code's. A score given to a user is a confidence, which is never below 0.
            keypoints[..., 2] = keypoints[..., 2].clip(min=0.0)
            out.append((keypoints, scores.clip(min=0.0)))
        return out

    def predict_frames(self, frames: Iterable[Frame], pose_thr: float | None = None,
                       batch_size: int | None = None) -> Iterator[PoseResult]:
        """Frames -> results, in order, ``batch_size`` (default ``decode.batch_size``) per forward pass;
        poses scoring under ``pose_thr`` (default ``decode.pose_thr``) are dropped."""
        batch_size = batch_size or self.decode.batch_size
        pose_thr = self.decode.pose_thr if pose_thr is None else pose_thr
        chunk: list[Frame] = []
        for frame in frames:
            chunk.append(frame)
            if len(chunk) >= batch_size:
                yield from self._results(chunk, pose_thr)
                chunk = []
        if chunk:
            yield from self._results(chunk, pose_thr)

    def _results(self, frames: list[Frame], pose_thr: float) -> Iterator[PoseResult]:
        for frame, (kps, scores) in zip(frames, self.predict_arrays([f.image for f in frames])):
            keep = scores >= pose_thr
            yield PoseResult(kps[keep], scores[keep], frame.image, self.spec, frame.name, frame.image_id,
                             frame=frame.index if frame.time is not None else None, time=frame.time)

    def __call__(self, inputs: ImageInput | Sequence[ImageInput], pose_thr: float | None = None) -> list[PoseResult]:
        """Poses of an image array, an image file, a folder of images, or a list of those.

        Args:
            inputs: (H, W, 3) uint8 RGB arrays, image files, folders, or a list of them.
            pose_thr: poses scoring under this are dropped (default ``decode.pose_thr``; 0 keeps all).

        Returns:
            one :class:`PoseResult` per image (a folder: its image files, sorted); an unreadable file
            raises :class:`dekr.inference.sources.InputError`.
        """
        items = [inputs] if isinstance(inputs, (np.ndarray, str, Path)) else list(inputs)
        frames: list[Frame] = []
        for item in items:
            if isinstance(item, np.ndarray):
                frames.append(Frame(item, "", len(frames), None))
                continue
            path = Path(item)
            paths = list_folder(path)[0] if path.is_dir() else [path]
            for file, image_id in zip(paths, image_ids(paths)):
                frames.append(Frame(read_image(file), file.name, len(frames), image_id))
        return list(self.predict_frames(frames, pose_thr))

    def stream(self, source: str | int | Path | Source, tracking: TrackingConfig | dict | None = None,
               smoothing: SmoothingConfig | dict | None = None, fps: float | None = None,
               max_frames: int | None = None, pose_thr: float | None = None) -> Iterator[PoseResult]:
        """Per-frame results of a video file, a camera index or a folder of frames, with ``track_ids``
        (greedy OKS tracking) and One Euro smoothed keypoints.

        Args:
            source: a video file, a camera index, a folder of consecutive frames, or an opened source
                (:func:`dekr.inference.sources.open_source`).
            tracking, smoothing: options (dataclasses or dicts); ``enabled=False`` turns either off.
            fps: frame rate for smoothing (default: the video's, else 30).
            max_frames: stop a video, camera or folder of frames after this many frames.
            pose_thr: poses scoring under this are dropped before tracking (default ``decode.pose_thr``).
        """
        if not isinstance(source, (ImageFiles, VideoSource)):
            source = open_source(source, sequence=True, fps=fps, max_frames=max_frames)
        tracker = PoseTracker(self.spec.sigmas, tracking if isinstance(tracking, TrackingConfig)
                              else TrackingConfig.from_dict(tracking))
        smoother = PoseSmoother(smoothing if isinstance(smoothing, SmoothingConfig)
                                else SmoothingConfig.from_dict(smoothing))
        if not tracker.cfg.enabled:
            smoother.cfg = replace(smoother.cfg, enabled=False)  # not the caller's object
        # A camera wants latency, not throughput: one frame per forward pass.
        batch_size = 1 if source.kind == "camera" else None
        for result in self.predict_frames(source, pose_thr, batch_size):
            result.track_ids = tracker.update(result.keypoints, result.scores)
            if len(result.keypoints):
                result.keypoints = smoother(result.keypoints, result.track_ids, result.time or 0.0).astype(np.float32)
            yield result


def load(name_or_path: str | Path, device: str = "auto", spec: str | KeypointSpec | None = None,
         **decode_options: Any) -> Predictor:
    """Load any DEKR checkpoint for prediction.

    Args:
        name_or_path: ours ``.ckpt``, official / MMPose / SuperGradients ``.pth``, an exported ``.onnx``
            or a model-zoo name (:func:`dekr.checkpoint.load_checkpoint`).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``.
        spec: the keypoint spec you expect (an error when the checkpoint is for another).
        decode_options: :class:`DecodeConfig` fields over the checkpoint's own (``input_size``,
            ``flip_test``, ``scales``, ``batch_size``, ``pose_thr``, ``autocast_dtype="bfloat16"``, ...);
            the order: :mod:`dekr.inference.config`.
    """
    from dekr.checkpoint import load_checkpoint
    from dekr.inference.rescore import load_rescore_net

    device = resolve_device(device)
    loaded = load_checkpoint(name_or_path, spec=spec)
    cfg = resolve_decode(loaded.spec, loaded.decode_layer, ("dekr.load options", decode_options))
    net = loaded.net
    if loaded.format == "onnx":
        if device.startswith("cuda"):  # the same file on onnxruntime's CUDA provider
            from dekr.export import OnnxPoseNet

            net = OnnxPoseNet(name_or_path, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    else:
        net = net.to(device).eval()
    # The rescoring net a checkpoint carries is used as its authors did, unless decode names another
    # (loaded now: one for another skeleton is refused here, before any image is read).
    rescore = load_rescore_net(cfg.rescore, loaded.spec).to(device) if cfg.rescore else loaded.rescore
    return Predictor(net, loaded.spec, cfg, rescore, device, loaded.source or str(name_or_path), loaded.format)
