"""The high-level entry point: images -> poses in original image coordinates.

``predict_poses(net, images, spec, cfg)`` resizes (official aligned resize, every test scale),
batches images whose canvases share a shape (or pads them, ``cfg.pad_batch``), runs the network
once per batch and scale (flipped copies in the same forward pass), decodes all images of a batch
together on the network's device, applies pose NMS, optional heatmap matching and rescoring,
and maps the poses back to the original images.
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from dekr.data.spec import KeypointSpec
from dekr.inference.config import DecodeConfig
from dekr.inference.decode import (
    ScaleProposals,
    absorb_to_peaks,
    aggregate_scales,
    decode_scale,
    heat_values,
    upsampled_heatmaps,
)
from dekr.inference.nms import pose_nms
from dekr.inference.preprocess import ResizeInfo, check_image, resize_image, resize_info, to_input_tensor
from dekr.inference.refine import gaussian_refine
from dekr.inference.rescore import RescoreNet, load_rescore_net, rescore

Net = Callable[[Tensor], tuple[Tensor, Tensor]]


class Timer:
    """Accumulates wall time per stage (synchronising CUDA); used by the benchmark."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.device = device

    @contextlib.contextmanager
    def __call__(self, stage: str):
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        self.totals[stage] += time.perf_counter() - start

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _null_timer(stage: str):
    return contextlib.nullcontext()


def _net_device(net: Net) -> torch.device:
    if isinstance(net, torch.nn.Module):
        for p in net.parameters():
            return p.device
        for b in net.buffers():
            return b.device
    return torch.device(getattr(net, "device", "cpu"))


_RESCORE_CACHE: dict[tuple[str, str], RescoreNet] = {}


def _rescore_net(cfg: DecodeConfig, spec: KeypointSpec, device: torch.device) -> RescoreNet | None:
    if not cfg.rescore:
        return None
    key = (str(cfg.rescore), str(device))
    if key not in _RESCORE_CACHE:
        _RESCORE_CACHE[key] = load_rescore_net(cfg.rescore, spec).to(device)
    return _RESCORE_CACHE[key]


