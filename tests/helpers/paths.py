"""Where the tests' data are: the real images and annotations in tests/fixtures, the repository."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"

AP10K_JSON = FIXTURES / "ap10k" / "test_ap10k.json"
# The benchmark's OKS sigmas, in its keypoint order (shared/data/README.md).
AP10K_SIGMAS = (.025, .025, .026, .035, .035, .079, .072, .062, .079, .072, .062, .107, .087, .089, .107, .087, .089)
