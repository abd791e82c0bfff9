"""``--trainer.sync_batchnorm true`` on DEKR: what Lightning's DDP strategy does to our model.

Lightning applies ``TorchSyncBatchNorm`` (``torch.nn.SyncBatchNorm.convert_sync_batchnorm``) to
the LightningModule when DDP fitting starts and reverts it at teardown. torch's SyncBatchNorm
only runs on GPU-type devices, so a 2-process gloo run on CPU cannot train with it (the last test
pins that fact down); these tests check the conversion itself on our network.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from dekr.models.dekr import DEKRNetConfig
from dekr.module import DEKRModule

TINY = {"backbone": "hrnet_w18_small", "heatmap_channels": 8, "offset_channels_per_keypoint": 4, "offset_blocks": 1}


def _module_with_nontrivial_bn() -> DEKRModule:
    torch.manual_seed(0)
    module = DEKRModule(net=DEKRNetConfig(num_keypoints=17, **TINY), spec="coco")
    with torch.no_grad():  # non-default statistics, so that a dropped or re-initialised BN would show
        for m in module.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return module


def _bn_names(module: nn.Module, cls: type) -> list[str]:
    return [name for name, m in module.named_modules() if isinstance(m, cls)]


def test_lightning_sync_batchnorm_converts_every_batchnorm_of_dekr():
    module = _module_with_nontrivial_bn()
    original = copy.deepcopy(module)
    bn = _bn_names(module, nn.BatchNorm2d)
    assert any(n.startswith("net.backbone.") for n in bn) and any(not n.startswith("net.backbone.") for n in bn)
    assert bn == _bn_names(module, _BatchNorm)  # timm's HRNet uses plain BatchNorm2d (no BatchNormAct2d)

    converted = TorchSyncBatchNorm().apply(module)
    assert converted is module
    assert _bn_names(module, nn.SyncBatchNorm) == bn  # backbone and heads, nothing left behind
    assert _bn_names(module, nn.BatchNorm2d) == []
    # same tensors under the same names: checkpoints of sync-BN runs load into the plain model
    ref = original.state_dict()
    assert list(module.state_dict()) == list(ref)
    for key, value in module.state_dict().items():
        assert torch.equal(value, ref[key]), key

    images = torch.randn(2, 3, 64, 64)
    module.eval()
    original.eval()
    with torch.no_grad():  # the forward goes through the converted layers (and the compile-view attribute)
        for a, b in zip(module(images), original(images)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # without a process group SyncBatchNorm is plain batch-statistics BN: single-process runs are unchanged
    module.train()
    original.train()
    with torch.no_grad():
        for a, b in zip(module(images), original(images)):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)

    reverted = TorchSyncBatchNorm().revert(module)  # what DDPStrategy.teardown does after fit
    assert _bn_names(reverted, nn.SyncBatchNorm) == [] and _bn_names(reverted, _BatchNorm) == bn
    reverted.eval()
    original.eval()
    with torch.no_grad():
        for a, b in zip(reverted(images), original(images)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_torch_sync_batchnorm_does_not_train_on_cpu(tmp_path: Path):
    """Why scripts/train.py refuses sync_batchnorm on CPU DDP (drop the check if torch adds CPU support)."""
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group already exists in this test process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        layer = nn.SyncBatchNorm(4).train()
        with pytest.raises(ValueError, match="SyncBatchNorm expected input tensor to be on GPU"):
            layer(torch.randn(2, 4, 3, 3))
    finally:
        dist.destroy_process_group()
