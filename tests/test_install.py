"""Installs anywhere: the keypoint specs are package data, and a wheel of the package, installed
into a bare folder, loads them, builds models and predicts from any working directory, without the
checkout.

The checkout is also installed in editable mode in the test environment; its import hook must not
answer for the wheel. The subprocess therefore runs with ``python -S`` (no ``site``: no ``.pth``
files, so no editable finder and no checkout path) and a ``PYTHONPATH`` of the wheel's folder
first, then the environment's site-packages for the dependencies only. It asserts that every
``dekr`` module it imported lives in the wheel's folder.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from dekr.data.spec import load_spec, shipped_specs
from tests.helpers.paths import FIXTURES, REPO_ROOT


# ------------------------------------------------------------------------------------- spec lookup
def test_shipped_specs_load_by_name_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert {"coco", "crowdpose"} <= set(shipped_specs())
    assert (load_spec("coco").num_keypoints, load_spec("crowdpose").num_keypoints) == (17, 14)
    assert not (REPO_ROOT / "configs" / "datasets").exists()  # one home: the package


def test_user_spec_loads_by_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    mine = {"name": "pair", "keypoint_names": ["left", "right"], "flip_pairs": [[0, 1]], "sigmas": [0.05, 0.05]}
    (tmp_path / "pair.yaml").write_text(yaml.safe_dump(mine))
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump({"root": "data", "spec": mine}))
    assert load_spec(tmp_path / "pair.yaml").flip_index == [1, 0]
    assert load_spec("pair.yaml").name == "pair"  # relative to the working folder
    assert load_spec("dataset.yaml").keypoint_names == ("left", "right")  # under a `spec:` key


def test_unknown_spec_names_the_shipped_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"shipped: \[.*'coco'"):
        load_spec("cocoa")
    with pytest.raises(FileNotFoundError, match="spec file 'missing/coco.yaml' not found"):
        load_spec("missing/coco.yaml")


# ------------------------------------------------------------------------------ the installed wheel
# Run in the subprocess, from a folder that holds nothing of the checkout.
CHECK = r'''
import json, sys
from pathlib import Path

import cv2
import torch

import dekr
from dekr.checkpoint import load_checkpoint, save_module_checkpoint
from dekr.data.spec import load_spec, shipped_specs
from dekr.inference import DecodeConfig, predict_poses
from dekr.models.dekr import DEKRNet, DEKRNetConfig
from dekr.module import DEKRModule

site, image_path = Path(sys.argv[1]).resolve(), sys.argv[2]
torch.manual_seed(0)
tiny = DEKRNetConfig(backbone="hrnet_w18_small", heatmap_channels=8, offset_channels_per_keypoint=4,
                     offset_blocks=1)
net = DEKRNet(tiny)
module = DEKRModule()  # the default config: HRNet-W32 and the coco spec
standin = save_module_checkpoint(DEKRModule(net=tiny), Path("standin.ckpt"))
loaded = load_checkpoint(standin)
image = cv2.cvtColor(cv2.imread(image_path), cv2.COLOR_BGR2RGB)
preds = predict_poses(loaded.net, [image], loaded.spec, DecodeConfig(input_size=256, flip_test=False))
print(json.dumps({
    "dekr_file": dekr.__file__,
    "outside_site": sorted(name for name, mod in sys.modules.items() if name.split(".")[0] == "dekr"
                           and not Path(getattr(mod, "__file__", None) or site).resolve().is_relative_to(site)),
    "shipped": shipped_specs(),
    "coco_k": load_spec("coco").num_keypoints,
    "crowdpose_k": load_spec("crowdpose").num_keypoints,
    "net_k": net.config.num_keypoints,
    "module_spec": module.spec.name,
    "loaded_spec": loaded.spec.name,
    "image_shape": list(image.shape),
    "num_results": len(preds),
    "keypoints_shape": list(preds[0]["keypoints"].shape),
    "scores_shape": list(preds[0]["scores"].shape),
    "finite": bool(torch.isfinite(preds[0]["keypoints"]).all()),
}))
'''

# What the wheel is built from: the packaging files at the top of the checkout and the package.
# A copy, so that the build neither writes build/ and *.egg-info into the checkout nor picks up a
# stale build/lib there.
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def _run(cmd: list[str], cwd: Path, **kwargs) -> str:
    """Run ``cmd``; on failure, fail the test with its output."""
    done = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def _dependency_paths() -> list[str]:
    """The environment's site-packages folders (dependencies), without the checkout or ``.pth`` entries."""
    return [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel`` of the checkout, ``pip install --target`` into a bare folder; returns that folder."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for item in REPO_ROOT.iterdir():
        if item.is_file():
            shutil.copy2(item, source / item.name)
    shutil.copytree(REPO_ROOT / "dekr", source / "dekr", ignore=_SKIP)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(root / "wheel")], root)
    (wheel,) = (root / "wheel").glob("dekr_lightning-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert {"dekr/data/specs/coco.yaml", "dekr/data/specs/crowdpose.yaml"} <= names, "specs are not package data"
    site = root / "site"
    _run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], root)
    return site


@pytest.mark.slow  # builds a wheel, imports torch + Lightning in a subprocess (~20 s on 2 cores)
def test_wheel_works_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), *_dependency_paths()])}
    env.pop("PYTHONHOME", None)
    image = FIXTURES / "coco" / "000000000785.jpg"
    stdout = _run([sys.executable, "-S", str(script), str(installed), str(image)], tmp_path, env=env, timeout=600)
    result = json.loads(stdout.strip().splitlines()[-1])

    assert Path(result["dekr_file"]).resolve().is_relative_to(installed.resolve()), result["dekr_file"]
    assert result["outside_site"] == []  # no dekr module came from the checkout
    assert {"coco", "crowdpose"} <= set(result["shipped"])
    assert (result["coco_k"], result["crowdpose_k"], result["net_k"]) == (17, 14, 17)
    assert result["module_spec"] == result["loaded_spec"] == "coco"
    assert result["num_results"] == 1 and result["image_shape"][2] == 3
    num_people = result["keypoints_shape"][0]
    assert 0 <= num_people <= 30  # DecodeConfig.max_num_people
    assert result["keypoints_shape"] == [num_people, 17, 3] and result["scores_shape"] == [num_people]
    assert result["finite"]
