"""Diarization pipelines; importing this package registers every mode."""

from diar.pipelines import (
    clustering,  # noqa: F401  (registers mode "cluster")
    frame,  # noqa: F401  (registers mode "frame")
)
from diar.pipelines.base import DIARIZERS, Diarizer, RecordingInput, StepHook, build_diarizer

__all__ = ["DIARIZERS", "Diarizer", "RecordingInput", "StepHook", "build_diarizer"]
