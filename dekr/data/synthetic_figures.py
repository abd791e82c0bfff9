"""The figures the synthetic data draw: a stick person for human skeletons, an articulated figure for any other.

A body plan turns a keypoint spec into figures. ``sample`` poses one figure in an image and returns
a dict whose ``keypoints`` are (K, 2) image x, y (pixels) in the spec's order, beside what the plan
needs to draw it; ``colors`` draws its colours; ``draw`` paints it, or with ``colors=None`` its
silhouette as a mask (value 1). :func:`body_plan` picks the plan of a spec:

* :class:`StickPerson` when every keypoint name is one of the person's parts (COCO's 17, and the
  ``head`` top and ``neck`` CrowdPose adds): thick limbs, a torso polygon, an elliptic head with
  eyes and nose.
* :class:`SkeletonFigure` otherwise: the skeleton graph laid out as a tree from its most central
  keypoint, limbs of random length bent at every joint, each keypoint a disc of its own colour.

Both colour the figure's left side warm and its right side cool (the spec's flip pairs are
(left, right)), and a quarter of the figures are seen from the back (mirrored), so that left and
right are told apart by colour, not by where they lie in the image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from dekr.data.spec import KeypointSpec

Figure = dict[str, Any]
Color = tuple[int, int, int]

# The stick person's parts: COCO's 17 keypoints in COCO order, then CrowdPose's two others.
PERSON_PARTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
                "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck")
# person limbs drawn as thick lines: (a, b, side) with side 0 = left, 1 = right (indices into PERSON_PARTS)
_PERSON_LIMBS = [(5, 7, 0), (7, 9, 0), (11, 13, 0), (13, 15, 0), (6, 8, 1), (8, 10, 1), (12, 14, 1), (14, 16, 1)]


def hsv_color(hue: float, saturation: float, value: float) -> Color:
    """RGB of an HSV colour, all three in [0, 1] (hue wraps around)."""
    pixel = np.uint8([[[int(hue * 179) % 180, int(saturation * 255), int(value * 255)]]])
    rgb = cv2.cvtColor(pixel, cv2.COLOR_HSV2RGB)[0, 0]
    return tuple(int(c) for c in rgb)


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _pts(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


@dataclass(frozen=True)
class PersonPose:
    """Where a stick person stands and how it bends: what :meth:`StickPerson.figure` draws.

    Attributes:
        hip: (x, y) of the hip centre, image pixels.
        body: the person's size, pixels (the top of the head is 0.5 body above the hips, the ankles at
            most 0.45 body below them).
        tilt: lean of the upright body, rad (positive: clockwise in the image).
        facing: +1 faces the camera (its left on image right), -1 is seen from the back.
        arm_raise: (left, right) upper-arm angle, rad: 0 hangs down, pi/2 points outwards, more is raised.
        elbow_bend: (left, right) turn of the forearm from the upper arm, rad.
        hip_swing: (left, right) turn of the thigh from straight down, rad.
        knee_bend: (left, right) turn of the shin from the thigh, rad.
        hue: the torso colour's hue in [0, 1].
    """

    hip: tuple[float, float]
    body: float
    tilt: float
    facing: float
    arm_raise: tuple[float, float]
    elbow_bend: tuple[float, float]
    hip_swing: tuple[float, float]
    knee_bend: tuple[float, float]
    hue: float


class StickPerson:
    """A stick person whose parts named in the spec are its keypoints (COCO, CrowdPose, subsets)."""

    kind = "person"

    def __init__(self, spec: KeypointSpec) -> None:
        self.part_index = np.array([PERSON_PARTS.index(name) for name in spec.keypoint_names], dtype=np.int64)

    def sample(self, rng: np.random.Generator, width: int, height: int,
               size_range: tuple[float, float]) -> Figure:
        """A person whose height is ``size_range`` (fractions of the image height) x ``height``."""
        return self.figure(self.sample_pose(rng, width, height, size_range))

    @staticmethod
    def sample_pose(rng: np.random.Generator, width: int, height: int,
                    size_range: tuple[float, float]) -> PersonPose:
        """A random pose: anywhere in a ``width`` x ``height`` image (its hips in the middle 35-85% of
        the height), ``size_range`` x ``height`` tall, a quarter of the people seen from the back."""
        body = height * rng.uniform(*size_range)
        hip = (rng.uniform(0.05, 0.95) * width, rng.uniform(0.35, 0.85) * height)
        tilt = rng.normal(0.0, 0.2)
        facing = 1.0 if rng.random() < 0.75 else -1.0
        arms = [(rng.uniform(-0.3, 2.3), rng.uniform(-1.8, 1.8)) for _ in range(2)]  # left, then right
        legs = [(rng.uniform(-0.5, 0.5), rng.uniform(-0.9, 0.9)) for _ in range(2)]
        return PersonPose(hip=hip, body=body, tilt=tilt, facing=facing,
                          arm_raise=(arms[0][0], arms[1][0]), elbow_bend=(arms[0][1], arms[1][1]),
                          hip_swing=(legs[0][0], legs[1][0]), knee_bend=(legs[0][1], legs[1][1]),
                          hue=rng.uniform(0, 1))

    def figure(self, pose: PersonPose) -> Figure:
        """The figure (keypoints in the spec's order and what ``draw`` needs) of a pose."""
        body = pose.body
        hip = np.array(pose.hip, dtype=np.float64)
        up = _rotate(np.array([0.0, -1.0]), pose.tilt)
        right_dir = np.array([-up[1], up[0]])  # image-right for an upright person (x grows)
        side = right_dir * pose.facing  # direction towards the person's LEFT side
        down = -up
        kp = np.zeros((len(PERSON_PARTS), 2))
        neck = hip + up * 0.30 * body
        head = neck + up * 0.11 * body
        kp[5], kp[6] = neck + side * 0.11 * body, neck - side * 0.11 * body
        kp[11], kp[12] = hip + side * 0.07 * body, hip - side * 0.07 * body
        kp[0] = head - up * 0.01 * body
        eyes = head + up * 0.025 * body
        kp[1], kp[2] = eyes + side * 0.025 * body, eyes - side * 0.025 * body
        kp[3], kp[4] = head + side * 0.05 * body, head - side * 0.05 * body
        kp[17] = head + up * 0.08 * body  # top of the head, inside the head ellipse (half-axis 0.09)
        kp[18] = neck
        for i, (sh, el, wr, sdir) in enumerate(((5, 7, 9, side), (6, 8, 10, -side))):
            a = pose.arm_raise[i]
            upper = down * math.cos(a) + sdir * math.sin(a)
            kp[el] = kp[sh] + upper * 0.16 * body
            kp[wr] = kp[el] + _rotate(upper, pose.elbow_bend[i]) * 0.14 * body
        for i, (hp_, kn, an) in enumerate(((11, 13, 15), (12, 14, 16))):
            thigh = _rotate(down, pose.hip_swing[i]) * 0.23 * body
            kp[kn] = kp[hp_] + thigh
            kp[an] = kp[kn] + _rotate(thigh / np.linalg.norm(thigh), pose.knee_bend[i]) * 0.22 * body
        thickness = max(2, int(round(0.045 * body)))
        return {"keypoints": kp[self.part_index], "parts": kp, "thickness": thickness, "head": head,
                "head_axes": (max(2, int(0.07 * body)), max(3, int(0.09 * body))),
                "head_angle": math.degrees(math.atan2(up[1], up[0])) + 90, "hue": pose.hue}

    def colors(self, figure: Figure, rng: np.random.Generator) -> dict[str, Color]:
        warm = rng.uniform(0.0, 0.12)   # reds/oranges for the left side
        cool = rng.uniform(0.5, 0.68)   # cyans/blues for the right side
        return {"left": hsv_color(warm, 0.9, rng.uniform(0.7, 1.0)),
                "right": hsv_color(cool, 0.9, rng.uniform(0.7, 1.0)),
                "torso": hsv_color(figure["hue"], 0.5, rng.uniform(0.4, 0.8)), "head": hsv_color(0.08, 0.35, 0.85),
                "nose": (40, 20, 20)}

    def draw(self, canvas: np.ndarray, figure: Figure, colors: dict[str, Color] | None) -> None:
        kp, t = figure["parts"], figure["thickness"]
        line = cv2.LINE_AA if colors else cv2.LINE_8

        def col(name: str) -> Color | int:
            return 1 if colors is None else colors[name]

        torso = np.array([_pts(kp[5]), _pts(kp[6]), _pts(kp[12]), _pts(kp[11])], dtype=np.int32)
        cv2.fillConvexPoly(canvas, torso, col("torso"), lineType=line)
        for a, b, side in _PERSON_LIMBS:
            cv2.line(canvas, _pts(kp[a]), _pts(kp[b]), col("left" if side == 0 else "right"), t, lineType=line)
        cv2.line(canvas, _pts((kp[5] + kp[6]) / 2), _pts(figure["head"]), col("torso"), t)
        cv2.ellipse(canvas, _pts(figure["head"]), figure["head_axes"], figure["head_angle"], 0, 360,
                    col("head"), -1)
        if colors is not None:
            r = max(1, t // 3)
            cv2.circle(canvas, _pts(kp[0]), r, colors["nose"], -1)
            cv2.circle(canvas, _pts(kp[1]), r, colors["left"], -1)
            cv2.circle(canvas, _pts(kp[2]), r, colors["right"], -1)
            for j in range(5, 17):  # joints as small discs
                cv2.circle(canvas, _pts(kp[j]), max(1, t // 2), colors["left" if j % 2 == 1 else "right"], -1)


# Angle between sibling limbs leaving a joint in the same direction (rad).
_SPREAD = 0.7


def _layout_tree(num_keypoints: int, skeleton: tuple[tuple[int, int], ...], side: np.ndarray,
                 partner: list[int]) -> tuple[list[int], list[int], np.ndarray]:
    """The rest pose of a skeleton: a spanning tree and the direction of each of its limbs.

    The root is the most central midline keypoint (one in no flip pair) of the largest connected
    part; keypoints of other parts hang from the root by limbs that are laid out but not drawn.
    Directions are absolute angles in the figure's frame (0: up, pi/2: towards its left): a
    midline keypoint continues the spine with its midline children (from the root: up and down)
    and sends its left children into the left half-plane, leaning towards the spine's direction
    beyond the root, and its right children, mirrored, into the right one; a left or right
    keypoint continues its limb, its children fanning out towards its own side. Children
    sort by the lower index of their flip pair, so a left subtree and its right mirror match.

    Returns:
        parent: (K,) parent keypoint of each keypoint in the tree, -1 for the root.
        order: the keypoints, each after its parent.
        angle: (K,) rest direction of the limb from each keypoint's parent to it (root: 0).
    """
    neighbours: list[set[int]] = [set() for _ in range(num_keypoints)]
    for a, b in skeleton:
        if a != b:
            neighbours[a].add(b)
            neighbours[b].add(a)

    def distances(start: int) -> dict[int, int]:
        dist, frontier = {start: 0}, [start]
        while frontier:
            nxt = []
            for v in frontier:
                for n in sorted(neighbours[v] - dist.keys()):
                    dist[n] = dist[v] + 1
                    nxt.append(n)
            frontier = nxt
        return dist

    reach = [distances(i) for i in range(num_keypoints)]
    candidates = [i for i in range(num_keypoints) if side[i] == 0] or list(range(num_keypoints))
    root = min(candidates, key=lambda i: (-len(reach[i]), max(reach[i].values()), i))
    connected = set(reach[root])
    for start in range(num_keypoints):  # hang every other connected part from the root
        if start not in connected:
            neighbours[root].add(start)
            neighbours[start].add(root)
            connected |= set(reach[start])

    def fan(centre: float, count: int, sign: float = 1.0) -> list[float]:
        """``count`` directions: ``centre``, then alternately one more spread to either side."""
        return [centre + sign * _SPREAD * ((j + 1) // 2) * (1 if j % 2 else -1) for j in range(count)]

    parent, angle, order = [-1] * num_keypoints, np.zeros(num_keypoints), [root]
    placed = {root}
    for v in order:  # breadth-first: the list grows while it is walked
        children = sorted(neighbours[v] - placed, key=lambda c: (min(c, partner[c]), c))
        placed.update(children)
        if v == root or side[v] == 0:
            mids = [c for c in children if side[c] == 0]
            if v == root:  # the spine leaves the root upwards and downwards, alternately
                directions = {**dict(zip(mids[0::2], fan(0.0, len(mids[0::2])))),
                              **dict(zip(mids[1::2], fan(math.pi, len(mids[1::2]))))}
            else:
                directions = dict(zip(mids, fan(float(angle[v]), len(mids))))
            # Left children spread over the left half-plane (right ones mirrored); beyond the root
            # they lean halfway towards the spine's own direction (eyes above a nose, hips behind a tail).
            for sign in (1, -1):
                limbs = [c for c in children if side[c] == sign]
                spread = [math.pi * (j + 1) / (len(limbs) + 1) for j in range(len(limbs))]
                if v != root:
                    heading = abs((float(angle[v]) + math.pi) % (2 * math.pi) - math.pi)  # folded into [0, pi]
                    spread = [(a + heading) / 2 for a in spread]
                directions.update({c: sign * a for c, a in zip(limbs, spread)})
        else:
            directions = dict(zip(children, fan(float(angle[v]), len(children), float(side[v]))))
        for c in children:
            parent[c], angle[c] = v, directions[c]
            order.append(c)
    return parent, order, angle


class SkeletonFigure:
    """An articulated figure of any skeleton: the spec's limbs as lines, its keypoints as discs.

    The rest pose comes from :func:`_layout_tree`; each figure bends every limb by up to 0.5 rad
    (turning the subtree beyond it), stretches it by 0.7-1.3, tilts the whole by N(0, 0.3) rad and
    is seen from the back (mirrored) with probability 1/4. Limbs between midline keypoints are
    drawn twice as thick (the body), limbs on one side in that side's colour, limbs across the
    sides (eye to eye) in the body's colour. Each keypoint's disc has its own colour (hue by its
    rank on its side: left warm, right cool, midline green, or any hue without flip pairs;
    alternating brightness), ringed in black, so that even a symmetric skeleton (a chain) has
    keypoints that can be told apart.
    """

    kind = "skeleton"

    def __init__(self, spec: KeypointSpec) -> None:
        k = spec.num_keypoints
        self.side = np.zeros(k, dtype=np.int64)  # +1: left, -1: right, 0: midline
        partner = list(range(k))
        for left, right in spec.flip_pairs:
            self.side[left], self.side[right] = 1, -1
            partner[left], partner[right] = right, left
        self.parent, self.order, self.rest_angle = _layout_tree(k, spec.skeleton, self.side, partner)
        self.limbs = [(a, b) for a, b in spec.skeleton if a != b]
        self.body_limbs = {i for i, (a, b) in enumerate(self.limbs) if self.side[a] == self.side[b] == 0}
        # drawing order: the body, then the limbs, so that the limbs stay visible
        self.draw_order = sorted(range(len(self.limbs)), key=lambda i: i not in self.body_limbs)
        limb_side = [int(np.sign(self.side[a] + self.side[b])) for a, b in self.limbs]  # 0: body or across
        self.limb_color = [{1: "left", -1: "right", 0: "torso"}[s] for s in limb_side]
        self.keypoint_colors = self._keypoint_colors(partner)

    def _keypoint_colors(self, partner: list[int]) -> list[Color]:
        # hue ranges: warm, cool, green; a skeleton without flip pairs spreads its keypoints round the circle
        bands = {1: (-0.08, 0.17), -1: (0.45, 0.75), 0: (0.22, 0.4) if self.side.any() else (0.0, 0.85)}
        colors: list[Color] = []
        for j, s in enumerate(self.side):
            # rank among the keypoints of its side, a right keypoint taking its left partner's rank
            same_side = [i for i in range(len(self.side)) if self.side[i] == s]
            keys = sorted(min(i, partner[i]) for i in same_side)
            rank = keys.index(min(j, partner[j]))
            low, high = bands[int(s)]
            hue = (low + (high - low) * (rank + 0.5) / len(keys)) % 1.0
            colors.append(hsv_color(hue, 1.0, 1.0 if rank % 2 == 0 else 0.6))
        return colors

    def sample(self, rng: np.random.Generator, width: int, height: int,
               size_range: tuple[float, float]) -> Figure:
        """A figure whose keypoints span ``size_range`` (fractions of the image height) x ``height``
        along the longer side of their box."""
        size = height * rng.uniform(*size_range)
        k = len(self.parent)
        bend = rng.uniform(-0.5, 0.5, size=k)
        stretch = rng.uniform(0.7, 1.3, size=k)
        tilt = rng.normal(0.0, 0.3)
        facing = 1.0 if rng.random() < 0.75 else -1.0  # +1: its left on image right, -1: seen from the back
        centre = np.array([rng.uniform(0.1, 0.9) * width, rng.uniform(0.15, 0.85) * height])
        turn = np.zeros(k)  # accumulated bend: a joint turns everything beyond it
        frame = np.zeros((k, 2))  # x towards the figure's left, y down
        for v in self.order[1:]:
            p = self.parent[v]
            turn[v] = turn[p] + bend[v]
            a = self.rest_angle[v] + turn[v]
            frame[v] = frame[p] + stretch[v] * np.array([math.sin(a), -math.cos(a)])
        frame[:, 0] *= facing
        c, s = math.cos(tilt), math.sin(tilt)
        frame = frame @ np.array([[c, s], [-s, c]])
        scale = size / max(float(np.ptp(frame, axis=0).max()), 1e-6)
        keypoints = (frame - (frame.min(axis=0) + frame.max(axis=0)) / 2) * scale + centre
        return {"keypoints": keypoints, "thickness": max(2, int(round(0.035 * size))),
                "radius": max(2, int(round(0.04 * size))), "hue": rng.uniform(0, 1)}

    def colors(self, figure: Figure, rng: np.random.Generator) -> dict[str, Any]:
        return {"left": hsv_color(rng.uniform(0.0, 0.12), 0.55, rng.uniform(0.7, 1.0)),
                "right": hsv_color(rng.uniform(0.5, 0.68), 0.55, rng.uniform(0.7, 1.0)),
                "torso": hsv_color(figure["hue"], 0.5, rng.uniform(0.4, 0.8)),
                "keypoints": self.keypoint_colors}

    def draw(self, canvas: np.ndarray, figure: Figure, colors: dict[str, Any] | None) -> None:
        kp, t, r = figure["keypoints"], figure["thickness"], figure["radius"]
        line = cv2.LINE_AA if colors else cv2.LINE_8
        for i in self.draw_order:
            a, b = self.limbs[i]
            color = 1 if colors is None else colors[self.limb_color[i]]
            cv2.line(canvas, _pts(kp[a]), _pts(kp[b]), color, 2 * t if i in self.body_limbs else t, lineType=line)
        for j in range(len(kp)):
            if colors is None:
                cv2.circle(canvas, _pts(kp[j]), r + 1, 1, -1)
            else:
                cv2.circle(canvas, _pts(kp[j]), r + 1, (20, 20, 20), -1, lineType=line)
                cv2.circle(canvas, _pts(kp[j]), r, colors["keypoints"][j], -1, lineType=line)


@lru_cache(maxsize=16)
def body_plan(spec: KeypointSpec) -> StickPerson | SkeletonFigure:
    """The stick person for a spec whose keypoints are all person parts, else the skeleton figure."""
    if set(spec.keypoint_names) <= set(PERSON_PARTS):
        return StickPerson(spec)
    return SkeletonFigure(spec)
