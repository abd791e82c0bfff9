"""Pose metrics as torchmetrics Metrics: OKS-AP (COCO / CrowdPose), PCK, MPJPE and friends."""
from dekr.metrics.oks_ap import OKSAP, format_table
from dekr.metrics.pose_metrics import MPJPE, PAMPJPE, PCK, PCKAUC, PCP, PDJ, MeanOKS, PCKh, oks, procrustes_align

__all__ = ["OKSAP", "format_table", "PCK", "PCKh", "PCP", "PDJ", "MeanOKS", "MPJPE", "PAMPJPE", "PCKAUC", "oks",
           "procrustes_align"]
