"""Your own keypoints, end to end, on real AP-10K data (README "Your own keypoints").

Two real AP-10K images (``tests/fixtures/ap10k``: animals, 17 keypoints of their own, categories 26
and 1 of 54) go through the CLI as a user's dataset would:

1. ``scripts/make_spec.py`` makes the spec from the annotation file and the AP-10K sigmas;
2. ``scripts/train.py`` fine-tunes from a COCO checkpoint of ours (``model.init_from``: heads remapped
   by keypoint name) and overfits the two images (train = val) to OKS-AP > 0.5;
3. ``scripts/evaluate.py`` gives the training's validation AP again and writes the predictions;
4. ``scripts/train_rescore.py`` trains a rescoring net for this skeleton from them; COCO's is refused;
5. ``scripts/export.py`` writes ONNX with the spec in its metadata; ``scripts/infer.py`` runs the
   checkpoint and the ONNX file on the images (drawn images, COCO json).

One training (the module-scoped ``run``) serves every test: the ``ap10k`` recipe of
``tests/scripts/learning_proofs.py``, the one that memorises coco_minicoco's people (training sees the
evaluation view without augmentation, the 1.38:1 and 1.5:1 images whole, both in each batch).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from dekr.checkpoint import SPEC_CONTENTS_KEY, load_checkpoint
from dekr.data.dataset import read_image_rgb
from dekr.data.spec import KeypointSpec, load_spec
from dekr.finetune import transfer_from_file
from dekr.inference.rescore import load_rescore_net, num_features
from dekr.metrics.oks_ap import OKSAP
from dekr.models.dekr import DEKRNet, DEKRNetConfig

from tests.helpers.paths import FIXTURES
from tests.scripts.learning_proofs import AP10K, AP10K_JSON, EVAL_SIZE, PROOFS, RunOutcome, demo_net, run_proof


# Its tests share one training run (the module fixture ``run``): one xdist worker runs them all.
pytestmark = [pytest.mark.slow, pytest.mark.learning, pytest.mark.xdist_group("own_keypoints")]

#: COCO keypoint names AP-10K shares (the rest of its 17 are new to a COCO model).
SHARED_WITH_COCO = ("left_eye", "right_eye", "nose", "left_shoulder", "left_elbow", "right_shoulder",
                    "right_elbow", "left_hip", "left_knee", "right_hip", "right_knee")
CPU = ["--accelerator", "cpu", "--devices", "1", "--num-workers", "0"]


@dataclass(frozen=True)
class OwnKeypointsRun:
    """The files of the one AP-10K run every test of this module reads."""

    folder: Path
    spec_path: Path
    coco_ckpt: Path
    run_dir: Path
    outcome: RunOutcome
    train_log: str
    train_seconds: float

    @property
    def spec(self) -> KeypointSpec:
        return load_spec(self.spec_path)

    @property
    def metrics(self) -> dict:
        return json.loads((self.run_dir / "metrics.json").read_text())

    @property
    def best_ckpt(self) -> Path:
        return Path(self.metrics["best_model_path"])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> OwnKeypointsRun:
    folder = tmp_path_factory.mktemp("own_keypoints")
    started = time.perf_counter()
    # One thread: steps this small (2 images at 192 px) gain little from a second, and two threads on a
    # machine busy with other jobs were 20x slower (spinning at each barrier).
    outcome = run_proof(PROOFS["ap10k"], folder, threads=1)
    return OwnKeypointsRun(folder, folder / "ap10k.yaml", folder / "coco.ckpt", folder / "run", outcome,
                           (folder / "train.log").read_text(), time.perf_counter() - started)


def test_spec_made_by_the_script_is_the_shipped_ap10k_spec(run: OwnKeypointsRun) -> None:
    assert run.spec == load_spec("ap10k")
    assert run.spec.category_ids == tuple(range(1, 55)) and run.spec.pooled_category_id == 1


def test_finetuning_from_coco_copies_the_keypoints_matched_by_name(run: OwnKeypointsRun) -> None:
    spec, coco = run.spec, load_spec("coco")
    net = DEKRNet(DEKRNetConfig.from_dict(demo_net(17)))
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    report = transfer_from_file(net, run.coco_ckpt, spec)
    saved = torch.load(run.coco_ckpt, weights_only=True)["state_dict"]
    source = {k.removeprefix("net."): v for k, v in saved.items()}
    after = net.state_dict()
    per_keypoint = after["offset_head.blocks.0.adapt_conv.weight"].shape[0] // 17
    for j, name in enumerate(spec.keypoint_names):
        rows = {"heatmap_head.final.weight": slice(j, j + 1), "offset_head.final.weight": slice(2 * j, 2 * j + 2),
                "offset_head.blocks.0.adapt_conv.weight": slice(per_keypoint * j, per_keypoint * (j + 1))}
        for key, target in rows.items():
            if name in coco.keypoint_names:
                i = coco.keypoint_names.index(name)
                origin = source[key][i * (target.stop - target.start):(i + 1) * (target.stop - target.start)]
            else:
                origin = fresh[key][target]
            assert torch.equal(after[key][target], origin), f"{key}, keypoint {name}"
    assert torch.equal(after["heatmap_head.final.weight"][17], source["heatmap_head.final.weight"][17])  # centre
    assert all(torch.equal(after[k], source[k]) for k in after if k.startswith("backbone."))
    assert tuple(report.matched_keypoints) == SHARED_WITH_COCO
    assert report.new_keypoints == ["neck", "root_of_tail", "left_front_paw", "right_front_paw", "left_back_paw",
                                    "right_back_paw"]
    # scripts/train.py applied it and said so.
    assert f"keypoints taken from the source (11): {', '.join(SHARED_WITH_COCO)}" in run.train_log
    assert "new keypoints, fresh (6): neck, root_of_tail, left_front_paw" in run.train_log
    assert f"initialised from {run.coco_ckpt}" in run.train_log


def test_memorises_the_two_images(run: OwnKeypointsRun) -> None:
    expected = PROOFS["ap10k"].expected
    failures = run.outcome.failures(expected)
    assert not failures, "\n".join([*failures, f"(OKS-AP with the AP-10K sigmas, {run.train_seconds:.0f} s)"])
    # the training's checkpoints carry the spec made by the script, not only its path
    saved = torch.load(run.best_ckpt, map_location="cpu", weights_only=True)
    assert load_spec(saved[SPEC_CONTENTS_KEY]) == run.spec


@pytest.fixture(scope="module")
def evaluated(run: OwnKeypointsRun) -> tuple[dict[str, float], Path]:
    """scripts/evaluate.py on the run's config and best checkpoint: (figures, predictions json)."""
    import evaluate

    predictions = run.folder / "ap10k_predictions.json"
    stats = evaluate.main(["--config", str(run.run_dir / "config.yaml"), "--ckpt", str(run.best_ckpt),
                           *CPU, "--out", str(predictions)])
    return stats, predictions


