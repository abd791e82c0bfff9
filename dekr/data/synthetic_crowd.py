"""Crowd scenes of the synthetic people, to try a demo model on: a wide image with a few people side by
side, and a video of them walking.

The demo trains on one stick person per image, 0.7-0.9 of the image height tall (``configs/demo.yaml``),
and inference resizes an image's short side to the input size (:mod:`dekr.inference.preprocess`). So a
crowd scene is wider than high, and each of its people is drawn as in training (:mod:`dekr.data.synthetic`:
the same figures, colours and textured background) at the training scale relative to the image height,
wholly in view and apart from the others. Its random streams are seeded with the split ``"crowd"``,
whose code no training or validation split has (:data:`dekr.data.synthetic.SPLIT_CODES`), so no seed
makes a crowd scene an image a model trained or validated on.

A scene is a pure function of ``(seed, index, config)``; frame ``t`` of its video moves every person
``t`` steps along its walk (legs and arms swinging, all in the same direction at slightly different
speeds), frame 0 being the still image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dekr.data.spec import KeypointSpec, load_spec
from dekr.data.synthetic import annotate_figures, background, scene_rng
from dekr.data.synthetic_figures import PersonPose, StickPerson, body_plan

#: The side of the training images (``configs/demo.yaml``: ``data.synthetic.image_size``) at which the
#: background's noise blocks are 3 pixels wide; a crowd scene scales them with its height.
TRAINING_IMAGE_SIZE = 160


@dataclass(frozen=True)
class CrowdConfig:
    """What a crowd scene holds.

    Attributes:
        num_people: people side by side.
        height: image height, pixels (the width follows from the people, their spacing and their walk).
        min_height, max_height: a person's height as a fraction of the image height (the demo's range).
        spacing: distance between neighbours' hips, in image heights (a person's arms reach out at
            most about 0.36 image heights, so neighbours at 0.75 rarely touch).
        num_frames: frames of the walk the image is made wide enough for (1: a still image).
        step: a person's walk per frame, in image heights (each walks at 85-115% of it).
        stride_frames: frames per full gait cycle (left and right step).
    """

    num_people: int = 4
    height: int = 256
    min_height: float = 0.7
    max_height: float = 0.9
    spacing: float = 0.75
    num_frames: int = 1
    step: float = 0.008
    stride_frames: float = 16.0


@dataclass(frozen=True)
class Walker:
    """One person of a crowd scene: its pose at frame 0, its walk and its colours.

    Attributes:
        start: the pose at frame 0 (arm, leg angles: the centre of their swing).
        speed: hip displacement per frame, pixels (signed: negative walks to the left).
        phase: gait phase at frame 0, rad.
        colors: the person's colours (:meth:`StickPerson.colors`).
    """

    start: PersonPose
    speed: float
    phase: float
    colors: dict[str, Any]

    def pose(self, frame: int, stride_frames: float) -> PersonPose:
        """The pose at ``frame``: hips moved ``frame`` steps, the legs swinging in opposition (thigh
        +-0.35 rad, the leg behind bending its knee) and the arms against the legs; every
        angle within the training poses' ranges."""
        p = self.start
        phase = self.phase + 2 * math.pi * frame / stride_frames
        swing = math.sin(phase)
        forward = 1.0 if self.speed >= 0 else -1.0
        knees = (0.45 * max(0.0, swing), 0.45 * max(0.0, -swing))  # the leg behind bends, its foot trailing
        return replace(
            p,
            hip=(p.hip[0] + self.speed * frame, p.hip[1] - 0.01 * p.body * abs(math.cos(phase))),
            hip_swing=(p.hip_swing[0] + 0.35 * swing * forward, p.hip_swing[1] - 0.35 * swing * forward),
            knee_bend=(p.knee_bend[0] + knees[0] * forward, p.knee_bend[1] + knees[1] * forward),
            arm_raise=(p.arm_raise[0] + 0.25 * swing, p.arm_raise[1] - 0.25 * swing),
        )