def run_net(net: Net, batch: Tensor, cfg: DecodeConfig) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Forward the batch (and its flipped copy in the same pass when flip testing)."""
    if cfg.flip_test:
        flipped = batch.flip(-1)
        shift = cfg.flip_shift
        if shift:
            # Official: the flipped image moves left by `shift` pixels (the last columns repeat).
            flipped[..., :-shift] = flipped[..., shift:].clone()
        batch = torch.cat([batch, flipped], dim=0)
    autocast = (torch.autocast(batch.device.type, dtype=getattr(torch, cfg.autocast_dtype))
                if cfg.autocast_dtype else contextlib.nullcontext())
    with torch.inference_mode(), autocast:
        heatmaps, offsets = net(batch)
    heatmaps, offsets = heatmaps.float(), offsets.float()
    if cfg.flip_test:
        n = batch.shape[0] // 2
        return heatmaps[:n], offsets[:n], heatmaps[n:], offsets[n:]
    return heatmaps, offsets, None, None


def decode_batch(outputs: Sequence[tuple[Tensor, Tensor, Tensor | None, Tensor | None]], infos: Sequence[ResizeInfo],
                 spec: KeypointSpec, cfg: DecodeConfig, base_size: tuple[int, int],
                 valid_sizes: Sequence[Tensor | None] | None = None, timer: Callable = _null_timer,
                 rescore_net: RescoreNet | None = None
                 ) -> list[dict[str, Tensor]]:
    """Decode the network outputs of N images at every scale (``cfg.scales`` order) into final poses.

    Args:
        outputs: per scale (heatmaps, offsets, heatmaps_flipped, offsets_flipped), each (N, C, h, w).
        infos: per image, its resize (for the way back to original coordinates).
        base_size: (W, H) of the scale-1 input canvas of the batch.
        valid_sizes: per scale, (N, 2) own output-map sizes when the batch was padded.
    """
    with timer("decode"):
        proposals: list[ScaleProposals] = []
        for i, (scale, (hm, off, hm_f, off_f)) in enumerate(zip(cfg.scales, outputs)):
            proposals.append(decode_scale(
                hm, off, scale, cfg.output_stride, cfg.max_num_people, cfg.keypoint_threshold, cfg.pool_thresholds,
                spec.flip_index, hm_f, off_f, cfg.flip_shift, None if valid_sizes is None else valid_sizes[i]))
        poses, center_scores, valid = aggregate_scales(proposals, list(cfg.scales), cfg.decrease)
        heat = heat_values(proposals, poses, base_size)  # (N, Q, K)
        heat_score = heat.mean(dim=-1)
        keypoint_scores = center_scores[..., None] * heat
    with timer("nms"):
        keep = pose_nms(poses, heat_score, valid, cfg.nms_thre, cfg.nms_num_thre, cfg.max_num_people)
    with timer("decode"):
        heat_up = upsampled_heatmaps(proposals) if cfg.match_heatmap else None
        device = poses.device
        rescorer = rescore_net.to(device) if rescore_net is not None else _rescore_net(cfg, spec, device)
        xys = [poses[n, kept] for n, kept in enumerate(keep)]
        kp_scores = [keypoint_scores[n, kept] for n, kept in enumerate(keep)]
        if heat_up is not None:
            # official MATCH_HMP: absorb to heatmap peaks, then Gaussian-fit refinement (all images at once);
            # the refinement threshold reads the scores from before the absorb step, as officially
            xys = [absorb_to_peaks(xy, heat_up[n], cfg.max_num_people, cfg.max_absorb_distance) if len(xy) else xy
                   for n, xy in enumerate(xys)]
            if cfg.adjust_kernel > 0:
                image_index = torch.cat([torch.full((len(xy),), n, dtype=torch.long, device=device)
                                         for n, xy in enumerate(xys)])
                refined = gaussian_refine(torch.cat(xys), torch.cat(kp_scores), heat_up, image_index,
                                          cfg.adjust_kernel, cfg.adjust_threshold, cfg.adjust_sigma)
                xys = list(refined.split([len(xy) for xy in xys]))
        results = []
        for xy, kscore, info in zip(xys, kp_scores, infos):
            kps = torch.cat([info.to_original(xy), kscore[..., None]], dim=-1).float()
            scores = kps[..., 2].mean(dim=-1) if len(xy) else kps.new_zeros(0)
            results.append({"keypoints": kps, "scores": scores})
        if rescorer is not None and results:
            counts = [len(r["scores"]) for r in results]
            new = rescore(rescorer, torch.cat([r["keypoints"] for r in results]),
                          torch.cat([r["scores"] for r in results]), spec, cfg.rescore_rule)
            for r, s in zip(results, new.split(counts)):
                r["scores"] = s
    return results


@torch.no_grad()
def predict_poses(net: Net, images: Sequence[np.ndarray], spec: KeypointSpec, cfg: DecodeConfig | None = None,
                  timer: Callable | None = None, rescore_net: RescoreNet | None = None) -> list[dict[str, Tensor]]:
    """Poses of every image, batched, on the network's device.

    Args:
        net: ``(N, 3, H, W)`` ImageNet-normalised RGB -> ``(heatmaps (N, K+1, h, w), offsets (N, 2K, h, w))``
            (a ``DEKRNet``/``DEKRModule`` in eval mode, or any callable with a ``device``).
        images: HxWx3 uint8 RGB arrays.
        spec: keypoint spec (flip pairs; rescoring limbs).
        cfg: decoding options; default: the official test values for ``spec``.
        timer: optional :class:`Timer` splitting the time into preprocess / network / decode / nms.
        rescore_net: a rescoring net to use instead of the file ``cfg.rescore`` names (e.g. the one
            a checkpoint carries, :attr:`dekr.checkpoint.LoadedModel.rescore`).

    Returns:
        per image ``{"keypoints": (P, K, 3) float32 (x, y, score) in original image coordinates,
        "scores": (P,)}``, P <= ``cfg.max_num_people``.
    """
    cfg = cfg or DecodeConfig.for_dataset(spec)
    timer = timer or _null_timer
    device = _net_device(net)
    scales = list(cfg.scales)
    for image in images:
        check_image(image)
    infos = [resize_info(im.shape[0], im.shape[1], cfg.input_size, cfg.resize) for im in images]

    # Batches: equal canvases together (exact), or any images padded to a common canvas.
    if cfg.pad_batch:
        order = sorted(range(len(images)), key=lambda i: infos[i].base_size)
        groups = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    else:
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, info in enumerate(infos):
            by_shape[info.base_size].append(i)
        groups = [idx[i:i + cfg.batch_size] for idx in by_shape.values() for i in range(0, len(idx), cfg.batch_size)]

    results: list[dict[str, Tensor] | None] = [None] * len(images)
    for group in groups:
        group_infos = [infos[i] for i in group]
        base_w = max(info.base_size[0] for info in group_infos)
        base_h = max(info.base_size[1] for info in group_infos)
        outputs, valid_sizes = [], []
        padded = any(info.base_size != (base_w, base_h) for info in group_infos)
        for scale in scales:
            with timer("preprocess"):
                canvases = [resize_image(images[i], infos[i], scale, cfg.pad_value) for i in group]
                pad_to = (max(c.shape[1] for c in canvases), max(c.shape[0] for c in canvases))
                batch = to_input_tensor(canvases, device, pad_to if padded else None, cfg.channel_order, cfg.pad_value)
                valid_sizes.append(torch.tensor([[c.shape[1] // cfg.output_stride, c.shape[0] // cfg.output_stride]
                                                 for c in canvases], device=device) if padded else None)
            with timer("network"):
                outputs.append(run_net(net, batch, cfg))
        out = decode_batch(outputs, group_infos, spec, cfg, (base_w, base_h), valid_sizes if padded else None, timer,
                           rescore_net)
        for i, r in zip(group, out):
            results[i] = r
    return results  # type: ignore[return-value]


def to_coco_results(preds: Sequence[dict[str, Any]], image_ids: Sequence[int], category_id: int = 1,
                    track_ids: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Per-image predictions -> COCO keypoint result dicts (json-ready): the one COCO serialiser.

    Args:
        preds: per image ``{"keypoints": (P, K, 3), "scores": (P,)}`` (tensors or arrays).
        image_ids: per image, its COCO id.
        track_ids: per image, (P,) track ids written as ``track_id`` (video), or None.

    Returns:
        one dict per pose: ``image_id``, ``category_id``, ``keypoints`` (3K floats, 3 decimals),
        ``score`` (and ``track_id``).
    """
    out = []
    for n, (pred, image_id) in enumerate(zip(preds, image_ids)):
        kps = torch.as_tensor(pred["keypoints"]).detach().cpu().double().numpy()
        scores = torch.as_tensor(pred["scores"]).detach().cpu().double().numpy()
        tracks = None if track_ids is None or track_ids[n] is None else np.asarray(track_ids[n]).reshape(-1)
        for p, (kp, score) in enumerate(zip(kps, scores)):
            entry = {"image_id": int(image_id), "category_id": category_id,
                     "keypoints": [round(float(v), 3) for v in kp.reshape(-1)], "score": float(score)}
            if tracks is not None:
                entry["track_id"] = int(tracks[p])
            out.append(entry)
    return out