def test_evaluation_gives_the_validation_ap_of_training(run: OwnKeypointsRun, evaluated) -> None:
    stats, predictions = evaluated
    assert stats["AP"] == pytest.approx(run.metrics["best_score"], abs=1e-6)
    results = json.loads(predictions.read_text())
    assert results and {r["category_id"] for r in results} == {1}
    assert {r["image_id"] for r in results} == {4, 37516}


def test_rescoring_net_for_the_skeleton_and_coco_nets_refused(run: OwnKeypointsRun, evaluated, capsys) -> None:
    import evaluate
    import infer
    import train_rescore

    _, predictions = evaluated
    ours = train_rescore.main(["--spec", str(run.spec_path), "--gt", str(AP10K_JSON), "--preds", str(predictions),
                               "--out", str(run.folder / "rescore_ap10k.pth"), "--epochs", "50",
                               "--batch-size", "8"])
    assert load_rescore_net(ours, run.spec).l1.in_features == num_features(run.spec) == 68
    stats = evaluate.main(["--config", str(run.run_dir / "config.yaml"), "--ckpt", str(run.best_ckpt), *CPU,
                           "--rescore", str(ours), "--out", str(run.folder / "rescored.json")])
    assert f"rescore={ours}" in capsys.readouterr().out and 0.0 <= stats["AP"] <= 1.0

    # COCO's rescoring net (trained on real COCO predictions by the same script) and the official
    # CrowdPose one do not fit this skeleton: refused, naming the file and the spec.
    coco = train_rescore.main(["--spec", "coco", "--gt", str(FIXTURES / "coco" / "test_coco.json"),
                               "--preds", str(FIXTURES / "reference_preds" / "example_coco_preds.json"),
                               "--out", str(run.folder / "rescore_coco.pth"), "--epochs", "1"])
    crowdpose = FIXTURES / "reference" / "final_rescore_crowd_pose_kpt.pth"
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:  # a user error: one line on stderr, exit status 2
        evaluate.main(["--config", str(run.run_dir / "config.yaml"), "--ckpt", str(run.best_ckpt), *CPU,
                       "--rescore", str(coco), "--out", str(run.folder / "never.json")])
    assert refused.value.code == 2
    assert re.search(rf"^error: .*rescoring net {re.escape(str(coco))} was trained for spec 'coco'.*not for the "
                     r"model's spec 'ap10k'", capsys.readouterr().err, re.MULTILINE)
    with pytest.raises(SystemExit, match=rf"rescoring net {re.escape(str(crowdpose))} takes 59 features, but "
                                         r"the model's spec 'ap10k' gives 68"):
        infer.main(["--ckpt", str(run.best_ckpt), "--input", str(AP10K), "--out", str(run.folder / "never"),
                    "--device", "cpu", "--quiet", "--decode", f"rescore={crowdpose}"])
    assert not (run.folder / "never").exists()


