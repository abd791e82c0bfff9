"""One training step of ours equals one step of the official DEKR code.

Reference: ``fixtures/reference/train_step_w32_coco_seed21_128x128.npz`` (shared/reference/README.md,
"One official training step"): the official W32 COCO model filled with the stand-in weights of
seed 21, in train mode, one forward + loss + backward on 2 real minicoco samples, run in float32
and again in float64. We convert the same weights, run our own ``training_step``
on the stored batch and
compare losses, BatchNorm running-statistic updates and (float64) gradients mapped back to the
official layout with :func:`dekr.convert.to_official_state_dict`.

float32 gradients are not compared: the official code itself is not reproducible there (its
gradient norms differ by up to 3e-2 between 1 and 2 threads, the bilinear sampling of the
adaptive convolutions having a kink at every integer position).
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from dekr.convert import CheckpointMismatchError, convert_official_state_dict, to_official_state_dict
from dekr.module import DEKRModule
from tests.helpers.official_standin import REFERENCE_DIR, standin_state_dict

K = 17


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


@pytest.fixture(scope="module")
def reference() -> dict:
    data = np.load(REFERENCE_DIR / "train_step_w32_coco_seed21_128x128.npz")
    return {"arrays": data, "meta": json.loads(str(data["meta"]))}


@pytest.fixture(scope="module")
def official_weights() -> dict[str, torch.Tensor]:
    return standin_state_dict("w32_coco", 21)


def run_step(official: dict[str, torch.Tensor], arrays, dtype: torch.dtype) -> tuple[dict, dict, dict]:
    """Our training step from the converted weights: (loss parts, official-named state after
    the step, official-named parameter gradients)."""
    module = DEKRModule(spec="coco")  # the W32 COCO defaults
    module.net.load_state_dict(convert_official_state_dict(official, module.net))
    module = module.to(dtype).train()
    batch = {"image": arrays["image"], "heatmap": arrays["heatmap"], "heatmap_weight": arrays["mask"],
             "offset": arrays["offset"], "offset_weight": arrays["offset_w"]}
    batch = {key: torch.from_numpy(value).to(dtype) for key, value in batch.items()}
    # The real training_step (finiteness check and logging included); its loss parts are
    # recorded on their way through compute_losses.
    recorded = []
    compute_losses = module.compute_losses
    module.compute_losses = lambda b: recorded.append(compute_losses(b)) or recorded[-1]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer attached
        total = module.training_step(batch, 0)
    (losses,) = recorded
    assert total is losses["loss"] and total.dtype == dtype
    total.backward()
    state = to_official_state_dict({k: v.detach() for k, v in module.net.state_dict().items()}, K)
    grads = to_official_state_dict({n: p.grad for n, p in module.net.named_parameters()}, K)
    return {k: v.item() for k, v in losses.items()}, state, grads


def loss_errors(losses: dict[str, float], ref: np.ndarray) -> np.ndarray:
    ours = np.array([losses["heatmap_loss"], losses["offset_loss"], losses["loss"]])
    return np.abs(ours - ref) / np.abs(ref)


def bn_update_errors(official, state, arrays, prefix: str, modules: list[str]) -> dict[str, float]:
    """Relative error of each running-statistic update (after minus before) against the reference."""
    errors = {}
    for module in modules:
        for stat in ("running_mean", "running_var"):
            key = f"{module}.{stat}"
            before = official[key].double().numpy()
            ref_update = arrays[f"{prefix}bn/{key}"].astype(np.float64) - before
            errors[key] = relative_error(state[key].double().numpy() - before, ref_update)
    return errors


def test_reverse_mapping_round_trips(official_weights) -> None:
    """to_official_state_dict(convert(official)) gives back every official tensor (the fixed
    regular_matrix buffers aside) under its name, in its shape, with its values."""
    net = DEKRModule(spec="coco").net
    back = to_official_state_dict(convert_official_state_dict(official_weights, net), K)
    expected = {k: v for k, v in official_weights.items() if not k.endswith("regular_matrix")}
    assert set(back) == set(expected)
    for key, value in expected.items():
        assert back[key].shape == value.shape and torch.equal(back[key], value), key
    with pytest.raises(CheckpointMismatchError, match="no official counterpart for: rescore_net.l1.weight"):
        to_official_state_dict({"rescore_net.l1.weight": torch.zeros(1)}, K)


def test_float32_step_matches_official(reference, official_weights) -> None:
    arrays, meta = reference["arrays"], reference["meta"]
    losses, state, _ = run_step(official_weights, arrays, torch.float32)
    # Measured (our step with 1 / 2 threads against the official one-thread run): losses 7e-8 /
    # 1e-6, BatchNorm updates 2e-7 / 1.5e-5 (head BatchNorms 2e-7 / 7e-6): float32 summation order.
    assert loss_errors(losses, arrays["loss"]).max() < 1e-5
    errors = bn_update_errors(official_weights, state, arrays, "", meta["bn_modules"])
    assert len(errors) == 2 * len(meta["bn_modules"])
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-4, (worst, errors[worst])


def test_float64_step_matches_official(reference, official_weights) -> None:
    arrays, meta = reference["arrays"], reference["meta"]
    losses, state, grads = run_step(official_weights, arrays, torch.float64)
    # In float64 the step is reproducible to rounding: measured 2e-16 (losses), 6e-16 (head
    # BatchNorm updates), 9e-15 (gradient norms), 1e-14 x norm (projections), with 1 or 2 threads.
    # The bounds leave three orders of margin for other BLAS builds.
    assert loss_errors(losses, arrays["f64/loss"]).max() < 1e-11
    errors = bn_update_errors(official_weights, state, arrays, "f64/", meta["head_bn"])
    assert max(errors.values()) < 1e-11, max(errors.items(), key=lambda item: item[1])

    # Every official parameter has a gradient of ours, in the official shape.
    names, shapes = meta["param_names"], meta["param_shapes"]
    assert set(grads) == set(names)
    rng = np.random.default_rng(99)
    norm_errors, proj_errors = [], []
    ref_norms, ref_projections = arrays["f64/grad_norm"], arrays["f64/grad_proj"]
    for name, shape, ref_norm, ref_proj in zip(names, shapes, ref_norms, ref_projections):
        grad = grads[name].numpy()
        assert list(grad.shape) == shape, name
        projection = rng.standard_normal(shape)
        norm_errors.append(abs(np.linalg.norm(grad) - ref_norm) / ref_norm)
        proj_errors.append(abs(float((grad * projection).sum()) - ref_proj) / ref_norm)
    assert max(norm_errors) < 1e-11, names[int(np.argmax(norm_errors))]
    assert max(proj_errors) < 1e-11, names[int(np.argmax(proj_errors))]

    # Full head gradients, stored as float32 by the reference: float32 rounding bounds the
    # agreement (measured 5e-8).
    head_errors = {name: relative_error(grads[name].numpy(), arrays[f"f64/grad/{name}"].astype(np.float64))
                   for name in meta["head_grads"]}
    assert len(head_errors) == len([k for k in arrays.files if k.startswith("f64/grad/")])
    assert max(head_errors.values()) < 1e-6, max(head_errors.items(), key=lambda item: item[1])
