"""Diarization pipelines; importing this package registers every mode."""

from diar.pipelines import (
    clustering,  # noqa: F401  (registers mode "cluster")
    frame,  # noqa: F401  (registers mode "frame")
    profile,  # noqa: F401  (registers mode "profile")
)
from diar.pipelines.base import DIARIZERS, Diarizer, RecordingInput, StepHook, build_diarizer

__all__ = ["DIARIZERS", "Diarizer", "RecordingInput", "StepHook", "build_diarizer"]