@dataclass(frozen=True)
class CrowdScene:
    """A crowd scene: its size, background and people; :meth:`frame` draws one frame.

    Attributes:
        width, height: image size, pixels.
        background: (height, width, 3) RGB uint8.
        walkers: the people, left to right at frame 0.
        stride_frames: frames per gait cycle.
        spec: the keypoint spec of the annotations.
    """

    width: int
    height: int
    background: np.ndarray
    walkers: tuple[Walker, ...]
    stride_frames: float
    spec: KeypointSpec

    def frame(self, t: int = 0, image_id: int = 1, first_ann_id: int = 1
              ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Frame ``t``: the (height, width, 3) RGB uint8 image and its COCO ``annotations`` (one per
        person, left to right at frame 0, for ``image_id``; keypoints x, y in pixels, v = 2 visible,
        1 covered by a neighbour, 0 outside the image)."""
        plan = body_plan(self.spec)
        image = self.background.copy()
        figures = [plan.figure(w.pose(t, self.stride_frames)) for w in self.walkers]
        for walker, figure in zip(self.walkers, figures):
            plan.draw(image, figure, walker.colors)
        anns = annotate_figures(figures, None, self.width, self.height, self.spec, image_id, first_ann_id)
        return image, anns


def crowd_scene(seed: int, index: int = 0, cfg: CrowdConfig = CrowdConfig(),
                spec: KeypointSpec | None = None) -> CrowdScene:
    """Crowd scene ``index`` under ``seed`` of ``spec``'s people (default: COCO's; a spec of person
    parts only, :class:`dekr.data.synthetic_figures.StickPerson`).

    The people stand ``cfg.spacing`` image heights apart (+-0.05), hips high enough that the head is
    in view and low enough that the feet are, and all walk the same way; the image is as wide as
    their places and ``cfg.num_frames - 1`` steps of the fastest walker need, with 0.45 image heights
    of margin on either side, rounded up to an even number of pixels (video codecs need even sizes).
    """
    spec = load_spec("coco") if spec is None else spec
    plan = body_plan(spec)
    if not isinstance(plan, StickPerson):
        raise ValueError(f"crowd scenes draw stick people; spec {spec.name!r} has keypoints that are no "
                         f"person's parts ({', '.join(spec.keypoint_names[:4])}, ...)")
    if cfg.num_people < 1 or cfg.num_frames < 1 or cfg.height < 32:
        raise ValueError(f"need num_people >= 1, num_frames >= 1 and height >= 32, got {cfg}")
    h = cfg.height
    layout = scene_rng(seed, "crowd", index, 0)
    direction = 1.0 if layout.random() < 0.5 else -1.0
    speeds = [direction * cfg.step * h * layout.uniform(0.85, 1.15) for _ in range(cfg.num_people)]
    travel = max(abs(v) for v in speeds) * (cfg.num_frames - 1)
    margin = 0.45 * h
    span = 2 * margin + (cfg.num_people - 1) * cfg.spacing * h + travel
    width = 2 * math.ceil(span / 2)  # even: video codecs need even sizes
    first = margin if direction > 0 else margin + travel
    poses = []
    for i, speed in enumerate(speeds):
        pose = plan.sample_pose(layout, width, h, (cfg.min_height, cfg.max_height))
        body = pose.body
        # head top 0.5 body above the hips, ankles at most 0.45 body below (PersonPose); 3% margins
        hip_y = layout.uniform(0.03 * h + 0.5 * body, 0.97 * h - 0.45 * body)
        hip_x = first + (i + layout.uniform(-0.05, 0.05)) * cfg.spacing * h
        poses.append(replace(pose, hip=(hip_x, hip_y), tilt=0.5 * pose.tilt,
                             arm_raise=tuple(float(np.clip(a, 0.0, 1.2)) for a in pose.arm_raise),
                             hip_swing=(0.0, 0.0), knee_bend=(0.0, 0.0)))
    phases = layout.uniform(0, 2 * math.pi, size=cfg.num_people)
    pixels = scene_rng(seed, "crowd", index, 1)
    panels = max(1, round(width / h))
    image = background(pixels, width, h, panels=panels, texture_px=max(1, round(3 * h / TRAINING_IMAGE_SIZE)))
    walkers = tuple(Walker(pose, speed, float(phase), plan.colors(plan.figure(pose), pixels))
                    for pose, speed, phase in zip(poses, speeds, phases))
    return CrowdScene(width, h, image, walkers, cfg.stride_frames, spec)
