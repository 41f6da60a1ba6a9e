"""What a finished shard leaves behind: its done record and its failure rows.

``OUT/shards/<shard-id>.done.json`` is written last, after the shard's data
files; a shard counts as done only when this record exists and its fingerprint
matches the plan. The record lists every item of the shard, either as done
(with its audio duration) or as a failure row, so that nothing is lost.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from diar.failures import Failure


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
        digests: file (as in ``files``) -> ``{"bytes": size, "sha256": hex digest}`` of what was
            written; a file that no longer matches makes the shard run again.
        node_id: the Ray node whose actor processed the shard (hex); None in the driver's
            process (``--local``).
        max_rss_mib: peak resident memory of the process that processed the shard, since
            that process started (MiB); None where the system does not tell.
        stage_gpus: with the stage split (:mod:`jobs.stages`), stage -> the GPU ids held by the
            workers that ran it for the shard's recordings (empty on CPU workers); else empty.
    """

    shard_id: str
    fingerprint: str
    done: dict[str, float] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    compute_seconds: float = 0.0
    files: list[str] = field(default_factory=list)
    digests: dict[str, dict[str, Any]] = field(default_factory=dict)
    node_id: str | None = None
    max_rss_mib: float | None = None
    stage_gpus: dict[str, list[str]] = field(default_factory=dict)

    def add_file(self, name: str, data: bytes) -> None:
        """Record data file ``name`` (relative to ``OUT/shards``) and the digest of ``data``."""
        self.files.append(name)
        self.digests[name] = file_digest(data)

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
            digests={str(k): dict(v) for k, v in data.get("digests", {}).items()},
            node_id=None if data.get("node_id") is None else str(data["node_id"]),
            max_rss_mib=None if data.get("max_rss_mib") is None else float(data["max_rss_mib"]),
            stage_gpus={str(k): [str(g) for g in v] for k, v in data.get("stage_gpus", {}).items()},
        )

    @property
    def item_ids(self) -> set[str]:
        return set(self.done) | {f.reco_id for f in self.failures}


def file_digest(data: bytes) -> dict[str, Any]:
    """What a done record keeps of a data file: its size and sha256."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def done_name(shard_id: str) -> str:
    """Relative path of a shard's done record."""
    return f"shards/{shard_id}.done.json"


class CrashJournal:
    """Which item of a shard is being worked on, kept in OUT so that it outlives the process.

    When an actor process dies (out of memory, a crash in native code) Ray restarts it and
    retries the shard. The retry reads the journal: the item that was in flight is charged
    with one crash. An item charged ``limit`` times is declared the cause: the caller
    records it as a failure and skips it, so that one poisonous recording cannot take the
    other recordings of its shard down with it. A single crash (a node lost, a process
    killed from outside) only costs a retry.

    An item that ran past ``job.recording_timeout`` is written down as timed out
    before its actor ends itself (:meth:`time_out`); the retry skips it at once.

    File: ``OUT/shards/<key>.inflight.json``, removed when the shard is done; the
    driver removes leftovers of earlier runs, so crashes are counted within one run. The key
    is the shard id, or in the stage split (:mod:`jobs.stages`) ``<shard-id>.<stage>-<digest>``,
    one journal per batch of recordings a stage works on.
    """

    SUFFIX = ".inflight.json"

    def __init__(self, out: Any, key: str, limit: int = 2) -> None:
        self.out = out
        self.name = f"shards/{key}{self.SUFFIX}"
        self.limit = limit
        self.crashes: dict[str, int] = {}
        #: item id -> the time limit (s) it ran past
        self.timed_out: dict[str, float] = {}
        self._current: str | None = None
        if out.exists(self.name):
            try:
                data = json.loads(out.read_text(self.name))
                self.crashes = {str(k): int(v) for k, v in data.get("crashes", {}).items()}
                self.timed_out = {str(k): float(v) for k, v in data.get("timed_out", {}).items()}
                current = data.get("current")
            except (ValueError, TypeError, AttributeError):
                current = None
            if current is not None and str(current) not in self.timed_out:
                self.crashes[str(current)] = self.crashes.get(str(current), 0) + 1

    def charged(self, item_id: str) -> bool:
        """Whether ``item_id`` was in flight during a crash, or timed out."""
        return item_id in self.timed_out or item_id in self.crashes

    def is_poison(self, item_id: str) -> bool:
        """Whether ``item_id`` timed out, or was in flight during ``limit`` crashes."""
        return item_id in self.timed_out or self.crashes.get(item_id, 0) >= self.limit

    def failure(self, item_id: str) -> Failure:
        """The failure row of a poisonous item."""
        if item_id in self.timed_out:
            return Failure(
                item_id,
                "actor",
                "RecordingTimeout",
                f"still running after job.recording_timeout ({self.timed_out[item_id]:g} s); the actor "
                "was restarted and the recording skipped",
            )
        return Failure(
            item_id,
            "actor",
            "WorkerCrash",
            f"the actor process died {self.crashes.get(item_id, 0)} times while this recording was being "
            "processed (out of memory, or a crash in native code); it was skipped",
        )

    def start(self, item_id: str | None) -> None:
        """Record that ``item_id`` (None: no item) is now in flight."""
        self._current = item_id
        self._write()

    def time_out(self, seconds: float) -> None:
        """Record that the item in flight ran past ``seconds`` (its actor is about to end itself)."""
        if self._current is not None:
            self.timed_out[self._current] = seconds
            self._write()

    def _write(self) -> None:
        data = {"current": self._current, "crashes": self.crashes, "timed_out": self.timed_out}
        self.out.write_text(self.name, json.dumps(data) + "\n")

    def close(self) -> None:
        """The shard is done: forget the journal."""
        self.out.remove(self.name)
