"""Shard planning: deterministic, balanced by duration, nothing lost; atomic output folder."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.shards import digest, num_shards_for, plan_shards
from jobs.storage import OutDir

Item = tuple[str, float | None]

items_strategy = st.dictionaries(
    st.text(alphabet="abcxyz019-_é", min_size=1, max_size=6),
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=500.0, allow_nan=False)),
    min_size=1,
    max_size=40,
)


def plan(items: list[Item], **kwargs: object) -> list[list[str]]:
    shards = plan_shards(items, key=lambda it: it[0], seconds=lambda it: it[1], **kwargs)  # type: ignore[arg-type]
    return [[it[0] for it in s.items] for s in shards]


@settings(max_examples=60, deadline=None)
@given(items_strategy, st.integers(min_value=1, max_value=12), st.randoms(use_true_random=False))
def test_plan_is_a_balanced_partition_independent_of_input_order(
    durations: dict[str, float | None], num_shards: int, rnd: random.Random
) -> None:
    items = list(durations.items())
    shards = plan_shards(items, key=lambda it: it[0], seconds=lambda it: it[1], num_shards=num_shards)
    # every item in exactly one shard, no empty shard, at most num_shards shards
    ids = [it[0] for s in shards for it in s.items]
    assert sorted(ids) == sorted(durations)
    assert len(shards) == min(num_shards, len(items))
    assert all(s.items for s in shards)
    assert [s.shard_id for s in shards] == [f"shard-{i:05d}" for i in range(len(shards))]
    # longest-first into the lightest shard: spread at most one item's duration
    loads = [sum(it[1] or 0.0 for it in s.items) for s in shards]
    biggest = max((d or 0.0) for d in durations.values())
    assert max(loads) - min(loads) <= biggest + 1e-6
    for s, load in zip(shards, loads, strict=True):
        assert s.seconds == pytest.approx(load, abs=1e-5)
        assert [it[0] for it in s.items] == sorted(it[0] for it in s.items)
    # the manifest order does not matter
    shuffled = items[:]
    rnd.shuffle(shuffled)
    assert plan(shuffled, num_shards=num_shards) == [[it[0] for it in s.items] for s in shards]


def test_longest_first_into_lightest_shard_ties_by_id() -> None:
    items: list[Item] = [("a", 5.0), ("b", 5.0), ("c", 4.0), ("d", 3.0), ("e", 3.0), ("f", None)]
    # a -> 0 (5), b -> 1 (5), c -> 0 (tie: lower number; 9), d -> 1 (8), e -> 1 (11),
    # f (unknown duration, counts 0) -> the lightest, 0
    assert plan(items, num_shards=2) == [["a", "c", "f"], ["b", "d", "e"]]


def test_shard_count_from_seconds_capped_by_items() -> None:
    assert num_shards_for(1000.0, 10, None, 600.0) == 2
    assert num_shards_for(1000.0, 10, 7, 600.0) == 7
    assert num_shards_for(1000.0, 3, 7, 600.0) == 3
    assert num_shards_for(0.0, 3, None, 600.0) == 1
    assert num_shards_for(0.0, 0, None, 600.0) == 0
    with pytest.raises(ValueError, match="num_shards"):
        num_shards_for(1.0, 3, 0, 600.0)
    with pytest.raises(ValueError, match="shard_seconds"):
        num_shards_for(1.0, 3, None, 0.0)


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="'x'"):
        plan([("x", 1.0), ("x", 2.0)], num_shards=1)


def test_digest_is_canonical() -> None:
    import numpy as np

    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert digest(np.zeros(3, np.float32)) != digest(np.zeros(3, np.float64))


def test_outdir_writes_atomically_and_cleans_temporaries(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = OutDir(str(tmp_path / "out"))
    out.write_text("shards/a.rttm", "x\n")
    assert out.read_text("shards/a.rttm") == "x\n"
    assert out.listdir("shards") == ["a.rttm"]
    (tmp_path / "out" / "shards" / "b.rttm.tmp-1234").write_text("half")
    assert out.remove_temporaries("shards") == ["b.rttm.tmp-1234"]
    assert out.listdir("shards") == ["a.rttm"]
    assert out.listdir("missing") == []


def test_outdir_on_an_fsspec_url() -> None:
    out = OutDir("memory://diar-test-out")
    out.write_text("shards/a.done.json", "{}\n")
    assert out.exists("shards/a.done.json")
    assert out.read_text("shards/a.done.json") == "{}\n"
    assert out.listdir("shards") == ["a.done.json"]
    assert out.display("corpus.rttm") == "memory://diar-test-out/corpus.rttm"
