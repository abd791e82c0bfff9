"""Drawing poses on images: skeletons colored per limb (or per person), keypoint score threshold,
person / track ids; and the sampling points of the adaptive convolutions around person centres
(:func:`draw_sampling_points`, one color per keypoint branch).

All images are (H, W, 3) uint8 **RGB** (convert with ``cv2.cvtColor`` before ``cv2.imwrite``);
keypoints are (P, K, 3) as (x, y, score) in the image's pixels.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

ColorBy = Literal["limb", "person"]
RGB = tuple[int, int, int]


def _hsv_rgb(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def limb_colors(
    skeleton: Sequence[tuple[int, int]], flip_pairs: Sequence[tuple[int, int]] = ()
) -> list[RGB]:
    """One color per limb: hues spread over the limbs in skeleton order; limbs on the left side
    (touching a left keypoint and no right one, the sides read off the spec's ``flip_pairs``
    (left, right)) are drawn a little lighter than the others, so that left and right stay apart
    when they cross. Without flip pairs every limb has full brightness."""
    left = {a for a, _ in flip_pairs}
    right = {b for _, b in flip_pairs}
    colors = []
    n = max(1, len(skeleton))
    for i, (a, b) in enumerate(skeleton):
        on_left = bool({a, b} & left) and not {a, b} & right
        value = 1.0 if on_left or not flip_pairs else 0.85
        colors.append(_hsv_rgb(i / n * 0.9, 0.85, value))
    return colors


def id_color(track_id: int) -> RGB:
    """A stable, well-separated color for a person / track id (golden-ratio hue steps)."""
    if track_id < 0:
        return (200, 200, 200)
    return _hsv_rgb(0.12 + track_id * 0.618033988749895, 0.8, 1.0)


def draw_poses(
    image: np.ndarray,
    keypoints: np.ndarray,
    skeleton: Sequence[tuple[int, int]],
    scores: np.ndarray | None = None,
    ids: Sequence[int] | np.ndarray | None = None,
    min_score: float = 0.1,
    min_pose_score: float = 0.0,
    color_by: ColorBy = "limb",
    flip_pairs: Sequence[tuple[int, int]] = (),
    show_ids: bool = True,
    max_poses: int | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """A copy of ``image`` with the poses drawn.

    Args:
        image: (H, W, 3) uint8 RGB.
        keypoints: (P, K, 3) (x, y, score) in image pixels.
        skeleton: limbs as (a, b) keypoint index pairs (``KeypointSpec.skeleton``).
        scores: (P,) pose scores; poses under ``min_pose_score`` are skipped, the rest drawn
            lowest score first (the best pose ends on top). Default: all 1.
        ids: (P,) person / track ids written next to each pose (default: the pose index);
            negative ids are drawn grey without a label.
        min_score: keypoints scoring under this are not drawn, nor the limbs touching them.
        color_by: ``limb`` (a color per limb, keypoints in the person color) or ``person``
            (everything in the id's color: easier to follow identities in video).
        flip_pairs: the spec's (left, right) keypoint pairs (``KeypointSpec.flip_pairs``): ``limb``
            coloring draws the left side's limbs lighter (:func:`limb_colors`).
        show_ids: write the id (and score) above each pose.
        max_poses: draw only the best ``max_poses`` poses.
        thickness: line width in pixels (default: scales with the image size).
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    canvas = np.ascontiguousarray(image.copy())
    kps = np.asarray(keypoints, dtype=np.float64)
    if kps.size == 0:
        return canvas
    kps = kps.reshape(len(kps), -1, 3)
    num = len(kps)
    scores_arr = np.ones(num) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    ids_arr = np.arange(num) if ids is None else np.asarray(ids).reshape(-1).astype(np.int64)
    if len(scores_arr) != num or len(ids_arr) != num:
        raise ValueError(f"{num} poses but {len(scores_arr)} scores and {len(ids_arr)} ids")
    order = [int(p) for p in np.argsort(-scores_arr, kind="stable") if scores_arr[p] >= min_pose_score]
    if max_poses is not None:
        order = order[:max_poses]
    order = order[::-1]  # draw the best last (on top)

    size = max(canvas.shape[:2])
    thick = thickness or max(1, round(size / 320))
    radius = thick + 1
    font_scale = max(0.35, size / 1400)
    limb_rgb = limb_colors(skeleton, flip_pairs)
    h, w = canvas.shape[:2]

    def point(x: float, y: float) -> tuple[int, int]:
        # Clip far-off predictions: OpenCV draws with int coordinates and overflows otherwise.
        return int(np.clip(round(x), -4 * w, 5 * w)), int(np.clip(round(y), -4 * h, 5 * h))

    for p in order:
        pose = kps[p]
        person = id_color(int(ids_arr[p]))
        visible = pose[:, 2] >= min_score
        for limb, (a, b) in enumerate(skeleton):
            if visible[a] and visible[b]:
                color = limb_rgb[limb] if color_by == "limb" else person
                cv2.line(canvas, point(*pose[a, :2]), point(*pose[b, :2]), color, thick, cv2.LINE_AA)
        for x, y, _ in pose[visible]:
            cv2.circle(canvas, point(x, y), radius, person, -1, cv2.LINE_AA)
            cv2.circle(canvas, point(x, y), radius, (0, 0, 0), 1, cv2.LINE_AA)
        if show_ids and ids_arr[p] >= 0 and visible.any():
            top = pose[visible][np.argmin(pose[visible, 1])]
            label = f"#{ids_arr[p]}" + (f" {scores_arr[p]:.2f}" if scores is not None else "")
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
            x0, y0 = point(top[0] - tw / 2, top[1] - 2 * radius - th - base)
            x0, y0 = int(np.clip(x0, 0, max(0, w - tw - 2))), int(np.clip(y0, 0, max(0, h - th - base - 2)))
            cv2.rectangle(canvas, (x0, y0), (x0 + tw + 2, y0 + th + base + 2), person, -1)
            cv2.putText(
                canvas,
                label,
                (x0 + 1, y0 + th + 1),
                cv2.FONT_HERSHEY_SIMPLEX,
                font_scale,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
    return canvas


def draw_caption(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``image`` with ``text`` on a dark band at the bottom left (frame number, fps, ...;
    the bottom, so that it does not hide the id labels above people near the top)."""
    canvas = np.ascontiguousarray(image.copy())
    h = canvas.shape[0]
    scale = max(0.4, max(canvas.shape[:2]) / 1400)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(canvas, (0, h - th - base - 8), (tw + 8, h), (0, 0, 0), -1)
    cv2.putText(
        canvas, text, (4, h - base - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
    )
    return canvas


def keypoint_colors(num_keypoints: int, flip_pairs: Sequence[tuple[int, int]] = ()) -> list[RGB]:
    """One color per keypoint: hues spread over the keypoints in spec order, the left side's
    keypoints (the first of each ``flip_pairs`` (left, right)) lighter, as :func:`limb_colors` does."""
    left = {a for a, _ in flip_pairs}
    n = max(1, num_keypoints)
    return [_hsv_rgb(k / n * 0.9, 0.85, 1.0 if k in left or not flip_pairs else 0.85) for k in range(num_keypoints)]


def draw_sampling_points(
    image: np.ndarray,
    centers: np.ndarray,
    points: np.ndarray,
    colors: Sequence[RGB] | None = None,
    branches: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    radius: int | None = None,
) -> np.ndarray:
    """A copy of ``image`` with the sampling points of adaptive convolutions drawn around person centres
    (:func:`dekr.inference.offset_sampling.image_offset_sampling`).

    Each branch (keypoint) has its color; the last conv's taps are filled dots with a dark rim, those of
    the earlier convs rings; each centre is a white dot with a black rim, on top.

    Args:
        image: (H, W, 3) uint8 RGB.
        centers: (P, 2) (x, y) in image pixels.
        points: (P, G, L, 9, 2) (x, y) in image pixels: G branches, L convs, 9 taps.
        colors: one RGB per branch (default :func:`keypoint_colors`).
        branches: the branches to draw (default all).
        labels: one name per branch: a legend of the drawn branches at the top left.
        radius: dot radius in pixels (default: scales with the image size).
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    pts = np.asarray(points, dtype=np.float64)
    ctr = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    if pts.ndim != 5 or pts.shape[0] != len(ctr) or pts.shape[3:] != (9, 2):
        raise ValueError(f"expected points (P, G, L, 9, 2) for {len(ctr)} centres, got shape {pts.shape}")
    num_branches = pts.shape[1]
    colors = list(colors) if colors is not None else keypoint_colors(num_branches)
    branches = list(range(num_branches)) if branches is None else [int(b) for b in branches]
    if any(not 0 <= b < num_branches for b in branches) or len(colors) < num_branches:
        raise ValueError(f"branches {branches} / {len(colors)} colors for {num_branches} branches")
    canvas = np.ascontiguousarray(image.copy())
    h, w = canvas.shape[:2]
    size = max(h, w)
    r = radius or max(2, round(size / 250))

    def point(x: float, y: float) -> tuple[int, int]:
        return int(np.clip(round(x), -4 * w, 5 * w)), int(np.clip(round(y), -4 * h, 5 * h))

    last = pts.shape[2] - 1
    for person in pts:
        for b in branches:
            for layer, taps in enumerate(person[b]):
                for x, y in taps:
                    if layer == last:
                        cv2.circle(canvas, point(x, y), r, colors[b], -1, cv2.LINE_AA)
                        cv2.circle(canvas, point(x, y), r, (0, 0, 0), 1, cv2.LINE_AA)
                    else:
                        cv2.circle(canvas, point(x, y), r, colors[b], max(1, r // 2), cv2.LINE_AA)
    for x, y in ctr:
        cv2.circle(canvas, point(x, y), r + 2, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(canvas, point(x, y), r + 2, (0, 0, 0), 1, cv2.LINE_AA)
    if labels is not None:
        scale = max(0.35, size / 1400)
        y0 = 4
        for b in branches:
            (tw, th), base = cv2.getTextSize(labels[b], cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            cv2.rectangle(canvas, (2, y0), (tw + th + 10, y0 + th + base + 4), (0, 0, 0), -1)
            cv2.circle(canvas, (4 + th // 2, y0 + (th + base + 4) // 2), max(2, th // 2), colors[b], -1, cv2.LINE_AA)
            cv2.putText(canvas, labels[b], (th + 8, y0 + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                        cv2.LINE_AA)
            y0 += th + base + 6
    return canvas
