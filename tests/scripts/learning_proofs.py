"""The learning proofs: shortened real trainings through ``scripts/train.py`` that must reach an OKS-AP.

One recipe per proof, shared by its test (``tests/scripts/test_train_learning*.py``,
``tests/scripts/test_own_keypoints.py``) and by ``benchmarks/learning_spread.py``, which runs them under
several seeds, CPU instruction-set paths and thread counts and prints the APs they reach. A training's
rounding depends on the CPU's kernels and the thread count, and a few hundred steps amplify it, so a
proof passes on a range of outcomes, not one figure: each :class:`Expectation` sits clearly below the
lowest best AP measured, and still needs a rise from the first validation that an untrained or broken
model cannot show (an untrained demo network scores 0.0).

Measured by ``python benchmarks/learning_spread.py`` on 2026-12-07, Intel Xeon (family 6 model 207,
AVX-512), 2 cores: seeds 0-2 (native path, one thread), and seed 0 on the ``avx2`` and ``default`` paths
and with two threads; six runs per proof (the benchmark prints every run):

=========  ===============  =======================  ============  ====================================
proof      best OKS-AP      first validation (AP)    loss fell     threshold: best, rise, loss
=========  ===============  =======================  ============  ====================================
demo       0.493-0.569      0.13-0.24 (epoch 7)                    0.4, 0.15
minicoco   0.317-0.661      0.02-0.15 (epoch 50)     53-77x        0.2, 0.1, 20x
skeleton   0.487-0.549      0.21-0.33 (epoch 9)                    0.4, 0.1
ap10k      0.850-0.950      0.10-0.23 (epoch 40)     42-47x        0.6, 0.3, 15x
=========  ===============  =======================  ============  ====================================

minicoco's AP counts four people, so it moves in steps (one person lost or found is about 0.25); its
training loss, which falls 53-77x, is the steadier proof that the three images are memorised.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from tests.helpers.paths import FIXTURES
from tests.helpers.paths import AP10K_JSON, AP10K_SIGMAS
from tests.scripts.script_runner import clean_env, run_script

#: Test input size of the two overfitting proofs: the images' short side at evaluation.
EVAL_SIZE = 128

AP10K = FIXTURES / "ap10k"

# coco_minicoco images whose people are large enough for a 128 px evaluation, with at most a 1.5:1
# aspect ratio (the 192 px training square holds them whole): four people, 12-17 keypoints each.
OVERFIT_IMAGE_IDS = (151408, 85795, 122469)


@dataclass(frozen=True)
class Expectation:
    """What a proof's run must show: its best OKS-AP at least ``min_best``, at least ``min_rise`` above
    its first validation, and (when set) a training loss that falls by ``min_loss_ratio`` (first epoch
    over the lowest of the last five). ``measured`` is the range of best APs in
    ``benchmarks/learning_spread.py``'s table (in the proof's docstring)."""

    min_best: float
    min_rise: float
    measured: tuple[float, float]
    min_loss_ratio: float | None = None
    validations: int = 2


@dataclass(frozen=True)
class RunOutcome:
    """A finished run's metrics.json, read: AP by validation, best AP, training loss by epoch."""

    aps: list[float]
    best: float
    losses: list[float]

    @classmethod
    def read(cls, run_dir: Path) -> RunOutcome:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        history = metrics["history"]
        return cls(aps=[row["val/AP"] for row in history if "val/AP" in row], best=float(metrics["best_score"]),
                   losses=[row["train/epoch_loss"] for row in history if "train/epoch_loss" in row])

    @property
    def loss_ratio(self) -> float:
        return self.losses[0] / min(self.losses[-5:])

    def failures(self, expected: Expectation) -> list[str]:
        """What this outcome misses of ``expected``, each with what was seen and what was expected."""
        seen = f"AP by validation {[round(ap, 3) for ap in self.aps]}, best {self.best:.3f}"
        range_note = (f"(measured range of the best AP: {expected.measured[0]:.2f}-{expected.measured[1]:.2f}, "
                      "benchmarks/learning_spread.py)")
        problems = []
        if len(self.aps) != expected.validations:
            problems.append(f"{len(self.aps)} validations, expected {expected.validations}: {seen}")
        elif self.best - self.aps[0] < expected.min_rise:
            problems.append(f"best AP rose {self.best - self.aps[0]:.3f} from the first validation, expected "
                            f">= {expected.min_rise}: {seen}")
        if self.best < expected.min_best:
            problems.append(f"best AP {self.best:.3f} < {expected.min_best} {range_note}: {seen}")
        if expected.min_loss_ratio is not None and self.loss_ratio < expected.min_loss_ratio:
            problems.append(f"training loss fell {self.loss_ratio:.1f}x, expected >= {expected.min_loss_ratio}x: "
                            f"{self.losses[0]:.4f} -> {[round(x, 4) for x in self.losses[-5:]]}")
        return problems


