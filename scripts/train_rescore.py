#!/usr/bin/env python3
"""Train the DEKR rescoring net (predicted pose -> its OKS with the ground truth), any skeleton.

    # 1. predictions on a training split (COCO results json), e.g. with scripts/evaluate.py:
    python scripts/evaluate.py --config w32_coco.yaml --ckpt X.ckpt --val-annotations \\
        annotations/person_keypoints_train2017.json --val-images images/train2017 --out train_preds.json
    # 2. the rescoring data (each prediction with its best OKS) and the net:
    python scripts/train_rescore.py --spec coco --gt person_keypoints_train2017.json \\
        --preds train_preds.json --out rescore_coco.pth
    # 3. use it: scripts/evaluate.py ... --rescore rescore_coco.pth

Official recipe: MSE on the OKS target, Adam lr 1e-3, 20 epochs, batch 1024, hidden 256. The target
of a prediction is its highest OKS with a ground-truth person of the same image (the official
generator takes the match of pycocotools' greedy assignment; max OKS is the same for all but
duplicate predictions), with the spec's sigmas and the dataset's area rule (CrowdPose: 0.53 x bbox).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from dekr.data.spec import KeypointSpec, load_spec  # noqa: E402
from dekr.inference.rescore import RescoreNet, num_features, rescore_features, save_rescore_net  # noqa: E402
from dekr.library_warnings import silence_library_noise  # noqa: E402
from dekr.metrics.oks_ap import load_ground_truth, prepare_ground_truth  # noqa: E402


def rescore_dataset(gt: dict, results: list[dict], spec: KeypointSpec, crowd: bool | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(M, K, 3) predicted poses and (M,) their best OKS with the image's ground-truth persons."""
    crowd = spec.crowd_eval if crowd is None else crowd
    gt = prepare_ground_truth(gt, spec, crowd)
    k = spec.num_keypoints
    var = (2 * np.asarray(spec.sigmas)) ** 2
    persons = defaultdict(list)
    for ann in gt["annotations"]:
        if ann.get("iscrowd", 0) or ann["num_keypoints"] == 0:
            continue
        persons[ann["image_id"]].append((np.asarray(ann["keypoints"], dtype=np.float64).reshape(k, 3), ann["area"]))
    poses = np.asarray([r["keypoints"] for r in results], dtype=np.float64).reshape(-1, k, 3)
    target = np.zeros(len(results))
    for i, r in enumerate(results):
        best = 0.0
        for kp, area in persons.get(r["image_id"], []):
            vis = kp[:, 2] > 0
            d2 = ((poses[i, :, :2] - kp[:, :2]) ** 2).sum(-1)
            e = d2 / var / (area + np.spacing(1)) / 2
            best = max(best, float(np.exp(-e[vis]).mean()))
        target[i] = best
    return poses, target


def train(features: torch.Tensor, target: torch.Tensor, epochs: int = 20, batch_size: int = 1024, lr: float = 1e-3,
          hidden: int = 256, seed: int = 0) -> tuple[RescoreNet, list[float]]:
    torch.manual_seed(seed)
    net = RescoreNet(features.shape[1], hidden)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(features))
        total, count = 0.0, 0
        for start in range(0, len(features), batch_size):
            idx = order[start:start + batch_size]
            loss = torch.nn.functional.mse_loss(net(features[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        losses.append(total / max(count, 1))
    return net.eval(), losses


def main(argv: list[str] | None = None) -> Path:
    silence_library_noise()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, help="keypoint spec name or YAML (its rescore_limbs are used)")
    parser.add_argument("--gt", required=True, help="ground-truth annotations of the split the predictions are on")
    parser.add_argument("--preds", required=True, help="COCO-format keypoint results json")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    results = json.loads(Path(args.preds).read_text())
    if not results:
        raise SystemExit(f"{args.preds}: no predictions")
    poses, target = rescore_dataset(load_ground_truth(args.gt), results, spec)
    features = rescore_features(torch.as_tensor(poses, dtype=torch.float32), spec)
    assert features.shape[1] == num_features(spec)
    net, losses = train(features, torch.as_tensor(target, dtype=torch.float32), args.epochs, args.batch_size,
                        args.lr, args.hidden, args.seed)
    out = save_rescore_net(net, args.out, spec, train_loss=losses, num_samples=len(results))
    print(f"{len(results)} poses, mean OKS target {target.mean():.3f}; MSE first/last epoch {losses[0]:.4f} / "
          f"{losses[-1]:.4f}; saved {out}")
    return out


if __name__ == "__main__":
    main()
