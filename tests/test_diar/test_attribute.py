"""diar.attribute: every word gets the speaker who talks most during it (the nearest turn's when
nobody does); utterances for subtitles; the words' order and count are kept."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from diar.attribute import (
    assign_speakers,
    attribute,
    read_diarization,
    speaker_time,
    turn_distance,
    utterances,
    wrap,
)
from diar.formats.rttm import read_rttm
from diar.types import Annotation, Turn
from diar.words import Word

SAMPLE = REPO / "diar" / "data" / "sample"


def words_of_turns(reference: dict[str, Annotation], length: float = 0.3) -> list[Word]:
    """A transcript built from reference turns: each turn cut into words of about ``length``
    seconds, all recordings' words in time order (overlapping turns interleave)."""
    words = []
    for annotation in reference.values():
        for t in annotation:
            n = max(1, round(t.duration / length))
            edges = np.linspace(t.start, t.end, n + 1)
            words += [
                Word(t.reco_id, float(a), float(b), f"w{k}")
                for k, (a, b) in enumerate(itertools.pairwise(edges))
            ]
    return sorted(words, key=lambda w: (w.reco_id, w.start))


def only_speaker(word: Word, annotation: Annotation) -> str | None:
    """The one speaker who talks during the word, None when nobody or several do."""
    talking = {t.speaker for t in annotation if min(t.end, word.end) - max(t.start, word.start) > 1e-9}
    return talking.pop() if len(talking) == 1 else None


def check_single_speaker_words(reference: dict[str, Annotation]) -> int:
    words = words_of_turns(reference)
    result = attribute(words, reference)
    assert result.failures == []
    assert [w.with_speaker(None) for w in result.words] == words  # order and count kept
    checked = 0
    for word in result.words:
        expected = only_speaker(word, reference[word.reco_id])
        if expected is not None:
            assert word.speaker == expected, word
            checked += 1
    return checked


def test_every_word_of_one_speaker_gets_that_speaker_on_the_bundled_sample() -> None:
    reference = read_rttm(SAMPLE / "ref.rttm")
    assert check_single_speaker_words(reference) > 150


@pytest.mark.corpus
def test_every_word_of_one_speaker_gets_that_speaker_on_sim(corpus: Path) -> None:
    reference = read_rttm(corpus / "sim" / "ref.rttm")
    assert len(reference) == 10
    assert check_single_speaker_words(reference) > 1900  # of 2692 words


def test_the_speaker_who_talks_most_during_the_word_wins() -> None:
    a = Annotation("r", (Turn("r", 0.0, 2.0, "A"), Turn("r", 1.6, 4.0, "B"), Turn("r", 5.0, 6.0, "A")))
    words = [
        Word("r", 0.5, 0.9, "a"),  # A alone
        Word("r", 1.5, 2.0, "b"),  # A 0.5 s, B 0.4 s
        Word("r", 1.7, 2.3, "c"),  # A 0.3 s, B 0.6 s
        Word("r", 4.2, 4.4, "d"),  # nobody: B's turn ended 0.2 s before, A's starts 0.6 s after
        Word("r", 4.8, 4.9, "e"),  # nobody: A's next turn is nearer
        Word("r", 5.5, 5.5, "f"),  # 0 s inside A's turn
        Word("r", 9.0, 9.5, "g"),  # after the last turn
    ]
    assert assign_speakers(words, a) == ["A", "A", "B", "B", "A", "A", "A"]
    with pytest.raises(ValueError, match="no speaker turns"):
        assign_speakers(words, Annotation("r", ()))


def test_speaker_time_and_turn_distance() -> None:
    starts, ends = np.array([1.0, 4.0]), np.array([2.0, 6.0])
    t = np.array([0.0, 1.0, 1.5, 3.0, 5.0, 7.0])
    assert speaker_time(starts, ends, t).tolist() == [0.0, 0.0, 0.5, 1.0, 2.0, 3.0]
    lo, hi = np.array([0.0, 2.5, 3.5, 1.2, 7.0]), np.array([0.5, 3.0, 3.5, 1.3, 8.0])
    assert turn_distance(starts, ends, lo, hi).tolist() == [0.5, 0.5, 0.5, 0.0, 1.0]