@dataclass(frozen=True)
class LearningProof:
    """A recipe: ``prepare(folder)`` writes what the run needs into ``folder`` and returns the
    ``scripts/train.py`` arguments (the run folder is ``folder / "run"``)."""

    name: str
    prepare: Callable[[Path], list[str]]
    expected: Expectation
    timeout: int = 1500


def run_proof(proof: LearningProof, folder: Path, *, threads: int, seed: int | None = None,
              env: dict[str, str] | None = None) -> RunOutcome:
    """Train ``proof`` in ``folder`` with ``threads`` OpenMP threads (and ``seed`` for
    ``seed_everything`` instead of the config's), W&B off; its outcome. Its output is kept in
    ``folder / "train.log"``."""
    folder.mkdir(parents=True, exist_ok=True)
    args = [*proof.prepare(folder), "--trainer.default_root_dir", str(folder / "run"),
            "--trainer.enable_progress_bar", "false", "--pose_images.num_images", "0"]
    if seed is not None:
        args += ["--seed_everything", str(seed)]
    run_env = clean_env(WANDB_MODE="disabled", OMP_NUM_THREADS=str(threads), **(env or {}))
    done = run_script("train.py", args, cwd=folder, timeout=proof.timeout, env=run_env)
    (folder / "train.log").write_text(done.stdout + done.stderr)
    return RunOutcome.read(folder / "run")


# -- the demo, shortened -------------------------------------------------------------------------------

def prepare_demo(folder: Path) -> list[str]:
    """demo.yaml with half its images in batches of 4 (as many steps per image, half the images),
    14 epochs with the LR drop at 11, half the validation images."""
    return ["--config", "demo.yaml", "--data.init_args.batch_size", "4",
            "--data.init_args.synthetic.num_train", "128", "--data.init_args.synthetic.num_val", "32",
            "--trainer.max_epochs", "14", "--model.optim.milestones", "[11]",
            "--trainer.check_val_every_n_epoch", "7"]


# -- another skeleton ------------------------------------------------------------------------------

def prepare_skeleton(folder: Path) -> list[str]:
    """demo_ap10k.yaml (synthetic figures of AP-10K's skeleton) for 18 epochs, LR drop at 15."""
    return ["--config", "demo_ap10k.yaml", "--trainer.max_epochs", "18", "--model.optim.milestones", "[15]",
            "--trainer.check_val_every_n_epoch", "9"]


# -- real images memorised -------------------------------------------------------------------------

def evaluation_view_data(dataset: str, split: dict, root: Path, spec: str, batch_size: int) -> dict:
    """A DataModule that trains on the evaluation view: the short side at :data:`EVAL_SIZE` (zoom 1.5
    of the short side on a 1.5 x EVAL_SIZE square holds a 1.5:1 image whole), no augmentation, every
    labelled instance with a centre, the split as training and validation data. ``batch_size`` holds
    all the images, so that the train-mode BatchNorm statistics are those of evaluation (batches of 1-2
    drift from the running averages; seen: AP stuck near 0.08)."""
    return {"class_path": "dekr.data.datamodule.DEKRDataModule", "init_args": {
        "dataset": dataset, "root": str(root), "spec": spec,
        "train_split": split, "val_split": split, "input_size": int(EVAL_SIZE * 1.5), "batch_size": batch_size,
        "val_batch_size": 2, "num_workers": 0, "pin_memory": False, "persistent_workers": False,
        "min_center_area": 0.0,
        "augmentation": {"min_scale": 1.5, "max_scale": 1.5, "max_rotation": 0.0, "max_translate": 0.0,
                         "flip_prob": 0.0, "scale_type": "short"}}}


