"""scripts/make_demo_media.py: the synthetic crowd image and walking video the README's first inference
example runs the demo model on, written as files OpenCV reads back."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dekr.data.synthetic_crowd import CrowdConfig, crowd_scene
from tests.scripts.script_runner import run_script


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from ``path`` (BGR)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return frames
            frames.append(frame)
    finally:
        capture.release()


def test_writes_the_crowd_image_and_a_video_of_its_frame_count(tmp_path):
    out = tmp_path / "media"
    done = run_script("make_demo_media.py", ["--out", str(out), "--people", "3", "--frames", "10",
                                             "--fps", "8", "--height", "160"], cwd=tmp_path)
    assert f"wrote {out / 'people.jpg'}" in done.stdout
    image = cv2.imread(str(out / "people.jpg"))
    # the demo's people (demo.yaml: seed 0, heights 0.7-0.9), scene 0: the library's drawing, as a JPEG
    expected, anns = crowd_scene(0, 0, CrowdConfig(num_people=3, height=160)).frame(0)
    assert image.shape == expected.shape and len(anns) == 3
    assert np.abs(cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(int) - expected).mean() < 4
    frames = read_video(out / "walking.mp4")
    capture = cv2.VideoCapture(str(out / "walking.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == 8 and capture.get(cv2.CAP_PROP_FRAME_COUNT) == 10
    capture.release()
    video = crowd_scene(0, 1, CrowdConfig(num_people=3, height=160, num_frames=10))  # scene 1, room to walk
    assert len(frames) == 10 and frames[0].shape == (160, video.width, 3) and video.width > image.shape[1]
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 2  # the people walked


def test_default_output_is_demo_media_in_the_working_folder(tmp_path):
    run_script("make_demo_media.py", ["--frames", "2"], cwd=tmp_path)
    assert sorted(p.name for p in (tmp_path / "demo_media").iterdir()) == ["people.jpg", "walking.mp4"]
    assert cv2.imread(str(tmp_path / "demo_media" / "people.jpg")).shape[0] == 256
    assert len(read_video(tmp_path / "demo_media" / "walking.mp4")) == 2
    # (two names: infer.py's default --out is outputs/infer/<input name>, one per README command)


def test_an_odd_height_is_refused_in_one_line(tmp_path):
    done = run_script("make_demo_media.py", ["--height", "255"], cwd=tmp_path, check=False)
    assert done.returncode == 1 and not (tmp_path / "demo_media").exists()
    assert done.stderr.strip() == "error: --height 255: must be even and at least 32 (video codecs need even sizes)"
