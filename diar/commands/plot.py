"""Draw one recording's diarization as a picture (PNG, SVG or PDF, by the suffix of -o).

One lane per speaker on a time axis, and a lane where two or more speakers talk at once.
With --ref, the reference's lanes above the system's, each system speaker in the colour of
the reference speaker it is mapped to, and the missed speech, false alarm and speaker
confusion that `diar score` counts with the same --uem, --collar and --skip-overlap (the same
one-to-one mapping; stretches not scored are greyed). With --audio (or --wav-scp) the audio's
level in dBFS is drawn under the lanes. --start / --end zoom in; a long recording is drawn in
several rows (--row-seconds).

HYP is an RTTM file, a Parquet table (.parquet) or a job's output folder (its corpus.rttm; its
job.json gives the recording's duration). Needs matplotlib: pip install 'diar[plot]'.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diar.types import Annotation

#: Sample rate the audio is read at for its level.
ENVELOPE_RATE = 8000

HELP = "draw one recording's diarization (speaker lanes, overlap, errors against --ref) as PNG/SVG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from diar.commands.common import add_scoring_arguments

    parser.add_argument("hyp", metavar="HYP", help="RTTM, Parquet (.parquet) or a job's output folder")
    parser.add_argument(
        "-o",
        "--output",
        action="append",
        required=True,
        metavar="FILE",
        help="picture to write, .png, .svg or .pdf (repeatable: -o x.png -o x.svg)",
    )
    parser.add_argument(
        "--reco", default=None, metavar="ID", help="the recording to draw (needed when HYP holds several)"
    )
    add_scoring_arguments(parser, "reference RTTM: its lanes, and the errors diar score counts")
    audio = parser.add_mutually_exclusive_group()
    audio.add_argument(
        "--audio", default=None, metavar="PATH_OR_URL", help="the recording's audio: its level"
    )
    audio.add_argument(
        "--wav-scp", default=None, metavar="WAV_SCP", help="find the recording's audio in a wav.scp"
    )
    parser.add_argument("--start", type=float, default=None, metavar="SECONDS", help="draw from this time")
    parser.add_argument("--end", type=float, default=None, metavar="SECONDS", help="draw up to this time")
    parser.add_argument(
        "--row-seconds",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds per row (unset: one row up to 3 min, else rows of 1, 2, 5, 10, ... min, at most 8)",
    )
    parser.add_argument("--width", type=float, default=14.0, metavar="INCHES", help="figure width")
    parser.add_argument("--dpi", type=int, default=100, help="resolution of PNG output (dots per inch)")
    parser.add_argument("--title", default=None, help="title (unset: the recording, its speakers and scores)")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from diar.audio import load_audio
    from diar.commands.common import input_files
    from diar.errors import InputError, quote, shorten
    from diar.formats.rttm import read_rttm
    from diar.manifests import read_uem, read_wav_scp
    from diar.outputs import check_outputs, writing
    from diar.report.inputs import read_job_outputs
    from diar.report.plot import output_format, plot_timeline, require_matplotlib, save_figure
    from diar.report.timeline import build_timeline, crop, level_envelope
    from diar.scoring import ScoringError
    from diar.types import Annotation

    require_matplotlib()  # before reading anything: say at once what is missing
    for path in args.output:
        output_format(path)
    if args.width <= 0 or args.dpi <= 0:
        raise InputError(f"--width and --dpi must be > 0, got {quote(args.width)} and {quote(args.dpi)}")
    check_outputs(
        [("-o", path) for path in args.output],
        input_files([args.hyp, args.ref, args.uem, args.audio, args.wav_scp]),
    )
    job = read_job_outputs(args.hyp)
    reference = read_rttm(args.ref) if args.ref is not None else None
    reco_id = _pick_recording(args.reco, list(job.annotations), reference, args.hyp)
    hypothesis = job.annotations.get(reco_id, Annotation(reco_id, ()))
    uem = None
    if args.uem is not None:
        if reference is None:
            raise InputError("--uem needs --ref (it says which regions are scored)")
        regions = read_uem(args.uem)
        if reco_id not in regions:
            raise ScoringError(f"recording {quote(reco_id)} is not in the UEM {shorten(args.uem)}")
        uem = regions[reco_id]
    source = args.audio
    if args.wav_scp is not None:
        sources = read_wav_scp(args.wav_scp)
        if reco_id not in sources:
            raise InputError(f"recording {quote(reco_id)} is not in {shorten(args.wav_scp)}")
        source = sources[reco_id]
    # 8 kHz is plenty for a level (and halves the memory of a long recording)
    waveform = load_audio(source, ENVELOPE_RATE, reco_id) if source is not None else None
    duration = len(waveform) / ENVELOPE_RATE if waveform is not None else job.durations.get(reco_id)
    timeline = build_timeline(
        hypothesis,
        reference.get(reco_id, Annotation(reco_id, ())) if reference is not None else None,
        uem=uem,
        collar=args.collar,
        skip_overlap=args.skip_overlap,
        duration=duration,
    )
    if waveform is not None:
        timeline = dataclasses.replace(timeline, envelope=level_envelope(waveform, ENVELOPE_RATE))
    timeline = crop(timeline, args.start, args.end)
    title = args.title
    if title is None and reference is not None:
        from diar.report.plot import describe_score

        title = f"{describe_score(timeline)}; collar {args.collar:g} s" + (
            ", overlap not scored" if args.skip_overlap else ""
        )
    figure = plot_timeline(timeline, row_seconds=args.row_seconds, width=args.width, title=title)
    for path in args.output:
        with writing("-o", path):
            save_figure(figure, path, dpi=args.dpi)
        sys.stdout.write(f"{path}\n")
    return 0


def _pick_recording(
    wanted: str | None, found: list[str], reference: dict[str, Annotation] | None, hyp: str
) -> str:
    """The recording to draw: ``wanted``, else the only one HYP holds."""
    from diar.errors import InputError, quote, shorten

    known = found + [r for r in (reference or {}) if r not in found]
    if wanted is not None:
        if wanted not in known:
            where = f"{shorten(hyp)}" + (" or the reference" if reference is not None else "")
            raise InputError(f"recording {quote(wanted)} is not in {where}; it holds {_some(known)}")
        return wanted
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(f"{shorten(hyp)} holds no turns; give --reco to draw a recording of the reference")
    raise InputError(f"{shorten(hyp)} holds {len(found)} recordings ({_some(found)}); choose one with --reco")


def _some(names: list[str], limit: int = 5) -> str:
    from diar.errors import quote

    shown = ", ".join(quote(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "") if names else "none"