def overfit_model(net: dict | None = None, spec: str | None = None, epochs: int = 150,
                  lr_drop: int | None = None) -> dict:
    """PyTorch's init (the official N(0, 0.001) init is meant for an ImageNet backbone; on one from
    scratch it memorises a few images far more slowly: loss 0.0096 -> 0.0050, AP 0.0 after 60 epochs),
    evaluated at :data:`EVAL_SIZE` without flip test or heatmap matching."""
    model = {"net": {**(net or {}), "init": "pytorch"}, "optim": {"lr": 0.002, "milestones": [lr_drop or epochs]},
             "loss": {"offset_factor": 0.1},
             "decode": {"flip_test": False, "input_size": EVAL_SIZE, "match_heatmap": False}}
    if spec is not None:
        model["spec"] = spec
    return model


MINICOCO_EPOCHS = 150


def prepare_minicoco(folder: Path) -> list[str]:
    """Three coco_minicoco person images (:data:`OVERFIT_IMAGE_IDS`) as training and validation split,
    150 epochs on their evaluation view (LR drop at 130), validated at epochs 50, 100, 150."""
    minicoco = FIXTURES / "coco_minicoco"
    data = json.loads((minicoco / "annotations" / "person_keypoints_train2017.json").read_text())
    keep = set(OVERFIT_IMAGE_IDS)
    data["images"] = [image for image in data["images"] if image["id"] in keep]
    data["annotations"] = [ann for ann in data["annotations"] if ann["image_id"] in keep]
    annotations = folder / "annotations.json"
    annotations.write_text(json.dumps(data))
    split = {"annotations": str(annotations), "images": str(minicoco / "images" / "train2017")}
    config = {"data": evaluation_view_data("coco", split, minicoco, "coco", len(OVERFIT_IMAGE_IDS)),
              "trainer": {"max_epochs": MINICOCO_EPOCHS, "check_val_every_n_epoch": MINICOCO_EPOCHS // 3,
                          "log_every_n_steps": 1},
              "model": overfit_model(epochs=MINICOCO_EPOCHS, lr_drop=MINICOCO_EPOCHS - 20)}
    path = folder / "overfit.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["--config", "demo.yaml", "--config", str(path)]


# -- your own keypoints: two real AP-10K images from a COCO checkpoint ------------------------------

AP10K_EPOCHS = 80


def demo_net(num_keypoints: int) -> dict:
    """The demo's W18-small network with PyTorch's init."""
    from dekr.config import load_section

    return {**load_section("demo.yaml", "model")["net"], "num_keypoints": num_keypoints, "init": "pytorch"}


def prepare_ap10k(folder: Path) -> list[str]:
    """The user's path: ``scripts/make_spec.py`` makes ``ap10k.yaml`` from the annotation file, a COCO
    checkpoint of the demo network (``coco.ckpt``, seed 0) is the starting point (heads remapped by
    keypoint name), and both images are memorised for 80 epochs (validated at 40 and 80)."""
    from dekr.checkpoint import save_module_checkpoint
    from dekr.module import DEKRModule

    spec_path = folder / "ap10k.yaml"
    run_script("make_spec.py", [str(AP10K_JSON), "--out", str(spec_path), "--name", "ap10k",
                                "--sigmas", ",".join(str(s) for s in AP10K_SIGMAS)])
    torch.manual_seed(0)
    coco_ckpt = save_module_checkpoint(DEKRModule(net=demo_net(17), spec="coco"), folder / "coco.ckpt")
    split = {"annotations": AP10K_JSON.name, "images": "."}
    model = overfit_model(demo_net(17), spec=str(spec_path), epochs=AP10K_EPOCHS)
    model["init_from"] = str(coco_ckpt)
    config = {"data": evaluation_view_data("custom", split, AP10K, str(spec_path), 2),
              "trainer": {"max_epochs": AP10K_EPOCHS, "check_val_every_n_epoch": AP10K_EPOCHS // 2,
                          "log_every_n_steps": 1},
              "model": model}
    path = folder / "overfit_ap10k.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["--config", "demo.yaml", "--config", str(path)]


PROOFS: dict[str, LearningProof] = {
    "demo": LearningProof("demo", prepare_demo, Expectation(min_best=0.4, min_rise=0.15, measured=(0.493, 0.569))),
    "minicoco": LearningProof("minicoco", prepare_minicoco, Expectation(
        min_best=0.2, min_rise=0.1, measured=(0.317, 0.661), min_loss_ratio=20, validations=3)),
    "skeleton": LearningProof("skeleton", prepare_skeleton, Expectation(
        min_best=0.4, min_rise=0.1, measured=(0.487, 0.549))),
    "ap10k": LearningProof("ap10k", prepare_ap10k, Expectation(
        min_best=0.6, min_rise=0.3, measured=(0.850, 0.950), min_loss_ratio=15)),
}