def test_onnx_export_carries_the_spec_and_infer_runs_both(run: OwnKeypointsRun) -> None:
    import export
    import infer

    onnx_path = run.folder / "ap10k.onnx"
    report = export.main(["--ckpt", str(run.best_ckpt), "--out", str(onnx_path)])
    assert report["spec"] == "ap10k"
    assert all(max(row["heatmaps"], row["offsets"]) < 1e-4 for row in report["exports"]["onnx"]["check"])
    exported = load_checkpoint(onnx_path)
    assert exported.format == "onnx" and exported.spec == run.spec and exported.decode["input_size"] == EVAL_SIZE

    outputs = {}
    for name, model in (("ckpt", run.best_ckpt), ("onnx", onnx_path)):
        out = run.folder / f"infer_{name}"
        summary = infer.main(["--ckpt", str(model), "--input", str(AP10K), "--out", str(out), "--device", "cpu",
                              "--quiet"])
        assert summary["processed"] == 2 and summary["error"] is None
        for stem in ("000000000004", "000000037516"):
            drawn, image = read_image_rgb(out / "images" / f"{stem}.jpg"), read_image_rgb(AP10K / f"{stem}.jpg")
            assert drawn.shape == image.shape
            changed = np.abs(drawn.astype(int) - image).max(axis=-1) > 60  # beyond JPEG noise
            assert changed.mean() > 0.002, f"{stem}: no skeleton drawn"
        category = json.loads((out / "images.json").read_text())["categories"]
        assert [c["id"] for c in category] == [1] and category[0]["keypoints"] == list(run.spec.keypoint_names)
        outputs[name] = json.loads((out / "results.json").read_text())
        metric = OKSAP(str(AP10K_JSON), run.spec, backend="pycocotools")
        metric.update_from_results(outputs[name], [4, 37516])
        assert metric.compute_with("pycocotools")["AP"] > 0.5, name
    best = {name: {r["image_id"]: max((p for p in res if p["image_id"] == r["image_id"]), key=lambda p: p["score"])
                   for r in res} for name, res in outputs.items()}
    for image_id, pose in best["ckpt"].items():
        other = best["onnx"][image_id]
        assert np.abs(np.subtract(pose["keypoints"], other["keypoints"])).max() < 0.5
        assert pose["score"] == pytest.approx(other["score"], abs=1e-3)


def test_readme_figure_command(run: OwnKeypointsRun, tmp_path: Path) -> None:
    """``python scripts/make_figures.py --ap10k-ckpt ... --only ap10k`` (docs/figures/ap10k_predictions.jpg)."""
    import make_figures

    (figure,) = make_figures.main(["--ap10k-ckpt", str(run.best_ckpt), "--out", str(tmp_path), "--only", "ap10k"])
    assert figure.name == "ap10k_predictions.jpg" and figure.stat().st_size < 150_000
    assert read_image_rgb(figure).shape[1] > 600
