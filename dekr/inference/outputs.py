"""Outputs of an inference run in a folder: drawn images or video, COCO ``results.json`` + ``images.json``.

:func:`write_outputs` consumes the results of ``Predictor.__call__``/``predict_frames``/``stream``
and writes, as it goes:

* ``images/<name>.jpg`` (images, frame folders) or ``<name>_poses.mp4`` (video, camera);
* ``results.json``: COCO keypoint results (:func:`dekr.inference.predict.to_coco_results`), with
  ``track_id`` when tracked;
* ``images.json``: the COCO ``images`` and ``categories``, so ``COCO(images.json).loadRes(results.json)``
  works. Every pose is written with the spec's ``pooled_category_id`` (DEKR is class-agnostic: one
  category id stands for all of the spec's, e.g. AP-10K's 54 species), the one category listed.

The results are rewritten atomically every :data:`WRITE_EVERY_IMAGES` images or
:data:`WRITE_EVERY_SECONDS` seconds, so a kill (even SIGKILL or running out of memory) keeps all but
the last few; an error, a broken video, Ctrl-C or SIGTERM keep all of them. Drawn images keep their
names' stems (``photo.jpg`` -> ``images/photo.jpg``); a stem met twice (``photo.jpg``, ``photo.png``)
takes its extension too (``images/photo_png.jpg``), so nothing is drawn over.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from dekr.data.spec import KeypointSpec
from dekr.file_publish import atomic_write_text
from dekr.inference.result import PoseResult
from dekr.inference.sources import InputError

log = logging.getLogger(__name__)


@dataclass
class DrawOptions:
    """Attributes:
    enabled: write drawn images / video at all.
    kpt_thr: keypoints scoring under this are not drawn (nor their limbs).
    color_by: ``limb`` or ``person`` (default: ``person`` when tracked).
    show_ids: write the person / track id above each pose.
    max_poses: draw at most this many poses per image (best first).
    """

    enabled: bool = True
    kpt_thr: float = 0.1
    color_by: str | None = None
    show_ids: bool = True
    max_poses: int | None = None

    def draw_kwargs(self) -> dict[str, Any]:
        return {"kpt_thr": self.kpt_thr, "color_by": self.color_by, "show_ids": self.show_ids,
                "max_poses": self.max_poses}


def coco_category(spec: KeypointSpec) -> dict[str, Any]:
    """The COCO ``categories`` entry of the category results are written with (1-based skeleton).

    Named after the spec: the id stands for every one of the spec's categories (pooled).
    """
    return {"id": spec.pooled_category_id, "name": spec.name, "supercategory": spec.name,
            "keypoints": list(spec.keypoint_names), "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton]}


class CocoWriter:
    """COCO results and images collected as a run goes; :meth:`write` is safe to call at any time."""

    def __init__(self, out_dir: Path, spec: KeypointSpec) -> None:
        self.out_dir, self.spec = Path(out_dir), spec
        self.results: list[dict[str, Any]] = []
        self.images: list[dict[str, Any]] = []

    def add(self, result: PoseResult) -> None:
        self.images.append(result.image_info())
        self.results.extend(result.to_coco(category_id=self.spec.pooled_category_id))

    def write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _atomic_json(self.out_dir / "results.json", self.results)
        _atomic_json(self.out_dir / "images.json", {"images": self.images, "categories": [coco_category(self.spec)]})


def _atomic_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data))


#: The results json files are rewritten after this many images or seconds, whichever comes first.
WRITE_EVERY_IMAGES = 50
WRITE_EVERY_SECONDS = 10.0


class Stopped(Exception):
    """SIGTERM arrived during an inference run (raised from the signal handler, between images)."""


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM raises :class:`Stopped` in the main thread while inside (elsewhere: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        raise Stopped("stopped by SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class DrawnNames:
    """Output file names for drawn images: the stem, or stem + extension when the stem was used."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, name: str) -> str:
        path = Path(name)
        candidates = [f"{path.stem}.jpg", f"{path.stem}_{path.suffix.lstrip('.')}.jpg"]
        candidates += [f"{path.stem}_{path.suffix.lstrip('.')}_{i}.jpg" for i in range(2, len(self.used) + 3)]
        chosen = next(c for c in candidates if c not in self.used)
        self.used.add(chosen)
        return chosen


