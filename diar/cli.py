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
from collections.abc import Callable, Sequence

from diar.errors import DiarError, one_line

logger = logging.getLogger(__name__)

#: Subcommands in the order ``diar --help`` lists them.
COMMANDS = ("diarize", "embed", "profiles", "run", "link", "score", "plot", "report", "attribute", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diar",
        description="Speaker diarization (who spoke when) as a distributed batch job on Ray.",
    )
    add_verbose(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"diar.commands.{name}")
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
            add_help=not getattr(module, "FORWARDS_ARGUMENTS", False),
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _forwards=getattr(module, "FORWARDS_ARGUMENTS", False))
    return parser


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """``-v`` / ``-vv``: more logging."""
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")


def run_command(prog: str, args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    """Set up logging (``args.verbose``), run, and turn a :class:`DiarError` into one line on
    stderr and exit code 2 (130 for Ctrl-C).

    No traceback reaches the user: an OSError no check foresaw (permissions, a full disk) is
    one line with exit code 2 as well, and any other exception, a bug in diar, one line saying
    so with exit code 1 (its traceback is logged at debug level: ``-vv`` shows it).
    """
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(run(args))
    except KeyboardInterrupt:
        return 130
    except DiarError as e:
        sys.stderr.write(one_line(f"{prog}: error: {e}") + "\n")
        return 2
    except OSError as e:
        logger.debug("%s failed", prog, exc_info=True)
        where = f": {e.filename}" if e.filename else ""
        sys.stderr.write(one_line(f"{prog}: error: {e.strerror or e}{where}") + "\n")
        return 2
    except Exception as e:  # a bug: one line, and the traceback for whoever asks with -vv
        logger.debug("%s failed", prog, exc_info=True)
        sys.stderr.write(
            one_line(
                f"{prog}: internal error: {type(e).__name__}: {e} (a bug in diar: rerun with -vv for the "
                "traceback and report it)"
            )
            + "\n"
        )
        return 1


def entry_point(
    prog: str,
    doc: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None = None,
) -> int:
    """``main()`` of a ``python -m`` entry point (the Ray jobs): parse, then :func:`run_command`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[0] if doc else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_verbose(parser)
    add_arguments(parser)
    return run_command(prog, parser.parse_args(argv), run)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not args._forwards:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args._forwards:  # the options before the first positional, then the rest, in order
        args.job_args = [*unknown, *args.job_args]
    return run_command(f"diar {args.command}", args, args._run)


if __name__ == "__main__":
    sys.exit(main())
