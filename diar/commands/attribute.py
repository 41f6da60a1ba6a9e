"""Put speakers on an ASR transcript: every word gets the speaker who talks most during it
(the speaker of the nearest turn when nobody does).

WORDS are word timings: Kaldi CTM (``<reco-id> <channel> <start> <duration> <word>
[<confidence>]``, ``.ctm``) or the JSON Whisper, faster-whisper and WhisperX write
(``segments`` with ``words``, ``.json``; a file of one recording takes its id from its
``reco_id`` key, else ``--reco-id``, else its file name without extension). DIAR (``-d``)
is an RTTM file, a Parquet table, or the job's output folder (its ``corpus.rttm``;
give ``OUT/corpus.exclusive.rttm`` for its exclusive turns).

The output (``--format``, else by the suffix of ``-o``): ``ctm`` (the CTM fields, then the
confidence or NA and the speaker), ``stm`` (NIST STM utterances, for MeetEval and sclite),
``srt`` or ``vtt`` (subtitles, the speaker's name on each cue: ``[spk1] ...`` in SRT, a
``<v spk1>`` voice span in WebVTT), ``json`` (Whisper's shape, a speaker on every word and
segment). Subtitles and STM group consecutive words of one speaker into cues of at most
``--max-seconds`` and ``--max-chars``, cut at pauses over ``--max-gap``. A subtitle file
holds one recording: with several, ``-o`` is a folder and each gets ``<reco-id>.srt``.

Words keep their order and count. A recording without diarization is reported on stderr
and its words are left out; the others are written, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diar.words import Utterance, Word

HELP = "speaker-attributed transcripts: CTM or Whisper JSON words + turns -> CTM, STM, SRT, WebVTT, JSON"

logger = logging.getLogger(__name__)

#: Output formats and the suffix that selects each.
FORMATS = {"ctm": ".ctm", "stm": ".stm", "srt": ".srt", "vtt": ".vtt", "json": ".json"}
#: Formats of one recording per file.
PER_RECORDING = ("srt", "vtt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from diar import attribute

    parser.add_argument("words", nargs="+", metavar="WORDS", help="word timings: .ctm or Whisper-style .json")
    parser.add_argument(
        "-d",
        "--diarization",
        required=True,
        metavar="DIAR",
        help="the turns: an RTTM, a .parquet table, or the job's output folder (its corpus.rttm)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output file (written atomically); srt/vtt of several recordings: a folder",
    )
    parser.add_argument(
        "--format", choices=list(FORMATS), default=None, help="output format (default: by the suffix of -o)"
    )
    parser.add_argument(
        "--words-format",
        choices=["auto", "ctm", "json"],
        default="auto",
        help="format of WORDS (auto: by suffix)",
    )
    parser.add_argument(
        "--reco-id", default=None, help="recording id of a JSON file of one recording without a reco_id key"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=attribute.MAX_SECONDS, help="longest cue / STM utterance"
    )
    parser.add_argument(
        "--max-chars", type=int, default=attribute.MAX_CHARS, help="most characters in a cue / STM utterance"
    )
    parser.add_argument(
        "--line-chars", type=int, default=attribute.LINE_CHARS, help="most characters per subtitle line"
    )
    parser.add_argument(
        "--max-gap",
        type=float,
        default=attribute.MAX_GAP,
        help="a pause longer than this (s) starts a new cue",
    )


def output_format(args: argparse.Namespace) -> str:
    """``--format``, else the one ``-o``'s suffix names."""
    from diar.errors import InputError, quote

    if args.format:
        return str(args.format)
    suffix = os.path.splitext(args.output)[1].lower()
    for name, ending in FORMATS.items():
        if suffix == ending:
            return name
    raise InputError(
        f"-o {quote(args.output)}: cannot tell the output format from its suffix; "
        f"end it in {', '.join(FORMATS.values())} or give --format"
    )


