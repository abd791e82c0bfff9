"""Training-loop helpers: atomic checkpoint IO, W&B logger with offline fallback, throughput,
validation pose images, SLURM requeue at a safe point. (EMA of weights: Lightning's own
``EMAWeightAveraging`` callback.)"""
from dekr.callbacks.checkpoint_io import AtomicCheckpointIO, LastAndBestCheckpoint
from dekr.callbacks.history import EpochHistory
from dekr.callbacks.pose_images import PoseImageLogger, draw_poses
from dekr.callbacks.preemption import RequeueAtSafePoint
from dekr.callbacks.throughput import ImagesPerSecond
from dekr.callbacks.wandb import WandbLogger, wandb_mode

__all__ = ["AtomicCheckpointIO", "EpochHistory", "LastAndBestCheckpoint", "ImagesPerSecond",
           "PoseImageLogger", "RequeueAtSafePoint", "WandbLogger", "draw_poses", "wandb_mode"]
