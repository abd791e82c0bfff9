"""Training-loop callbacks: atomic checkpoint IO, last/best checkpoints, per-epoch history, RNG
states in checkpoints, throughput, run costs, validation pose images, SLURM requeue at a safe point, a checkpoint and
an honest exit on SIGTERM / Ctrl-C, the run's provenance, the log line of each validation and the end-of-run
summary with the learning curve. (EMA of weights: Lightning's own
``EMAWeightAveraging`` callback.)"""
from dekr.callbacks.checkpoint_io import AtomicCheckpointIO, LastAndBestCheckpoint
from dekr.callbacks.history import EpochHistory
from dekr.callbacks.pose_images import PoseImageLogger
from dekr.callbacks.preemption import RequeueAtSafePoint
from dekr.callbacks.provenance import Provenance
from dekr.callbacks.rng_state import RNGStateCheckpoint
from dekr.callbacks.run_costs import RunCosts
from dekr.callbacks.stop_signal import CheckpointOnStop, StopRecord
from dekr.callbacks.throughput import ImagesPerSecond
from dekr.callbacks.validation_report import ValidationReport

__all__ = ["AtomicCheckpointIO", "CheckpointOnStop", "EpochHistory", "LastAndBestCheckpoint", "ImagesPerSecond",
           "PoseImageLogger", "Provenance", "RequeueAtSafePoint", "RNGStateCheckpoint", "RunCosts",
           "StopRecord", "ValidationReport"]
