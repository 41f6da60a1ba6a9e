"""What a finished shard leaves behind: its done record and its failure rows.

``OUT/shards/<shard-id>.done.json`` is written last, after the shard's data
files; a shard counts as done only when this record exists and its fingerprint
matches the plan. The record lists every item of the shard, either as done
(with its audio duration) or as a failure row, so that nothing is lost.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: Stages a recording can fail in: reading audio, the model, writing outputs, or the
#: actor process dying for good (after its restarts and task retries).
STAGES = ("manifest", "read", "diarize", "embed", "write", "actor")

#: Longest message kept in a failure row (characters).
MAX_MESSAGE = 1000


@dataclass(frozen=True, order=True)
class Failure:
    """One failed recording: a row of ``failures.tsv``."""

    reco_id: str
    stage: str
    error_type: str
    message: str

    @classmethod
    def from_exception(
        cls, reco_id: str, stage: str, error: BaseException, source: str | None = None
    ) -> Failure:
        """A row for ``error``; the message names ``source`` unless it already does."""
        message = " ".join(str(error).split()) or type(error).__name__
        if source and source not in message:
            message = f"{source}: {message}"
        if len(message) > MAX_MESSAGE:  # e.g. Ray's actor-death reports carry whole tracebacks
            message = message[: MAX_MESSAGE - 3] + "..."
        return cls(reco_id, stage, type(error).__name__, message)


@dataclass
class ShardRecord:
    """The done record of one shard.

    Attributes:
        shard_id: the shard.
        fingerprint: the plan's fingerprint of the shard when it was processed.
        done: recording id -> audio seconds actually processed, for each success.
        failures: one row per recording that failed.
        step_seconds: pipeline step -> wall seconds, summed over the shard's recordings.
        compute_seconds: wall seconds the actor spent on the shard (excluding model loading).
        files: data files written for the shard (relative to ``OUT/shards``).
    """

    shard_id: str
    fingerprint: str
    done: dict[str, float] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    compute_seconds: float = 0.0
    files: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        data = asdict(self)
        data["failures"] = [asdict(f) for f in sorted(self.failures)]
        data["done"] = dict(sorted(self.done.items()))
        data["step_seconds"] = dict(sorted(self.step_seconds.items()))
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ShardRecord:
        data: dict[str, Any] = json.loads(text)
        return cls(
            shard_id=str(data["shard_id"]),
            fingerprint=str(data["fingerprint"]),
            done={str(k): float(v) for k, v in data.get("done", {}).items()},
            failures=[Failure(**f) for f in data.get("failures", [])],
            step_seconds={str(k): float(v) for k, v in data.get("step_seconds", {}).items()},
            compute_seconds=float(data.get("compute_seconds", 0.0)),
            files=[str(f) for f in data.get("files", [])],
        )

    @property
    def item_ids(self) -> set[str]:
        return set(self.done) | {f.reco_id for f in self.failures}


def done_name(shard_id: str) -> str:
    """Relative path of a shard's done record."""
    return f"shards/{shard_id}.done.json"
