"""Deployment: export a network (loaded with :func:`dekr.checkpoint.load_checkpoint`, whatever the
checkpoint kind) to ONNX, verify the export, and run an exported ONNX model through the normal decoder.

ONNX is the one export format: onnxruntime runs it on any platform, ``dekr.load`` and
``scripts/infer.py`` take it, and it carries the keypoint spec. (TorchScript, ``torch.jit``, is
deprecated in PyTorch; ``dekr.load`` names such a file and points here.)

* :func:`export_onnx` writes ONNX (opset 17) with dynamic batch, height and width, with PyTorch's
  tracing exporter (``dynamo=False``). The ``torch.export``-based one (``dynamo=True``) gives the same
  outputs (relative error ~1e-6, grid_sample included) but needs the onnxscript package and takes
  about a minute on two CPU cores for the small demo network, several times the tracing export.
  The adaptive convolution is exported through its pure-PyTorch path (``grid_sample`` -> ONNX
  ``GridSample``, opset >= 16): a network trained with ``adaptive_backend: torchvision`` shares the
  weights and is switched to it for export.
  The keypoint spec and the model's own decode options (the fields its checkpoint sets, not the
  defaults, which :class:`dekr.inference.DecodeConfig` holds) travel in the ONNX metadata.
* :class:`OnnxPoseNet` wraps an ONNX file (onnxruntime) as a callable with the network's
  signature, so :func:`dekr.inference.predict_poses` decodes its outputs exactly as PyTorch's.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dekr.checkpoint import ModelLoadError
from dekr.data.spec import KeypointSpec
from dekr.models.adaptive_conv import AdaptiveConv2d
from dekr.models.dekr import DEKRNet

log = logging.getLogger(__name__)

ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAMES = "images", ("heatmaps", "offsets")


# ---------------------------------------------------------------------------------------------- export
class _ExportForward(nn.Module):
    """The network's forward without the Python-side input checks (shapes are symbolic in export)."""

    def __init__(self, net: DEKRNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self.net.backbone(images)
        heatmaps = self.net.heatmap_head(features)
        if self.net.config.heatmap_activation == "sigmoid":  # as DEKRNet.forward (SuperGradients' logits)
            heatmaps = heatmaps.sigmoid()
        return heatmaps, self.net.offset_head(features)


def exportable(net: DEKRNet) -> nn.Module:
    """An eval-mode copy of ``net`` that exports: adaptive convs on the ``grid_sample`` path."""
    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if isinstance(module, AdaptiveConv2d):
            module.backend = "grid_sample"  # same weights; torchvision's deform_conv2d has no ONNX path here
    return _ExportForward(net).eval()


def spec_metadata(spec: KeypointSpec, decode: dict[str, Any] | None = None, **extra: Any) -> dict[str, str]:
    """ONNX metadata: the keypoint spec (everything decoding needs) and ``decode``, the decode options
    the model sets explicitly (:attr:`dekr.checkpoint.LoadedModel.decode`; layer 3 of
    :mod:`dekr.inference.config`)."""
    meta = {
        "dekr.spec": json.dumps(spec.to_dict()),
        "dekr.decode": json.dumps(decode or {}, default=str),
        "dekr.outputs": "heatmaps (N, K+1, H/4, W/4): K keypoints then the center; "
        "offsets (N, 2K, H/4, W/4): (x, y) per keypoint in output pixels, keypoint = pixel - offset",
        "dekr.input": "images (N, 3, H, W) float32 RGB / 255, ImageNet mean/std normalised; "
        "H, W multiples of 32",
    }
    meta.update({f"dekr.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return meta


def export_onnx(
    net: DEKRNet,
    path: str | Path,
    input_size: tuple[int, int] = (512, 512),
    batch_size: int = 1,
    dynamic: bool = True,
    opset: int = ONNX_OPSET,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Export ``net`` to ONNX.

    Args:
        input_size: (H, W) of the example input (multiples of 32).
        dynamic: dynamic batch, height and width axes (otherwise fixed to the example's).
        opset: ONNX opset (>= 16 for GridSample).
        metadata: string key/values stored in the model (see :func:`spec_metadata`).
    """
    import onnx

    if opset < 16:
        raise ValueError(
            f"the adaptive convolution exports through GridSample, which needs opset >= 16 (got {opset})"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = exportable(net)
    example = torch.zeros(batch_size, 3, *input_size)
    axes = None
    if dynamic:
        axes = {
            INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAMES[0]: {0: "batch", 2: "out_height", 3: "out_width"},
            OUTPUT_NAMES[1]: {0: "batch", 2: "out_height", 3: "out_width"},
        }
    with warnings.catch_warnings():
        # The tracing exporter announces its own deprecation (DeprecationWarning) and warns on every
        # Python-side shape check it traces as a constant (TracerWarning): the dynamic axes are checked
        # by the export tests and by scripts/export.py at a second input size, not by these notices.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamic_axes=axes,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


# ---------------------------------------------------------------------------------------------- running
class OnnxPoseNet:
    """An exported ONNX model as a network callable: ``(N, 3, H, W)`` tensor -> ``(heatmaps, offsets)``.

    Pass it to :func:`dekr.inference.predict_poses` like a PyTorch network; ``spec`` and
    ``decode`` (the options the exported model set, over :class:`dekr.inference.DecodeConfig`'s
    defaults) come from the model's metadata.
    """

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"ONNX model {self.path} does not exist")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as err:  # onnxruntime's InvalidProtobuf, InvalidGraph, ... (no common base class)
            first_line = (str(err).strip().splitlines() or [""])[0][:300]
            raise ModelLoadError(f"{self.path} is not a readable ONNX model (truncated or not ONNX?): "
                                 f"{type(err).__name__}: {first_line}") from err
        self.device = torch.device("cpu")
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def spec(self) -> KeypointSpec:
        if "dekr.spec" not in self.metadata:
            raise ModelLoadError(f"{self.path} carries no keypoint spec in its metadata; pass one explicitly")
        return KeypointSpec.from_dict(json.loads(self.metadata["dekr.spec"]), source=str(self.path))

    @property
    def decode(self) -> dict[str, Any]:
        try:
            options = json.loads(self.metadata.get("dekr.decode", "{}"))
        except json.JSONDecodeError as err:
            raise ModelLoadError(f"{self.path}: its dekr.decode metadata is not JSON ({err})") from None
        if not isinstance(options, dict):
            raise ModelLoadError(f"{self.path}: its dekr.decode metadata must be a mapping, got {options!r}")
        return options

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        heatmaps, offsets = self.session.run(
            list(OUTPUT_NAMES), {INPUT_NAME: images.detach().float().cpu().contiguous().numpy()}
        )
        return torch.from_numpy(heatmaps), torch.from_numpy(offsets)


def relative_error(reference: Tensor | np.ndarray, value: Tensor | np.ndarray) -> float:
    """max |value - reference| / max |reference| (scale-aware, robust to near-zero entries)."""
    ref = np.asarray(reference, dtype=np.float64)
    val = np.asarray(value, dtype=np.float64)
    return float(np.abs(val - ref).max() / max(np.abs(ref).max(), 1e-12))


@torch.no_grad()
def verify_export(
    net: DEKRNet, runner: Any, shapes: Sequence[tuple[int, int, int, int]], seed: int = 0
) -> list[dict[str, Any]]:
    """Compare an exported model (``runner(tensor) -> (heatmaps, offsets)``) with PyTorch on random
    inputs of each (N, 3, H, W) shape -> per shape ``{"shape", "heatmaps", "offsets"}`` relative errors."""
    net = net.eval()
    gen = torch.Generator().manual_seed(seed)
    report = []
    for shape in shapes:
        x = torch.randn(*shape, generator=gen)
        ref = net(x)
        out = runner(x)
        report.append(
            {
                "shape": tuple(shape),
                **{name: relative_error(r.cpu(), o.cpu()) for name, r, o in zip(OUTPUT_NAMES, ref, out)},
            }
        )
    return report


def decode_numpy(
    heatmaps: np.ndarray,
    offsets: np.ndarray,
    stride: int = 4,
    max_people: int = 30,
    threshold: float = 0.01,
    kernel: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Dependency-light single-scale decoding of one image's raw outputs (NumPy + OpenCV), for
    porting an exported model; :func:`dekr.inference.predict_poses` adds flip / multi-scale
    testing, pose NMS, heatmap matching, rescoring and the way back to the original image.

    Args:
        heatmaps: (K+1, h, w) (K keypoints, then the center); offsets: (2K, h, w).
        kernel: center max-pool size (official: 3 when (h+w)/2 <= 200, 5 up to 300, else 7).

    Returns:
        keypoints (P, K, 3) as (x, y, score) in **input** pixels, center scores (P,), best first.
    """
    import cv2

    k = heatmaps.shape[0] - 1
    center = heatmaps[k]
    pooled = cv2.dilate(center, np.ones((kernel, kernel), np.uint8))  # max filter; borders replicate
    peaks = np.where(pooled == center, center, 0.0).ravel()
    top = np.argsort(-peaks, kind="stable")[:max_people]
    top = top[peaks[top] > threshold]
    ys, xs = np.divmod(top, center.shape[1])
    offs = offsets[:, ys, xs].T.reshape(-1, k, 2)  # (P, K, 2), (x, y)
    xy = np.stack([xs, ys], axis=-1)[:, None, :] - offs  # output pixels: keypoint = pixel - offset
    ix = np.clip(np.floor(xy[..., 0]).astype(int), 0, center.shape[1] - 1)
    iy = np.clip(np.floor(xy[..., 1]).astype(int), 0, center.shape[0] - 1)
    heat = heatmaps[np.arange(k)[None, :], iy, ix]  # keypoint heatmap at the keypoint
    scores = center[ys, xs]
    keypoints = np.concatenate([xy * stride, (scores[:, None] * heat)[..., None]], axis=-1)
    return keypoints.astype(np.float32), scores.astype(np.float32)