@dataclass
class RunReport:
    """What :func:`write_outputs` did: images / frames processed, poses written, problems."""

    processed: int = 0
    poses: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    stopped_by: str | None = None  # "SIGTERM" or "SIGINT" when a signal stopped the run
    seconds: float = 0.0


class _DrawnVideo:
    """``<name>_poses.mp4``, opened at the first frame (its size)."""

    def __init__(self, path: Path, fps: float, report: RunReport) -> None:
        self.path, self.fps, self.report = path, fps, report
        self.writer: cv2.VideoWriter | None = None
        self.failed = False

    def write(self, image_rgb: Any) -> None:
        if self.failed:
            return
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = image_rgb.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                self.report.warnings.append(f"could not open a video writer for {self.path}; no video written")
                self.failed = True
                return
        self.writer.write(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def write_outputs(results: Iterable[PoseResult], source: Any, out_dir: Path, spec: KeypointSpec,
                  draw: DrawOptions | None = None, progress: bool = True,
                  write_every: int = WRITE_EVERY_IMAGES) -> RunReport:
    """Consume ``results`` (of ``source``, a :mod:`dekr.inference.sources` source) into ``out_dir``,
    rewriting the results json files every ``write_every`` images or :data:`WRITE_EVERY_SECONDS`.

    Errors (also Ctrl-C) are caught and reported in ``RunReport.error``; what was done until then is
    written. ``source.skipped`` and ``source.warnings`` end up in the report.
    """
    from tqdm import tqdm

    draw = draw or DrawOptions()
    report = RunReport()
    writer = CocoWriter(out_dir, spec)
    is_video = getattr(source, "kind", "") in ("video", "camera")
    video = _DrawnVideo(out_dir / f"{source.name}_poses.mp4", getattr(source, "fps", 30.0), report)
    total = getattr(source, "total", None)
    bar = tqdm(total=total, desc="video" if is_video else "images", unit="frame" if is_video else "img",
               disable=not progress or (not is_video and (total or 0) < 2), dynamic_ncols=True, file=sys.stderr)
    started = last_write = time.perf_counter()
    names = DrawnNames()
    try:
        with stop_on_sigterm():
            for result in results:
                writer.add(result)
                if draw.enabled and is_video:
                    video.write(result.draw(**draw.draw_kwargs(), caption=f"frame {result.frame}"))
                elif draw.enabled:
                    result.save(out_dir / "images" / names(result.name), **draw.draw_kwargs())
                bar.update()
                if len(writer.images) % write_every == 0 \
                        or time.perf_counter() - last_write >= WRITE_EVERY_SECONDS:
                    writer.write()
                    last_write = time.perf_counter()
    except InputError as err:
        report.error = str(err)
    except KeyboardInterrupt:
        report.error, report.stopped_by = "interrupted", "SIGINT"
    except Stopped as err:
        report.error, report.stopped_by = str(err), "SIGTERM"
    except OSError as err:  # a full or read-only disk: one line naming the file
        report.error = str(err)
    except Exception as err:  # keep what was done, then report
        report.error = f"{type(err).__name__}: {err}"
        log.exception("inference failed")
    finally:
        bar.close()
        video.close()
        source.close()
        if writer.images or report.error is None:
            try:
                writer.write()
            except OSError as err:
                report.error = f"{report.error}; {err}" if report.error else str(err)
    report.seconds = time.perf_counter() - started
    report.processed, report.poses = len(writer.images), len(writer.results)
    report.skipped, report.warnings = list(source.skipped), report.warnings + list(source.warnings)
    return report