turns_st = st.lists(
    st.tuples(st.integers(0, 300), st.integers(1, 50), st.sampled_from(["A", "B", "C"])),
    min_size=1,
    max_size=20,
)
words_st = st.lists(st.tuples(st.integers(0, 400), st.integers(0, 30)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(turns_st, words_st)
def test_attribution_properties(turns: list, items: list) -> None:  # type: ignore[type-arg]
    """Against a direct computation: the chosen speaker talks the most during the word (or,
    when nobody talks, has the nearest turn); one speaker alone always wins."""
    annotation = Annotation("r", tuple(Turn("r", s / 10, (s + d) / 10, spk) for s, d, spk in turns))
    words = [Word("r", s / 10, (s + d) / 10, "w") for s, d in items]
    got = assign_speakers(words, annotation)
    assert len(got) == len(words)
    for word, speaker in zip(words, got, strict=True):
        talk = {s: 0.0 for s in annotation.speakers}
        for s in annotation.speakers:  # the union of a speaker's turns, on a 1 ms grid
            grid = np.zeros(round(word.duration * 1000), bool)
            for t in annotation:
                if t.speaker == s:
                    lo, hi = max(t.start, word.start), min(t.end, word.end)
                    if hi > lo:
                        grid[round((lo - word.start) * 1000) : round((hi - word.start) * 1000)] = True
            talk[s] = grid.sum() / 1000
        if max(talk.values()) > 0:
            assert talk[speaker] == pytest.approx(max(talk.values()), abs=2e-3)
        else:
            gap = {
                s: min(max(t.start - word.end, word.start - t.end, 0.0) for t in annotation if t.speaker == s)
                for s in annotation.speakers
            }
            assert gap[speaker] == pytest.approx(min(gap.values()), abs=1e-9)
        if only_speaker(word, annotation) is not None:
            assert speaker == only_speaker(word, annotation)


def test_recordings_without_diarization_are_failure_rows_the_others_kept_in_order() -> None:
    diarization = {"a": Annotation("a", (Turn("a", 0, 10, "A"),)), "quiet": Annotation("quiet", ())}
    words = [
        Word("a", 0, 1, "one"),
        Word("gone", 0, 1, "x"),
        Word("a", 2, 3, "two"),
        Word("quiet", 0, 1, "y"),
        Word("gone", 1, 2, "z"),
        Word("a", 1, 2, "three"),  # out of time order: kept where it is
    ]
    result = attribute(words, diarization, "turns.rttm")
    assert [(w.text, w.speaker) for w in result.words] == [("one", "A"), ("two", "A"), ("three", "A")]
    assert [(f.reco_id, f.stage, f.error_type) for f in result.failures] == [
        ("gone", "attribute", "MissingDiarization"),
        ("quiet", "attribute", "NoSpeakerTurns"),
    ]
    assert "'gone' in turns.rttm; its 2 words are left out" in result.failures[0].message


def test_utterances_are_speaker_homogeneous_and_bounded() -> None:
    words = [Word("r", i * 0.5, i * 0.5 + 0.4, f"word{i}", speaker="A" if i < 30 else "B") for i in range(40)]
    words.insert(10, Word("r", 5.0, 5.0, "uh", speaker="B"))
    cues = utterances(words, max_seconds=4.0, max_chars=40, max_gap=1.0, line_chars=20)
    assert all(c.end - c.start <= 4.0 + 1e-9 for c in cues)
    assert all(len(c.text.replace("\n", " ")) <= 40 for c in cues)
    assert all(len(line) <= 20 for c in cues for line in c.text.splitlines())
    assert next((c.speaker, c.text) for c in cues if c.speaker == "B") == ("B", "uh")  # B's interjection
    assert all(c.speaker == "A" for c in cues[: [c.text for c in cues].index("uh")])
    # every word is in exactly one cue, in order
    assert " ".join(c.text.replace("\n", " ") for c in cues).split() == [w.text for w in words]
    # a pause starts a new cue; another recording too
    pause = [
        Word("r", 0, 0.4, "a", speaker="A"),
        Word("r", 2.0, 2.4, "b", speaker="A"),
        Word("s", 2.5, 3, "c", speaker="A"),
    ]
    assert [c.text for c in utterances(pause)] == ["a", "b", "c"]


def test_wrap() -> None:
    assert wrap("short", 42) == "short"
    assert wrap("one two three four five six", 15) == "one two three\nfour five six"
    assert wrap("averyveryverylongword and more", 10) == "averyveryverylongword\nand more"


def test_diarization_inputs(tmp_path: Path) -> None:
    from diar.errors import ManifestError
    from diar.formats.parquet import write_parquet

    reference = read_rttm(SAMPLE / "ref.rttm")
    table = tmp_path / "turns.parquet"
    write_parquet(reference.values(), table, model="x")
    assert read_diarization(str(table)) == reference
    out = tmp_path / "OUT"
    out.mkdir()
    with pytest.raises(ManifestError, match=r"OUT: holds no corpus\.rttm"):
        read_diarization(str(out))
    (out / "corpus.rttm").write_bytes((SAMPLE / "ref.rttm").read_bytes())
    assert read_diarization(str(out)) == reference
    with pytest.raises(ManifestError, match=r"missing\.parquet: Parquet file does not exist"):
        read_diarization(str(tmp_path / "missing.parquet"))
