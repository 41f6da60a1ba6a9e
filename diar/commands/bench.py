"""Run a benchmark and print its figures (speed, memory, accuracy).

Benchmarks are the only place where speed and memory targets are checked;
the tests never time anything. Each benchmark takes its own options: pass
them after the benchmark's name, e.g. ``diar bench wavlm --minutes 1 10``.
"""

from __future__ import annotations

import argparse
import importlib

HELP = (
    "run a benchmark (default pipeline, WavLM-SD, Ray job, its scaling, speaker linking, the GPU check, "
    "enrolled speakers, report page) "
    "and print figures"
)

#: Benchmark name -> module in diar.benchmarks with a ``main(argv) -> int``.
BENCHMARKS = {
    "default": "diar.benchmarks.default",
    "wavlm": "diar.benchmarks.wavlm",
    "job": "diar.benchmarks.job",
    "scale": "diar.benchmarks.scale",
    "link": "diar.benchmarks.link",
    "gpu": "diar.benchmarks.gpu",
    "profile": "diar.benchmarks.profile",
    "report": "diar.benchmarks.report",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark to run")
    parser.add_argument(
        "options", nargs=argparse.REMAINDER, help="options of that benchmark (see its --help)"
    )


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHMARKS[args.name])
    return int(module.main(list(args.options)))
