"""The command line's layering: the library never imports the Ray jobs; ``diar run`` forwards."""

from __future__ import annotations

import pytest


def test_the_library_and_its_command_line_never_import_the_jobs() -> None:
    """diar/ never imports jobs/ (which needs Ray): `diar run` finds the job by entry point."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys\n"
        "import diar, diar.cli, diar.commands\n"
        "for m in pkgutil.iter_modules(diar.commands.__path__):\n"
        "    importlib.import_module('diar.commands.' + m.name)\n"
        "diar.cli.build_parser()\n"
        "print(sorted(k for k in sys.modules if k == 'jobs' or k.startswith('jobs.') or k == 'ray'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_diar_run_hands_its_command_line_to_the_job(capsys: pytest.CaptureFixture[str]) -> None:
    from diar.cli import main

    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    assert "--wav-scp" in capsys.readouterr().out  # the job's own options


def _user_errors() -> list[tuple[str, object]]:
    """(what the message must name, a call that fails because of what a user gave)."""
    import numpy as np

    from diar.formats.kaldi import check_key
    from diar.manifests import enrollment_from_list, safe_filename
    from diar.pipelines.profile import check_profiles, compute_profiles
    from jobs.reduce import allowed_failures

    return [
        ("job.max_failures", lambda: allowed_failures(-1, 10)),
        ("'a b'", lambda: check_key("a b")),
        ("empty recording id", lambda: safe_filename("")),
        ("'only-the-recording.wav'", lambda: enrollment_from_list(["only-the-recording.wav"])),
        ("'bob' (row 2)", lambda: check_profiles(np.eye(2, 3) * [[1], [0]], ["ann", "bob"], "r1")),
        ("'r1' has no enrollment files", lambda: compute_profiles(None, [], reco_id="r1")),  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize("index", range(6))
def test_errors_a_user_causes_are_one_line_and_exit_code_2(
    index: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a traceback: a DiarError, printed as one line naming the value, exit code 2."""
    import argparse

    from diar.cli import run_command
    from diar.errors import DiarError

    named, call = _user_errors()[index]

    def run(args: argparse.Namespace) -> int:
        call()  # type: ignore[operator]
        return 0

    with pytest.raises(DiarError):
        call()  # type: ignore[operator]
    assert run_command("diar x", argparse.Namespace(verbose=0), run) == 2
    err = capsys.readouterr().err
    assert err.startswith("diar x: error: ") and err.count("\n") == 1 and named in err, err


@pytest.mark.parametrize(
    ("error", "code", "start"),
    [
        (
            PermissionError(13, "Permission denied", "/data/x.rttm"),
            2,
            "diar x: error: Permission denied: /data/x.rttm",
        ),
        (OSError(28, "No space left on device"), 2, "diar x: error: No space left on device"),
        (KeyError("oops"), 1, "diar x: internal error: KeyError: 'oops' (a bug in diar: rerun with -vv"),
    ],
)
def test_no_traceback_reaches_the_user(
    error: Exception,
    code: int,
    start: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What no check foresaw is still one line: an OSError exit code 2, a bug exit code 1, with the
    traceback logged at debug level (``-vv``)."""
    import argparse
    import logging

    from diar.cli import run_command

    def run(args: argparse.Namespace) -> int:
        raise error

    with caplog.at_level(logging.DEBUG, logger="diar.cli"):
        assert run_command("diar x", argparse.Namespace(verbose=0), run) == code
    err = capsys.readouterr().err
    assert err.startswith(start) and err.count("\n") == 1 and "Traceback" not in err, err
    assert any(r.exc_info for r in caplog.records)
