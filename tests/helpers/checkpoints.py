"""Small DEKR checkpoints for the tools' tests (as training saves them)."""
from __future__ import annotations

import torch

# A random network for the tools' tests: PyTorch's default init, whose random heatmaps give
# detections to draw, track and write (the official init starts every heatmap at ~0).
SMALL_NET = dict(
    init="pytorch",
    backbone="hrnet_w18_small",
    num_keypoints=17,
    heatmap_channels=16,
    offset_channels_per_keypoint=8,
    offset_blocks=1,
)


def small_checkpoint(path, spec: str = "coco", seed: int = 0, decode: dict | None = None, **net_overrides):
    """One of our checkpoints with a small random network (as saved by training)."""
    from dekr.checkpoint import save_module_checkpoint
    from dekr.module import DEKRModule

    torch.manual_seed(seed)
    net = {**SMALL_NET, **net_overrides}
    if spec == "crowdpose":
        net["num_keypoints"] = 14
    module = DEKRModule(
        net=net, spec=spec, decode=decode if decode is not None else {"flip_test": False, "input_size": 128}
    )
    # Non-trivial BatchNorm statistics, so that a train/eval mix-up would show.
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return save_module_checkpoint(module, path)
