"""dekr.sweeps.spec: sweep files, their points and seeds, and the names they give."""
from __future__ import annotations

from pathlib import Path

import pytest

from dekr.loggers import run_identity
from dekr.sweeps.spec import Point, SweepError, load_sweep, named_values, resolve_sweep
from tests.sweeps.conftest import write_sweep


def test_seeds_repeat_every_configuration_configuration_major(tmp_path: Path) -> None:
    spec = load_sweep(write_sweep(tmp_path, seeds=[3, 7], parameters={"a.x": [1, 2], "b.y": ["p", "q"]}))
    points = spec.points()
    assert len(points) == 8
    assert [(p.configuration, p.seed) for p in points[:4]] == [(0, 3), (0, 7), (1, 3), (1, 7)]
    assert [p.index for p in points] == list(range(8))
    assert points[3].parameters == {"a.x": 1, "b.y": "q"} and points[3].label() == "x=1 y=q seed=7"


def test_no_seeds_one_point_per_configuration(tmp_path: Path) -> None:
    spec = load_sweep(write_sweep(tmp_path, seeds=None))
    assert [p.seed for p in spec.points()] == [None, None] and spec.points()[1].label() == "offset_block=basic"


def test_shipped_ablation_keeps_the_paper_split_on_four_gpus() -> None:
    spec = load_sweep(resolve_sweep("adaptive_conv_ablation"))
    assert {p["model.net.offset_block"] for p in spec.configurations()} == {"adaptive", "basic", "deformable"}
    assert spec.seeds == (0, 1, 2) and len(spec.points()) == 18
    assert not any("batch_size" in a for a in spec.args)  # the recipe's 10 per GPU x 4 GPUs stays
    options = spec.slurm.sbatch_options()
    assert "--gpus-per-node=4" in options and "--ntasks-per-node=4" in options and "--nodes=1" in options


def test_random_search_is_seeded_and_in_range(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, method="random", num_samples=20, seed=3, seeds=None, parameters={
        "model.optim.lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2},
        "model.net.offset_blocks": {"distribution": "int_uniform", "min": 1, "max": 3},
        "model.net.offset_block": ["adaptive", "basic"]})
    a, b = load_sweep(path).configurations(), load_sweep(path).configurations()
    assert a == b and len(a) == 20
    assert all(1e-4 <= p["model.optim.lr"] <= 1e-2 and p["model.net.offset_blocks"] in (1, 2, 3) for p in a)
    assert len({p["model.net.offset_block"] for p in a}) == 2


@pytest.mark.parametrize("fields,message", [
    ({"parameters": {}}, "no parameters"),
    ({"parameters": {"a": {"distribution": "uniform", "min": 0, "max": 1}}}, "need method: random"),
    ({"method": "bayes"}, "grid or random"),
    ({"typo": 1}, "unknown sweep field"),
    ({"seeds": [0, 0]}, "distinct integers"),
    ({"seeds": "0"}, "distinct integers"),
    ({"mode": "best"}, "max or min"),
    ({"slurm": {"gpu": 4}}, "unknown slurm field"),
    ({"slurm": {"nodes": 0}}, "slurm.nodes must be a positive integer"),
    ({"parameters": {"seed_everything": [1, 2]}}, "seeds: [0, 1, 2]"),
])
def test_bad_sweep_files_name_the_file_and_field(tmp_path: Path, fields: dict, message: str) -> None:
    path = write_sweep(tmp_path, **fields)
    with pytest.raises(SweepError, match=r".*") as err:
        load_sweep(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_not_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("parameters: [unclosed")
    with pytest.raises(SweepError, match="not valid YAML"):
        load_sweep(path)


def test_slurm_resources_become_sbatch_options(tmp_path: Path) -> None:
    spec = load_sweep(write_sweep(tmp_path, slurm={"nodes": 2, "gpus_per_node": 8, "cpus_per_task": 6, "time": "2:00:00",
                                                   "partition": "gpu", "mem": 0, "sbatch_args": ["--qos", "high"]}))
    assert spec.slurm.sbatch_options() == ["--nodes=2", "--ntasks-per-node=8", "--cpus-per-task=6", "--time=2:00:00",
                                           "--gpus-per-node=8", "--partition=gpu", "--mem=0", "--qos", "high"]
    cpu = load_sweep(write_sweep(tmp_path, slurm={"gpus_per_node": 0, "tasks_per_node": 2})).slurm.sbatch_options()
    assert "--ntasks-per-node=2" in cpu and not any(o.startswith("--gpus") for o in cpu)


def test_points_are_named_as_their_wandb_runs() -> None:
    assert named_values({"model.net.offset_block": "my_blocks.wide.WideBlock", "model.optim.lr": 0.00123456,
                         "model.optim.milestones": [90, 120], "model.net.disentangled": True}) == {
        "offset_block": "WideBlock", "lr": "0.001235", "milestones": "[90,120]", "disentangled": "true"}
    assert list(named_values({"model.optim.lr": 1, "head.optim.lr": 2})) == ["model.optim.lr", "head.optim.lr"]
    point = Point(3, 1, 1, {"model.net.offset_block": "basic", "model.net.disentangled": False})
    assert point.label() == run_identity(None, "r", {"name": "s", "seed": 1, "parameters": point.parameters})["name"]
