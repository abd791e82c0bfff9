"""Pose metrics as torchmetrics Metrics: OKS-AP (COCO / CrowdPose), PCK, MPJPE and friends."""

