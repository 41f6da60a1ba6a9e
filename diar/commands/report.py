"""Write the report page of a job: one self-contained HTML file (no server, no network).

OUT is a job's output folder (python -m jobs.diarize --out OUT; a local path or an fsspec
URL) or a single RTTM / Parquet file. The page holds the corpus summary (recordings, hours,
speakers per recording, wall and compute time, throughput, from OUT/summary.json), the
failures and their reasons (OUT/failures.tsv), and a table of every recording, in pages,
linking to each recording's timeline. With --ref (and --uem, --collar, --skip-overlap as for
`diar score`) it adds DER and JER per recording and for the corpus, the figures `diar score
--ref REF --hyp OUT/corpus.rttm` prints, the recordings with the highest DER, and the errors
on every timeline. Written to OUT/report.html unless -o says otherwise; the job writes the
same page (without scores) at its end when job.report is on.
"""

from __future__ import annotations

import argparse
import sys

HELP = "write a job's report page (summary, failures, per-recording table and timelines, DER) as HTML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from diar.commands.common import add_scoring_arguments

    parser.add_argument("out", metavar="OUT", help="a job's output folder, or an RTTM / Parquet file")
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="REPORT.html",
        help="where to write the page (unset: OUT/report.html; needed when OUT is a file or a URL)",
    )
    add_scoring_arguments(parser, "reference RTTM: DER and JER, as diar score gives them")
    parser.add_argument("--title", default=None, help="the page's title (unset: 'diar report: OUT')")
    parser.add_argument(
        "--page-size", type=int, default=100, metavar="N", help="recordings per page of the table"
    )


def run(args: argparse.Namespace) -> int:
    import os

    from diar.audio import is_url
    from diar.commands.common import input_files
    from diar.errors import InputError, quote, shorten
    from diar.formats import atomic_open
    from diar.formats.rttm import read_rttm
    from diar.manifests import read_uem
    from diar.outputs import check_outputs, writing
    from diar.report.inputs import read_job_outputs
    from diar.report.page import Reference, render_report

    if args.page_size < 1:
        raise InputError(f"--page-size must be >= 1, got {quote(args.page_size)}")
    if args.uem is not None and args.ref is None:
        raise InputError("--uem needs --ref (it says which regions are scored)")
    output = args.output
    if output is None:
        if is_url(args.out) or not os.path.isdir(args.out):
            raise InputError(f"{shorten(args.out)} is not a local folder: give the page's path with -o")
        output = os.path.join(args.out, "report.html")
    read = [args.ref, args.uem, args.out]
    if not is_url(args.out) and os.path.isdir(args.out):
        read += [
            os.path.join(args.out, n) for n in ("corpus.rttm", "summary.json", "failures.tsv", "job.json")
        ]
    check_outputs([("-o", output)], input_files(read))
    outputs = read_job_outputs(args.out)
    reference = None
    if args.ref is not None:
        reference = Reference(
            read_rttm(args.ref),
            name=args.ref,
            uem=read_uem(args.uem) if args.uem is not None else None,
            uem_name=args.uem or "",
            collar=args.collar,
            skip_overlap=args.skip_overlap,
        )
    html = render_report(outputs, reference, title=args.title, page_size=args.page_size)
    with writing("-o", output), atomic_open(output) as f:
        f.write(html)
    sys.stdout.write(f"{output}\n")
    return 0
