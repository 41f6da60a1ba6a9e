"""Diarize audio files in this process (no Ray): who spoke when, written as RTTM, vad lines or Parquet.

INPUT is any mix of audio files (or URLs) and Kaldi wav.scp files (names ending in
``.scp``: ``<reco-id> <path>`` per line, paths relative to the scp's folder). A
plain file's recording id is its file name without extension.

The default pipeline (``mode: cluster``) runs offline: silero-vad speech
detection, GE2E d-vectors over sliding windows, spectral clustering with the
speaker count estimated per recording, 10 ms labels, ModelScope's smoothing.
The speaker count of a recording comes from ``--reco2num-spk``, else
``--num-speakers``, else it is estimated (within ``--min-speakers`` /
``--max-speakers``). Every setting can be changed with ``--config FILE`` and
``--set KEY=VALUE`` (e.g. ``--set clustering.method=agglomerative``).
Overlapped speech is kept (several speakers at once); ``--exclusive`` keeps at most
one speaker at each instant, the most likely one, as transcripts want.

A recording that fails (missing, corrupt or empty audio, ...) is logged and
skipped; the others are still written, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING

from diar.errors import quote

if TYPE_CHECKING:
    from diar.config import Config

HELP = "diarize audio files or a wav.scp in one process (RTTM, vad or Parquet output)"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from diar.commands.common import add_config_option
    from diar.formats.writers import OUTPUT_FORMATS

    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files/URLs and/or wav.scp files")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="output file (written atomically)"
    )
    parser.add_argument("--format", choices=list(OUTPUT_FORMATS), default="rttm", help="output format")
    add_config_option(parser)
    parser.add_argument(
        "--num-speakers",
        type=int,
        default=None,
        metavar="N",
        help="speakers in every recording (not estimated)",
    )
    parser.add_argument(
        "--min-speakers", type=int, default=None, metavar="N", help="lower bound of the estimate"
    )
    parser.add_argument(
        "--max-speakers", type=int, default=None, metavar="N", help="upper bound of the estimate"
    )
    parser.add_argument(
        "--reco2num-spk",
        default=None,
        metavar="FILE",
        help="'<reco-id> <num-speakers>' lines; overrides --num-speakers for the recordings it lists",
    )
    parser.add_argument(
        "--exclusive",
        action="store_true",
        help="at most one speaker at a time, the most likely one (for aligning with a transcript); "
        "shortcut for --set postprocess.exclusive=true",
    )
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N", help="CPU threads (config: num_threads, default 1)"
    )
    parser.add_argument(
        "--enroll",
        default=None,
        metavar="FILE",
        help="enrolled speakers: enrollment list '<reco-id> <speaker> <path>' (sets profile.enroll; the "
        "speakers found are matched to them, the others are unknown1, unknown2, ...; a cluster-mode "
        "config becomes mode profile)",
    )
    parser.add_argument(
        "--profile-scp",
        default=None,
        metavar="FILE",
        help="enrolled speakers: profiles '<reco-id> <ark>:<offset>' from `diar profiles` "
        "(sets profile.profile_scp; as --enroll)",
    )


def build_config(args: argparse.Namespace) -> Config:
    """``--config`` + ``--set`` + the speaker-count and thread shortcuts."""
    from diar.config import ConfigError, load_config, with_profiles

    values: dict[str, object] = {}
    for key in ("num_speakers", "min_speakers", "max_speakers", "threads"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be a positive integer, got {value}")
        if value is not None:
            values["num_threads" if key == "threads" else f"clustering.{key}"] = value
    if args.exclusive:
        values["postprocess.exclusive"] = True
    if args.enroll is not None:
        values["profile.enroll"] = args.enroll
    if args.profile_scp is not None:
        values["profile.profile_scp"] = args.profile_scp
    # validated once with the shortcuts' values (e.g. --min-speakers above max_speakers)
    config = load_config(args.config, list(args.overrides), values)
    if args.enroll is not None or args.profile_scp is not None:
        config = with_profiles(config)
    return config


def collect_inputs(inputs: list[str], allow_pipes: bool = False) -> dict[str, str]:
    """reco_id -> audio source from audio paths/URLs and wav.scp files, in the order given.

    Raises:
        DiarError: a recording id comes from two inputs.
    """
    from diar.errors import DiarError
    from diar.manifests import read_wav_scp, reco_id_from_path

    sources: dict[str, str] = {}
    origin: dict[str, str] = {}
    for item in inputs:
        if item.endswith(".scp"):
            entries = read_wav_scp(item, allow_pipes=allow_pipes)
        else:
            entries = {reco_id_from_path(item): item}
        for reco_id, source in entries.items():
            if reco_id in sources:
                raise DiarError(
                    f"recording id {quote(reco_id)} comes from both {origin[reco_id]} and {item}; "
                    "give the files distinct names or list them in one wav.scp with distinct ids"
                )
            sources[reco_id] = source
            origin[reco_id] = item
    return sources


def run(args: argparse.Namespace) -> int:
    from diar.commands.common import input_files
    from diar.config import uses_profiles
    from diar.failures import Failure
    from diar.formats.parquet import model_name
    from diar.formats.writers import output_format
    from diar.manifests import ProfileSources, read_reco2num_spk
    from diar.outputs import check_outputs, writing
    from diar.pipelines import RecordingInput, build_diarizer
    from diar.types import Annotation

    config = build_config(args)
    fmt = output_format(args.format)
    sources = collect_inputs(args.inputs, allow_pipes=config.audio.allow_pipes)
    counts = read_reco2num_spk(args.reco2num_spk) if args.reco2num_spk else {}
    unknown = sorted(set(counts) - set(sources))
    if unknown:
        logger.warning(
            "%s lists recordings that are not among the inputs: %s", args.reco2num_spk, unknown[:5]
        )
    # before the model loads: never write over an input, and fail now if -o cannot be written
    inputs = input_files([*args.inputs, *sources.values(), args.reco2num_spk, args.config], config)
    check_outputs([("-o", args.output)], inputs)
    profiles = ProfileSources()  # read once, each recording gets its own
    if uses_profiles(config):
        profiles = ProfileSources.read(config.profile.profile_scp, config.profile.enroll)
    diarizer = build_diarizer(config)
    results: list[Annotation] = []
    failures: list[Failure] = []
    for i, (reco_id, source) in enumerate(sources.items(), start=1):
        stage = "read"
        try:
            t0 = time.perf_counter()
            waveform = diarizer.load(source, reco_id, allow_pipes=config.audio.allow_pipes)
            stage = "diarize"
            recording = RecordingInput(reco_id, waveform, counts.get(reco_id), *profiles.of(reco_id))
            diarization = diarizer.diarize(recording)
            annotation = diarization.exclusive_turns() if fmt.exclusive else diarization.annotation
        except Exception as e:  # a model error on one recording must not lose the others
            failures.append(Failure.from_exception(reco_id, stage, e, source))
            logger.error("recording %r failed at %s: %s", reco_id, stage, failures[-1].message)
            continue
        results.append(annotation)
        seconds = len(waveform) / diarizer.sample_rate
        logger.info(
            "%d/%d %s: %.1f s of audio, %d speakers, %d turns in %.2f s",
            i,
            len(sources),
            reco_id,
            seconds,
            len(annotation.speakers),
            len(annotation),
            time.perf_counter() - t0,
        )
    with writing("-o", args.output):
        fmt.write_file(results, args.output, model_name(config))
    if failures:
        sys.stderr.write(f"diar diarize: {len(failures)} of {len(sources)} recordings failed:\n")
        for f in failures:
            sys.stderr.write(f"  {f.reco_id}\t{f.stage}\t{f.error_type}\t{f.message}\n")
        return 1
    return 0
