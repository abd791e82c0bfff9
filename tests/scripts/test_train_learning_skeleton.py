"""Proof that training learns a skeleton other than COCO's (slow, CPU): ``configs/demo_ap10k.yaml``
(synthetic figures of AP-10K's quadruped skeleton: 17 keypoints with their own names, flip pairs and
OKS sigmas), shortened. Recipe and threshold: ``tests/scripts/learning_proofs.py``."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripts.learning_proofs import PROOFS, run_proof
from tests.scripts.script_runner import threads_per_worker

pytestmark = [pytest.mark.slow, pytest.mark.learning]


@pytest.mark.timeout(1800)
def test_learns_the_ap10k_skeleton_on_synthetic_figures(tmp_path: Path) -> None:
    proof = PROOFS["skeleton"]
    outcome = run_proof(proof, tmp_path, threads=threads_per_worker())
    assert not outcome.failures(proof.expected), "\n".join(outcome.failures(proof.expected))
