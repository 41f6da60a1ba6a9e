"""The ``diar`` command line: thin dispatch to one module per subcommand.

Each module in :mod:`diar.commands` defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; heavy imports happen
inside ``run`` so that ``diar --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from diar.errors import DiarError, one_line

#: Subcommands in the order ``diar --help`` lists them.
COMMANDS = ("diarize", "embed", "profiles", "run", "link", "score", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diar",
        description="Speaker diarization (who spoke when) as a distributed batch job on Ray.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"diar.commands.{name}")
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        return 130
    except DiarError as e:
        sys.stderr.write(one_line(f"diar {args.command}: error: {e}") + "\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
