"""Inputs for inference: images, folders of images, video files and cameras, read as :class:`Frame`s.

``open_source("photo.jpg" | "images/" | "clip.mp4" | 0)`` gives a source to iterate: frames in order,
unreadable files of a folder skipped (``source.skipped``) and a video that ends early noted
(``source.warnings``). Inputs that cannot be read at all raise :class:`InputError` with a message for
the user.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dekr.inference.preprocess import check_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}
DEFAULT_FPS = 30.0


class InputError(RuntimeError):
    """An input that cannot be read at all (message for the user)."""


@dataclass
class Frame:
    """One image of a source.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        name: file name, or ``<video name>#<frame index>`` for videos and cameras.
        index: position in the source, 0-based.
        image_id: COCO image id: the numeric file name (``000000000785.jpg`` -> 785) when all names of
            the source are numeric, else 1, 2, ... in order; the frame index for videos and cameras;
            None for images given as arrays.
        time: seconds since the first frame (videos, cameras; frame folders read as sequences).
    """

    image: np.ndarray
    name: str
    index: int
    image_id: int | None
    time: float | None = None


def classify_input(value: str | int | Path) -> tuple[str, int | Path]:
    """-> ("camera", index) | ("folder", Path) | ("image", Path) | ("video", Path)."""
    if isinstance(value, int) or (str(value).isdigit() and not Path(str(value)).exists()):
        return "camera", int(value)
    path = Path(value)
    if path.is_dir():
        return "folder", path
    if not path.exists():
        raise InputError(f"input {value} does not exist (give an image, a folder, a video file or a camera index)")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image", path
    if suffix in VIDEO_SUFFIXES:
        return "video", path
    # Unknown suffix: an image if OpenCV decodes it, else try it as a video.
    return ("image", path) if cv2.imread(str(path)) is not None else ("video", path)


def list_folder(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image files of a folder (sorted, not recursive) and the other files, with why they are skipped."""
    images, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.is_dir() or path.name.startswith("."):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        else:
            skipped.append((path, "not an image file"))
    return images, skipped


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; :class:`InputError` for missing, corrupt or truncated files."""
    from dekr.data.dataset import DataError, read_image_rgb

    try:
        return read_image_rgb(path)
    except DataError as err:
        raise InputError(str(err)) from None


def image_ids(paths: list[Path]) -> list[int]:
    """COCO-style numeric file names (000000000785.jpg -> 785) when all are numeric and distinct,
    else 1, 2, ... in order."""
    stems = [p.stem for p in paths]
    if stems and all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(paths) + 1))


class ImageFiles:
    """Image files (one, or a folder's) as frames; unreadable ones are added to ``skipped``.

    Args:
        paths: the image files, in order.
        skipped: files already known not to be images, with the reason.
        fps: when given, the files are consecutive video frames: ``Frame.time = index / fps``.
        where: the file or folder given (its stem names the outputs).
        max_frames: stop after this many frames are read (as for a video).
    """

    def __init__(self, paths: list[Path], skipped: list[tuple[Path, str]] | None = None,
                 fps: float | None = None, where: Path | None = None, max_frames: int | None = None) -> None:
        self.paths, self.skipped, self.fps, self.max_frames = list(paths), list(skipped or []), fps, max_frames
        self.where = where or (self.paths[0] if self.paths else Path("images"))
        self.name = self.where.stem
        self.kind = "folder" if self.where.is_dir() else "image"
        self.warnings: list[str] = []
        self.total: int | None = min(len(self.paths), max_frames) if max_frames else len(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        read = 0
        for index, (path, image_id) in enumerate(zip(self.paths, image_ids(self.paths))):
            if self.max_frames is not None and read >= self.max_frames:
                return
            try:
                image = read_image(path)
                check_image(image)  # e.g. a 1x1 image: skipped and named, the others go on
            except (InputError, ValueError) as err:
                self.skipped.append((path, str(err)))
                continue
            read += 1
            yield Frame(image, path.name, index, image_id, None if self.fps is None else index / self.fps)
        if read == 0:
            raise InputError(f"no readable image in {self.where}")

    def close(self) -> None:
        pass


class VideoSource:
    """A video file or a camera as frames (RGB), stopping after ``max_frames`` when given.

    ``Frame.time`` is the frame index / fps for files, the wall-clock time since the first frame for
    cameras. ``fps``: the given one, else the video's, else 30.
    """

    def __init__(self, source: int | Path, fps: float | None = None, max_frames: int | None = None) -> None:
        self.kind = "camera" if isinstance(source, int) else "video"
        self.source, self.max_frames = source, max_frames
        self.name = f"camera{source}" if self.kind == "camera" else Path(source).stem
        self.skipped: list[tuple[Path, str]] = []
        self.warnings: list[str] = []
        self.capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
        if not self.capture.isOpened():
            self.capture.release()
            if self.kind == "camera":
                raise InputError(
                    f"camera {source} could not be opened (no such device, in use by another program, or no "
                    "permission; on Linux `ls /dev/video*` lists the cameras)")
            raise InputError(f"cannot open video {source}: unreadable, truncated or in an unsupported format")
        own_fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps or (own_fps if own_fps and math.isfinite(own_fps) and 0 < own_fps <= 1000 else DEFAULT_FPS)
        self.expected = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if self.kind == "video" else -1
        if self.expected > 0:
            self.total: int | None = min(self.expected, max_frames) if max_frames else self.expected
        else:
            self.total = max_frames

    def __iter__(self) -> Iterator[Frame]:
        index, start = 0, time.monotonic()
        try:
            while self.max_frames is None or index < self.max_frames:
                ok, frame = self.capture.read()
                if not ok or frame is None:
                    break
                t = index / self.fps if self.kind == "video" else time.monotonic() - start
                yield Frame(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), f"{self.name}#{index:06d}", index, index, t)
                index += 1
        finally:
            self.close()
        if index == 0:
            raise InputError(f"video {self.source} opened but no frame could be decoded (corrupt or unsupported "
                             "codec)" if self.kind == "video" else f"camera {self.source} opened but delivered no frame")
        if self.kind == "video" and self.total and index < self.total:
            self.warnings.append(f"video {self.source} ended after {index} of {self.total} frames (truncated or "
                                 "corrupt?); the frames read were processed")

    def close(self) -> None:
        self.capture.release()


Source = ImageFiles | VideoSource


def open_source(value: str | int | Path, sequence: bool = False, fps: float | None = None,
                max_frames: int | None = None) -> Source:
    """An image, a folder of images, a video file or a camera index as a source of frames.

    Args:
        value: a path, or a camera index (an int, or a string of digits that is not a file).
        sequence: a folder holds consecutive video frames (they get times, at ``fps`` or 30).
        fps: frame rate of a sequence, or instead of a video's own.
        max_frames: stop a video, camera or folder after this many frames.
    """
    kind, where = classify_input(value)
    if kind in ("video", "camera"):
        return VideoSource(where, fps, max_frames)  # type: ignore[arg-type]
    assert isinstance(where, Path)
    if kind == "image":
        return ImageFiles([where], where=where)
    paths, skipped = list_folder(where)
    if not paths:
        raise InputError(f"folder {where} holds no image files ({len(skipped)} other files)")
    return ImageFiles(paths, skipped, (fps or DEFAULT_FPS) if sequence else None, where, max_frames)
