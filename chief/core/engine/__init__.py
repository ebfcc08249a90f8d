"""The engine: runs compiled workflows durably and lets people pause, resume, cancel, approve, restore."""

from .checkpoints import CheckpointInfo
from .engine import Engine
from .steps import StepFailed

__all__ = ["CheckpointInfo", "Engine", "StepFailed"]
