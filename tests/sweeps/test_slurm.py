"""dekr.sweeps.slurm without a cluster: array specs, the sbatch command, a missing sbatch."""
from __future__ import annotations

import pytest

from dekr.sweeps import Campaign
from dekr.sweeps.slurm import SubmissionError, array_ranges, sbatch_command, submit


def test_array_ranges() -> None:
    assert array_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert array_ranges([3]) == "3" and array_ranges([4, 2, 3, 2]) == "2-4"


def test_sbatch_command_resources_then_user_options(campaign: Campaign) -> None:
    cmd = sbatch_command(campaign, [campaign.points[1], campaign.points[3]], ["--partition", "debug"])
    assert "--array=1,3" in cmd and "--job-name=sweep-ablation" in cmd
    assert cmd.index("--nodes=1") < cmd.index("--partition") < cmd.index(str(campaign.folder.resolve()))
    assert f"--output={campaign.folder.resolve() / 'logs'}/%A_%a.out" in cmd


def test_missing_sbatch_says_so(campaign: Campaign, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without sbatch, as on a laptop
    with pytest.raises(SubmissionError, match="sbatch is not on the PATH.*--local"):
        submit(campaign, {0: campaign.new_run(campaign.points[0])})
