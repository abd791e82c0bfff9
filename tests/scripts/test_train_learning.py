"""Proof that training learns (slow, CPU): the demo, shortened, and real COCO images memorised.

Recipes and thresholds: ``tests/scripts/learning_proofs.py``; the spread of their APs over seeds,
CPU paths and thread counts: ``benchmarks/learning_spread.py`` (its table is in each recipe's docstring).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripts.learning_proofs import PROOFS, run_proof
from tests.scripts.script_runner import threads_per_worker

pytestmark = [pytest.mark.slow, pytest.mark.learning]


@pytest.mark.timeout(1800)
def test_demo_learns_synthetic_people(tmp_path: Path) -> None:
    proof = PROOFS["demo"]
    outcome = run_proof(proof, tmp_path, threads=threads_per_worker())
    assert not outcome.failures(proof.expected), "\n".join(outcome.failures(proof.expected))


@pytest.mark.timeout(1800)
def test_memorises_coco_minicoco_person_images(tmp_path: Path) -> None:
    proof = PROOFS["minicoco"]
    outcome = run_proof(proof, tmp_path, threads=threads_per_worker())
    assert not outcome.failures(proof.expected), "\n".join(outcome.failures(proof.expected))
