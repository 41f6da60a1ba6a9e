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
