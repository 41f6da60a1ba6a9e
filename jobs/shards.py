"""Deterministic, duration-balanced shards.

A shard is the unit of work an actor takes and of the outputs it writes
(``OUT/shards/<shard-id>.*``). Planning is a pure function of the items: the
same recordings (whatever their manifest order) always give the same shards
with the same ids, so a rerun into the same output folder finds its finished
shards again.

Balancing is the classic longest-processing-time rule: items are taken longest
first (ties by id) and each goes to the shard with the least audio so far (ties
by fewest items, then shard number). The heaviest shard then exceeds the lightest by at most one
item's duration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from diar.config import ConfigError
from diar.errors import quote

T = TypeVar("T")

#: Format of shard ids: ``shard-00003``. Ids sort in plan order.
SHARD_ID_FORMAT = "shard-{:05d}"


@dataclass(frozen=True)
class Shard(Generic[T]):
    """A group of work items processed by one actor call and written as one set of files.

    Attributes:
        shard_id: stable id, e.g. ``shard-00003`` (also the stem of its output files).
        items: the items, sorted by id (processing order).
        seconds: total audio duration of the items (unknown durations count 0).
        fingerprint: digest of the config and the items; a finished shard is reused
            only when its stored fingerprint equals this one.
    """

    shard_id: str
    items: tuple[T, ...]
    seconds: float
    fingerprint: str = ""


def num_shards_for(total_seconds: float, num_items: int, num_shards: int | None, shard_seconds: float) -> int:
    """How many shards to make: ``num_shards`` if given, else one per ``shard_seconds`` of audio.

    Never more shards than items (no empty shards) and at least one when there are items.
    """
    if num_items == 0:
        return 0
    if num_shards is not None:
        if num_shards < 1:
            raise ConfigError(f"job.num_shards must be >= 1, got {num_shards}")
        wanted = num_shards
    else:
        if shard_seconds <= 0:
            raise ConfigError(f"job.shard_seconds must be > 0, got {shard_seconds}")
        wanted = max(1, math.ceil(total_seconds / shard_seconds))
    return min(wanted, num_items)


def plan_shards(
    items: Sequence[T],
    *,
    key: Callable[[T], str],
    seconds: Callable[[T], float | None],
    num_shards: int | None = None,
    shard_seconds: float = 600.0,
) -> list[Shard[T]]:
    """Split ``items`` into balanced shards.

    Args:
        items: work items with unique keys (order does not matter).
        key: the item's id (recording id).
        seconds: the item's duration; ``None`` (header unreadable) counts as 0 so that the
            item still lands in a shard and fails there with a proper failure row.
        num_shards: exact number of shards (capped at the number of items), or None to
            derive it from ``shard_seconds``.
        shard_seconds: target audio per shard when ``num_shards`` is None.

    Returns:
        Shards ``shard-00000``... in id order, each with its items sorted by key.
    """
    keys = [key(it) for it in items]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})[0]
        raise ValueError(f"item id {quote(dup)} appears more than once")
    weights = {key(it): max(0.0, float(seconds(it) or 0.0)) for it in items}
    total = sum(weights.values())
    count = num_shards_for(total, len(items), num_shards, shard_seconds)
    order = sorted(items, key=lambda it: (-weights[key(it)], key(it)))
    # lightest shard first; among equals the one with fewest items (spreads unknown
    # durations), then the lowest number
    heap: list[tuple[float, int, int]] = [(0.0, 0, i) for i in range(count)]
    members: list[list[T]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for it in order:
        _, _, index = heapq.heappop(heap)
        members[index].append(it)
        loads[index] += weights[key(it)]
        heapq.heappush(heap, (loads[index], len(members[index]), index))
    return [
        Shard(SHARD_ID_FORMAT.format(i), tuple(sorted(group, key=key)), round(loads[i], 6))
        for i, group in enumerate(members)
    ]


class Timed(Protocol):
    """A work item with a recording id and a duration (None: unknown)."""

    @property
    def reco_id(self) -> str: ...

    @property
    def seconds(self) -> float | None: ...


TimedT = TypeVar("TimedT", bound=Timed)


def plan_recordings(
    items: Sequence[TimedT], num_shards: int | None, shard_seconds: float
) -> list[Shard[TimedT]]:
    """:func:`plan_shards` of items keyed by ``reco_id`` and weighted by ``seconds``."""
    return plan_shards(
        items,
        key=lambda it: it.reco_id,
        seconds=lambda it: it.seconds,
        num_shards=num_shards,
        shard_seconds=shard_seconds,
    )


def digest(data: Any) -> str:
    """sha256 (hex) of ``data`` as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_json_default)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):  # numpy arrays and scalars
        return {"dtype": str(getattr(obj, "dtype", "")), "data": tolist()}
    raise TypeError(f"cannot fingerprint a {type(obj).__name__}")
