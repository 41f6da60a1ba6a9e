"""Errors that stop a job (exit code 2 on the command line)."""

from __future__ import annotations

from diar.errors import DiarError


class JobError(DiarError):
    """The job cannot start or cannot write its outputs (e.g. OUT belongs to another job)."""
