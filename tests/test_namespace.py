"""The flat top-level namespace: ``dekr.load``, ``dekr.DEKRNet``, ... resolve; ``import dekr`` stays cheap."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.paths import REPO_ROOT

HEAVY = ("torch", "lightning", "pytorch_lightning", "cv2", "timm", "torchmetrics")


def test_import_dekr_imports_no_heavy_module():
    code = f"import sys, dekr; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name, module", [
    ("load", "dekr.inference.predictor"), ("DEKRNet", "dekr.models.dekr"), ("DEKRModule", "dekr.module"),
    ("DEKRDataModule", "dekr.data.datamodule"), ("DecodeConfig", "dekr.inference.config"),
    ("load_spec", "dekr.data.spec"), ("OKSAP", "dekr.metrics.oks_ap"), ("draw_poses", "dekr.visualize"),
    ("load_checkpoint", "dekr.checkpoint"),
])
def test_flat_names(name, module):
    import dekr

    assert getattr(dekr, name).__module__ == module and name in dir(dekr)


def test_evaluate():
    if not (REPO_ROOT / "dekr" / "evaluation.py").is_file():
        pytest.skip("dekr/evaluation.py not here yet")
    import dekr

    assert dekr.evaluate.__module__ == "dekr.evaluation"


def test_unknown_name():
    import dekr

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        dekr.nothing  # noqa: B018
