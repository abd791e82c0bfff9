"""The poses found in one image (or video frame), with drawing, saving, showing and COCO export."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dekr.data.spec import KeypointSpec


@dataclass
class PoseResult:
    """Poses of one image.

    Attributes:
        keypoints: (P, K, 3) float32 (x, y, score) in the image's pixels.
        scores: (P,) pose scores.
        image: (H, W, 3) uint8 RGB, the image the poses were found in.
        spec: keypoint spec (names, skeleton).
        name: file name, ``<video>#<frame>`` for video frames, ``""`` for arrays.
        image_id: COCO image id (numeric file name, frame index), None for arrays.
        track_ids: (P,) track ids (video, cameras, frame sequences), else None.
        frame: frame index in a video / sequence, else None.
        time: seconds since the first frame, else None.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    image: np.ndarray
    spec: KeypointSpec
    name: str = ""
    image_id: int | None = None
    track_ids: np.ndarray | None = None
    frame: int | None = None
    time: float | None = None

    def __len__(self) -> int:
        return len(self.scores)

    #: The most pose scores :meth:`__repr__` shows.
    REPR_SCORES = 5

    def __repr__(self) -> str:
        """One line: where the image came from, how many poses, its size and the best scores (never the
        arrays themselves, which would fill a terminal)."""
        best = np.sort(np.asarray(self.scores, dtype=np.float64))[::-1]
        shown = " ".join(f"{s:.2f}" for s in best[: self.REPR_SCORES])
        more = " ..." if len(best) > self.REPR_SCORES else ""
        parts = [repr(self.name) if self.name else "array", f"{len(self)} poses",
                 f"image {tuple(self.image.shape)}", f"spec {self.spec.name}"]
        if self.frame is not None:
            parts.append(f"frame {self.frame}")
        if len(best):
            parts.append(f"scores {shown}{more}")
        if self.track_ids is not None:
            parts.append(f"{int((np.asarray(self.track_ids) >= 0).sum())} tracked")
        return f"PoseResult({', '.join(parts)})"

    def draw(self, kpt_thr: float = 0.1, color_by: str | None = None, show_ids: bool = True,
             max_poses: int | None = None, caption: str | None = None) -> np.ndarray:
        """The image with the skeletons drawn, (H, W, 3) uint8 RGB (:func:`dekr.visualize.draw_poses`).

        Args:
            kpt_thr: keypoints scoring under this are hidden (and their limbs).
            color_by: ``limb`` or ``person``; default: ``person`` when tracked, else ``limb``.
            show_ids: write the person / track id above each pose.
            max_poses: at most this many poses (best first).
            caption: text on a band at the bottom (e.g. the frame number).
        """
        from dekr.visualize import draw_caption, draw_poses

        canvas = draw_poses(self.image, self.keypoints, self.spec.skeleton, scores=self.scores, ids=self.track_ids,
                            min_score=kpt_thr, color_by=color_by or ("limb" if self.track_ids is None else "person"),
                            flip_pairs=self.spec.flip_pairs, show_ids=show_ids, max_poses=max_poses)
        return draw_caption(canvas, caption) if caption else canvas

    def save(self, path: str | Path, **draw_options: Any) -> Path:
        """Write :meth:`draw` to an image file (format from the suffix); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, encoded = cv2.imencode(path.suffix or ".jpg", cv2.cvtColor(self.draw(**draw_options), cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"could not encode {path} (unknown image suffix?)")
        try:  # Python's write, unlike cv2.imwrite, says why it failed (a full disk, a read-only folder)
            path.write_bytes(encoded.tobytes())
        except OSError as err:
            path.unlink(missing_ok=True)
            raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from err
        return path

    def show(self, window: str = "dekr", wait_ms: int = 0, **draw_options: Any) -> None:
        """Show :meth:`draw` in an OpenCV window (waits ``wait_ms``, 0: a key press); RuntimeError without
        a display."""
        if os.name != "nt" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise RuntimeError("no display here (DISPLAY is not set): use result.save('poses.jpg') or "
                               "result.draw() instead of result.show()")
        try:
            cv2.imshow(window, cv2.cvtColor(self.draw(**draw_options), cv2.COLOR_RGB2BGR))
            cv2.waitKey(wait_ms)
        except cv2.error as err:
            raise RuntimeError(f"cannot open a window ({err}); use result.save(path) instead") from None

    def to_coco(self, image_id: int | None = None, category_id: int | None = None) -> list[dict[str, Any]]:
        """COCO keypoint result dicts, one per pose (with ``track_id`` when tracked); ``category_id``
        defaults to the spec's ``pooled_category_id``."""
        from dekr.inference.predict import to_coco_results

        image_id = self.image_id if image_id is None else image_id
        if image_id is None:
            raise ValueError("this result has no image id (an array was given): pass to_coco(image_id)")
        category_id = self.spec.pooled_category_id if category_id is None else category_id
        return to_coco_results([{"keypoints": self.keypoints, "scores": self.scores}], [image_id], category_id,
                               None if self.track_ids is None else [self.track_ids])

    def image_info(self, image_id: int | None = None) -> dict[str, Any]:
        """The COCO ``images`` entry: id, file name, size (and frame, time for video frames)."""
        h, w = self.image.shape[:2]
        info: dict[str, Any] = {"id": self.image_id if image_id is None else image_id, "file_name": self.name,
                                "width": w, "height": h}
        if self.frame is not None and self.time is not None:
            info.update(frame=self.frame, time=round(self.time, 4))
        return info
