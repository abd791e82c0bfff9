"""Test-time decoding options: the one home of their defaults, and the one merge of what overrides them.

:func:`resolve_decode` builds a :class:`DecodeConfig` from layers, the later winning:

1. the class defaults of :class:`DecodeConfig`;
2. the official test values of the keypoint spec (:data:`OFFICIAL_TEST_NMS`);
3. what the model records: its checkpoint's ``decode`` options (our hparams; a converter's format
   needs, e.g. SuperGradients' letterboxed BGR input; an ONNX file's metadata) and, for our runs,
   the data's input size (the run's ``config.yaml``, or the datamodule under evaluation);
4. the user's options: ``dekr.load(..., **options)``, ``dekr.evaluate(decode=...)``, a run config's
   ``model.decode``, ``--infer-config``, ``--decode key=value`` and the scripts' flags.

Layers 3 and 4 are dicts of the fields they set explicitly, never a full config, so a default changed
here reaches every checkpoint, export and script. Each layer is checked on its own (names, types,
values), and an error names the option and the layer it came from.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from dekr.data.spec import KeypointSpec, load_spec
from dekr.dataclass_config import dataclass_from_layers

#: One layer of decode options: (where they come from, for errors; the fields it sets).
DecodeLayer = tuple[str, Mapping[str, Any] | None]

# Official test configs (experiments/<dataset>/w32/*.yaml): NMS_THRE, NMS_NUM_THRE, DECREASE.
OFFICIAL_TEST_NMS: dict[str, dict[str, float]] = {
    "coco": {"nms_thre": 0.05, "nms_num_thre": 8, "decrease": 0.9},
    "crowdpose": {"nms_thre": 0.05, "nms_num_thre": 7, "decrease": 0.8},
}


@dataclass
class DecodeConfig:
    """Everything between the network outputs and the final poses.

    Attributes:
        input_size: short side of the test input (512 for W32, 640 for W48); long side aligned to 64.
        output_stride: input / output resolution of the heads (4).
        scales: test scale factors (single-scale ``(1,)``; the official multi-scale ``(2, 1, 0.5)``);
            must contain 1.
        flip_test: also run the horizontally flipped image and average.
        flip_shift_quirk: official: the flipped image is shifted left by 3 input pixels
            (``output_stride - 1``) before the forward pass, which aligns the flipped output grid
            with the unflipped one under the network's "output pixel i = input pixel 4i"
            convention. Without it the poses are flipped back exactly in continuous coordinates
            and the flipped heatmaps are 3/4 of an output pixel off. Keep it on for the models
            we train too: our exact training flip uses the same "output u = input x / stride"
            convention, under which only the shifted flip aligns (tests/inference/test_flip_alignment.py).
        max_num_people: top-k centers per scale and the cap after pose NMS (official 30).
        keypoint_threshold: minimum center heatmap score of a proposal (official 0.01).
        pool_thresholds: center max-pool kernel 7 when (h+w)/2 of the map > first, 5 when > second,
            else 3 (official 300, 200).
        nms_thre, nms_num_thre: two poses overlap when more than ``nms_num_thre`` keypoints lie
            closer than ``nms_thre * sqrt(area)`` (area of the first pose's keypoint extent, w^2 + h^2).
        decrease: multi-scale: scores of the other scales are rescaled to scale 1's max times this.
        match_heatmap: official MATCH_HMP: move each keypoint to the nearest heatmap peak within
            ``max_absorb_distance``, then refine it by fitting a 2D Gaussian to the scale-averaged
            heatmap around it (:func:`dekr.inference.refine.gaussian_refine`, batched).
        max_absorb_distance: in input pixels at scale 1 (official 75).
        adjust_kernel: match_heatmap refinement: half size of the fitted window, in input pixels at
            scale 1 (official TEST.GUASSIAN_KERNEL 6: 13x13 windows, clipped at the border); 0 turns
            the refinement off (absorb step only).
        adjust_threshold: only keypoints with score (center score x heatmap value, before the
            absorb step) above this are refined (official TEST.ADJUST_THRESHOLD 0.05).
        adjust_sigma: initial sigma of the fit (official DATASET.SIGMA 2, although the heatmaps at
            input resolution are about 4x wider; the fit finds their width).
        pose_thr: poses scoring under this are dropped from what ``dekr.load(...)(image)`` returns
            and ``scripts/infer.py`` writes (:class:`dekr.inference.Predictor`; 0 keeps every
            candidate). :func:`dekr.inference.predict_poses`, and so evaluation, keep every candidate
            whatever it is: the official evaluation scores all of them and the COCO AP depends on
            the low-scoring ones too.
        rescore: path of a rescoring-net checkpoint (ours or official ``final_rescore_*.pth``); None: off.
        rescore_rule: how the rescoring net's output becomes the pose score: ``official`` (the net
            predicts the OKS; score = OKS x mean keypoint score) or ``sigmoid`` (SuperGradients: the
            net outputs a logit; score = sigmoid(output)).
        batch_size: images per forward pass in :func:`dekr.inference.predict_poses`.
        pad_batch: pad the images of a batch to a common input shape (one forward per batch, faster on
            GPU; outputs near the padded border differ slightly) instead of grouping equal shapes.
        autocast_dtype: ``"bfloat16"`` / ``"float16"`` runs the network under autocast; None: float32.
        channel_order: the channel order the network takes: ``rgb`` (official, ours) or ``bgr``
            (SuperGradients). Images are always given as RGB; ``bgr`` reverses them before the
            ImageNet normalisation, whose mean/std stay in RGB order (as SuperGradients does).
        resize: ``official`` (short side to ``input_size``, long side aligned to 64, image
            centred on the canvas: :func:`dekr.inference.preprocess.resize_info`) or ``letterbox``
            (SuperGradients: the longest side to ``input_size`` by ``cv2.resize``, then padded at
            the bottom and right to an ``input_size`` square canvas).
        pad_value: grey level (0-255, every channel) of the canvas outside the image, in either
            resize mode and when ``pad_batch`` pads (official 0, black; SuperGradients 127).
    """

    input_size: int = 512
    output_stride: int = 4
    scales: tuple[float, ...] = (1.0,)
    flip_test: bool = True
    flip_shift_quirk: bool = True
    max_num_people: int = 30
    keypoint_threshold: float = 0.01
    pool_thresholds: tuple[float, float] = (300.0, 200.0)
    nms_thre: float = 0.15
    nms_num_thre: int = 10
    decrease: float = 1.0
    match_heatmap: bool = False
    max_absorb_distance: float = 75.0
    adjust_kernel: int = 6
    adjust_threshold: float = 0.05
    adjust_sigma: float = 2.0
    pose_thr: float = 0.05
    rescore: str | None = None
    rescore_rule: str = "official"
    batch_size: int = 8
    pad_batch: bool = False
    autocast_dtype: str | None = None
    channel_order: Literal["rgb", "bgr"] = "rgb"
    resize: Literal["official", "letterbox"] = "official"
    pad_value: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scales = tuple(float(s) for s in self.scales)
        self.pool_thresholds = tuple(float(t) for t in self.pool_thresholds)  # type: ignore[assignment]
        if 1.0 not in self.scales:
            raise ValueError(f"scales must contain 1 (the reference scale of multi-scale testing), got {self.scales}")
        if any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive, got {self.scales}")
        if self.max_num_people < 1:
            raise ValueError(f"max_num_people must be >= 1, got {self.max_num_people}")
        if self.input_size % 64:
            raise ValueError(f"input_size must be a multiple of 64, got {self.input_size}")
        if self.pose_thr < 0:
            raise ValueError(f"pose_thr must be >= 0 (scores are never negative), got {self.pose_thr}")
        if self.adjust_kernel < 0:
            raise ValueError(f"adjust_kernel must be >= 0, got {self.adjust_kernel}")
        if self.rescore_rule not in ("official", "sigmoid"):
            raise ValueError(f"rescore_rule must be 'official' or 'sigmoid', got {self.rescore_rule!r}")
        if self.autocast_dtype not in (None, "bfloat16", "float16"):
            raise ValueError(f"autocast_dtype must be None, 'bfloat16' or 'float16', got {self.autocast_dtype!r}")
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}")
        if self.resize not in ("official", "letterbox"):
            raise ValueError(f"resize must be 'official' or 'letterbox', got {self.resize!r}")
        if not 0 <= self.pad_value <= 255:
            raise ValueError(f"pad_value must be a grey level in 0..255, got {self.pad_value}")

    @property
    def flip_shift(self) -> int:
        """Input pixels the flipped image is shifted left by (official: output_stride - 1)."""
        return self.output_stride - 1 if self.flip_shift_quirk else 0

    @classmethod
    def for_dataset(cls, spec: KeypointSpec | str, **overrides: Any) -> DecodeConfig:
        """Official test defaults for ``spec`` (COCO, CrowdPose), then ``overrides``
        (:func:`resolve_decode` with one layer)."""
        return resolve_decode(spec, ("DecodeConfig.for_dataset", overrides))

    def replace(self, **changes: Any) -> DecodeConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def official_test_values(spec: KeypointSpec) -> dict[str, Any]:
    """The official test values of ``spec`` (COCO, CrowdPose): pose NMS and multi-scale decrease.

    Another skeleton gets the COCO values with ``nms_num_thre = K // 2`` (8 for COCO's 17
    keypoints, 7 for CrowdPose's 14: the official values follow this rule).
    """
    other = {**OFFICIAL_TEST_NMS["coco"], "nms_num_thre": spec.num_keypoints // 2}
    return dict(OFFICIAL_TEST_NMS.get(spec.name, other))


def resolve_decode(spec: KeypointSpec | str, *layers: DecodeLayer) -> DecodeConfig:
    """The decode config of ``spec`` under ``layers`` (lowest precedence first; see the module
    docstring for the order every caller keeps).

    Raises:
        dekr.dataclass_config.ConfigError: a layer sets an unknown option, a value of the wrong type
            or a value :class:`DecodeConfig` refuses; the message names the option and the layer.
    """
    spec = spec if isinstance(spec, KeypointSpec) else load_spec(spec)
    official = (f"official test values of spec {spec.name!r}", official_test_values(spec))
    return dataclass_from_layers(DecodeConfig, [official, *layers], "decode")


def merge_decode_options(*layers: DecodeLayer) -> dict[str, Any]:
    """The explicit options of ``layers`` merged (the later winning), each checked as
    :func:`resolve_decode` checks it: for options that are passed on or stored rather than used
    here (a checkpoint's hparams, ``dekr.evaluate(decode=...)``, a script's options)."""
    dataclass_from_layers(DecodeConfig, layers, "decode")
    return {key: value for _, options in layers for key, value in (options or {}).items()}