def run(args: argparse.Namespace) -> int:
    from diar.attribute import attribute, read_diarization, read_words
    from diar.commands.common import input_files
    from diar.errors import InputError, quote
    from diar.outputs import check_outputs, writing

    fmt = output_format(args)
    for flag, value in (("--max-seconds", args.max_seconds), ("--max-chars", args.max_chars)):
        if not value > 0:
            raise InputError(f"{flag} must be positive, got {value}")
    if args.max_gap < 0 or args.line_chars < 0:
        raise InputError("--max-gap and --line-chars must be >= 0")
    if args.reco_id is not None and len(args.words) > 1:
        raise InputError("--reco-id names the recording of one JSON file; give one WORDS file with it")
    words = []
    origin: dict[str, str] = {}
    for path in args.words:
        found = read_words(path, args.words_format, args.reco_id)
        for reco_id in dict.fromkeys(w.reco_id for w in found):
            if reco_id in origin:
                raise InputError(
                    f"recording {quote(reco_id)} has words in both {origin[reco_id]} and {path}; "
                    "give each recording's words in one file"
                )
            origin[reco_id] = path
        words += found
    diarization = read_diarization(args.diarization)
    inputs = input_files([*args.words, args.diarization])
    recordings = list(dict.fromkeys(w.reco_id for w in words))
    targets = output_paths(args.output, fmt, recordings)
    check_outputs([("-o", path) for path in targets.values()], inputs)
    result = attribute(words, diarization, args.diarization)
    with writing("-o", args.output):
        write_output(result.words, fmt, targets, args)
    logger.info("%d words of %d recordings attributed", len(result.words), len(recordings))
    if result.failures:
        sys.stderr.write(f"diar attribute: {len(result.failures)} of {len(recordings)} recordings failed:\n")
        for f in result.failures:
            sys.stderr.write(f"  {f.reco_id}\t{f.stage}\t{f.error_type}\t{f.message}\n")
        return 1
    return 0


def output_paths(output: str, fmt: str, recordings: list[str]) -> dict[str | None, str]:
    """Where each output goes: ``{None: -o}``, or for subtitles of several recordings (or ``-o``
    an existing folder) ``{reco_id: -o/<reco-id>.<fmt>}``."""
    from diar.errors import InputError, quote

    if fmt not in PER_RECORDING or (len(recordings) <= 1 and not os.path.isdir(output)):
        return {None: output}
    if os.path.exists(output) and not os.path.isdir(output):
        raise InputError(
            f"-o {quote(output)}: {len(recordings)} recordings make {len(recordings)} {fmt} files: "
            "give a folder for them"
        )
    paths: dict[str | None, str] = {}
    for reco_id in recordings:
        if reco_id in (".", "..") or "/" in reco_id or os.sep in reco_id or "\0" in reco_id:
            raise InputError(
                f"recording id {quote(reco_id)} cannot be a file name in {quote(output)}; "
                "attribute that recording's words on their own, with -o naming its file"
            )
        paths[reco_id] = os.path.join(output, f"{reco_id}{FORMATS[fmt]}")
    return paths


def write_output(
    words: list[Word], fmt: str, targets: dict[str | None, str], args: argparse.Namespace
) -> None:
    """Write the attributed ``words`` in ``fmt`` to ``targets`` (:func:`output_paths`); of a
    recording without words (it failed) no subtitle file is made."""
    from diar.attribute import utterances
    from diar.formats import atomic_files, atomic_open
    from diar.formats.ctm import write_ctm
    from diar.formats.srt import write_srt
    from diar.formats.stm import write_stm
    from diar.formats.vtt import write_vtt
    from diar.formats.words_json import write_words_json

    path = targets.get(None)
    if fmt in ("ctm", "json") and path is not None:
        with atomic_open(path) as f:
            (write_ctm if fmt == "ctm" else write_words_json)(words, f)
        return
    line_chars = 0 if fmt == "stm" else args.line_chars
    cues = utterances(words, args.max_seconds, args.max_chars, args.max_gap, line_chars)
    if fmt == "stm" and path is not None:
        with atomic_open(path) as f:
            write_stm(cues, f)
        return
    write = write_srt if fmt == "srt" else write_vtt
    by_reco: dict[str | None, list[Utterance]] = {}
    for cue in cues:
        by_reco.setdefault(None if None in targets else cue.reco_id, []).append(cue)
    with atomic_files() as group:
        for reco_id, target in targets.items():
            if reco_id is None or reco_id in by_reco:
                write(by_reco.get(reco_id, []), group.open(target))
