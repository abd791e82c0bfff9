"""The README's "Python API" examples, run as written in a folder holding the files they name."""
from __future__ import annotations

import re
import shutil

from tests.helpers.paths import FIXTURES, REPO_ROOT
from tests.helpers.checkpoints import small_checkpoint


def api_examples() -> list[str]:
    """The ```python blocks of the README section "## Python API" (up to the next "## " heading)."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_readme_python_api_examples_run(tmp_path, monkeypatch):
    blocks = api_examples()
    assert len(blocks) >= 2
    five = [line for line in blocks[0].splitlines() if line.strip()]
    assert len(five) <= 5 and five[0] == "import dekr"  # the five-line example stays five lines
    small_checkpoint(tmp_path / "checkpoint.ckpt")  # a small random net (decodes at 128 px)
    shutil.copy(FIXTURES / "coco" / "000000000785.jpg", tmp_path / "photo.jpg")
    shutil.copy(FIXTURES / "posetrack18_frames" / "000001_mpiinew_test.mp4", tmp_path / "clip.mp4")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:  # in order, sharing names, as a reader would paste them
        exec(compile(block, "README.md (Python API)", "exec"), namespace)  # noqa: S102 (our own README)
    assert (tmp_path / "poses.jpg").is_file()
    assert namespace["result"].keypoints.shape[1:] == (17, 3) and len(namespace["results"]) == 2
    assert namespace["frame"].frame == 2 and namespace["coco"][0]["image_id"] == 1
