"""Score a hypothesis RTTM against a reference RTTM: DER (missed speech, false alarm,
speaker confusion) and JER, per recording and for the whole corpus.

md-eval conventions: --collar is the margin on EACH side of every reference
boundary (md-eval -c; pyannote.metrics' collar is the total width, twice this);
speakers are mapped one-to-one to maximise overlap; overlapped speech is scored
unless --skip-overlap; without --uem the scored region of a recording spans its
reference and hypothesis. A recording missing from the hypothesis counts as all
missed speech, one missing from the reference as all false alarm.

--corpus maps speakers once for the whole corpus instead of once per recording: for a
hypothesis whose labels name the same person in every recording (diar link, or the job
with job.link_speakers: true, against a reference such as LibriSpeech reader ids), so
that a person split into two labels, or two people under one, across recordings counts
as speaker confusion. The mapping maximises the co-occurrence time summed over all
recordings, which is the same as scoring them concatenated on one timeline.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diar.scoring import Score, ScoringResult

HELP = "score a hypothesis RTTM against a reference RTTM (DER, JER)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from diar.commands.common import add_scoring_arguments

    add_scoring_arguments(parser, "reference RTTM", required=True)
    parser.add_argument("--hyp", required=True, metavar="HYP.rttm", help="hypothesis (system) RTTM")
    parser.add_argument(
        "--corpus",
        action="store_true",
        help="one speaker mapping for the whole corpus (labels name the same person in every recording)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object {der, jer, miss, false_alarm, confusion, total, files: {reco: {...}}}"
        " with rates as fractions and total in seconds",
    )


def run(args: argparse.Namespace) -> int:
    from diar.formats.rttm import read_rttm
    from diar.manifests import read_uem
    from diar.scoring import score

    reference = read_rttm(args.ref)
    hypothesis = read_rttm(args.hyp)
    uem = read_uem(args.uem) if args.uem is not None else None
    result = score(
        reference,
        hypothesis,
        uem=uem,
        collar=args.collar,
        skip_overlap=args.skip_overlap,
        corpus_mapping=args.corpus,
    )
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        sys.stdout.write(format_table(result))
    return 0


def format_table(result: ScoringResult) -> str:
    """A per-recording table and a corpus line, rates in percent, scored speech in seconds."""
    width = max(len("recording"), len("corpus"), *(len(reco) for reco in result.files))
    columns = ("DER%", "miss%", "FA%", "conf%", "JER%")
    header = f"{'recording':<{width}} " + "".join(f" {c:>7}" for c in columns) + f" {'scored_s':>10}"
    rule = "-" * len(header)

    def row(name: str, s: Score) -> str:
        return (
            f"{name:<{width}}  {100 * s.der:7.2f} {100 * s.miss:7.2f} {100 * s.false_alarm:7.2f}"
            f" {100 * s.confusion:7.2f} {100 * s.jer:7.2f} {s.total:10.3f}"
        )

    lines = [header, rule, *(row(reco, s) for reco, s in result.files.items()), rule]
    lines.append(row("corpus", result.corpus))
    if result.speaker_map is not None:
        lines.append(
            f"one speaker mapping for the corpus: {len(result.speaker_map)} of "
            f"{result.corpus.num_ref_speakers} reference speakers mapped, "
            f"{result.corpus.num_hyp_speakers} hypothesis speakers"
        )
    return "\n".join(lines) + "\n"
