"""``DEKRNetConfig.heatmap_activation``: heatmaps as regressed (official) or sigmoid of logits
(SuperGradients), the same in train and eval mode."""
from __future__ import annotations

import pytest
import torch

from dekr.models.dekr import DEKRNet, DEKRNetConfig

SMALL = {"backbone": "hrnet_w18_small", "num_keypoints": 3, "heatmap_channels": 8,
         "offset_channels_per_keypoint": 4, "offset_blocks": 1, "init": "pytorch"}


@pytest.fixture(scope="module")
def sigmoid_net() -> DEKRNet:
    return DEKRNet(DEKRNetConfig(**SMALL, heatmap_activation="sigmoid"))


def test_default_is_the_official_identity() -> None:
    assert DEKRNetConfig().heatmap_activation == "none"
    net = DEKRNet(DEKRNetConfig(**SMALL)).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        heatmaps, _ = net(images)
        assert torch.equal(heatmaps, net.heatmap_head(net.backbone(images)))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_sigmoid_of_the_head_logits_in_both_modes(sigmoid_net: DEKRNet, train: bool) -> None:
    # in train mode too: the loss and the decoder must see the same kind of heatmap
    sigmoid_net.train(train)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        heatmaps, offsets = sigmoid_net(images)
        features = sigmoid_net.backbone(images)  # train mode: batch statistics, the same for the same batch
        logits = sigmoid_net.heatmap_head(features)
        assert torch.allclose(heatmaps, logits.sigmoid(), atol=1e-6)
        assert torch.allclose(offsets, sigmoid_net.offset_head(features), atol=1e-6)


def test_unknown_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="heatmap_activation"):
        DEKRNet(DEKRNetConfig(**SMALL, heatmap_activation="softmax"))  # type: ignore[arg-type]
    assert DEKRNetConfig.from_dict({"heatmap_activation": "sigmoid"}).heatmap_activation == "sigmoid"
