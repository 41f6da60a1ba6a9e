"""Headless Chromium, to check that a report page renders (the tests, ``diar bench report``).

Debian's ``chromium`` package (``apt-get install chromium``) or any Chromium / Chrome binary on
PATH. The flags keep it off the network and from starting background services: a closed
network otherwise costs it seconds of retries, and a fresh profile folder per call keeps runs
apart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from diar.errors import DiarError

#: Binaries looked for on PATH, in order.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",  # as root (CI) Chromium refuses to start with its sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
)


class BrowserError(DiarError):
    """Chromium is missing, failed or timed out."""


def find_chromium() -> str | None:
    """The path of a Chromium binary on PATH (``$DIAR_CHROMIUM`` first), or None."""
    preferred = os.environ.get("DIAR_CHROMIUM")
    for name in (preferred, *CANDIDATES) if preferred else CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(page: str | os.PathLike[str], extra: list[str], timeout: float, fragment: str = "") -> str:
    binary = find_chromium()
    if binary is None:
        raise BrowserError(
            f"no Chromium found on PATH (looked for {', '.join(CANDIDATES)}); apt-get install chromium"
        )
    url = Path(page).resolve().as_uri() + (f"#{fragment}" if fragment else "")
    with tempfile.TemporaryDirectory(prefix="diar-chromium-") as profile:
        command = [binary, *FLAGS, f"--user-data-dir={profile}", *extra, url]
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise BrowserError(f"Chromium did not finish {url} within {timeout:g} s") from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise BrowserError(f"Chromium exited with {done.returncode} on {url}: {' | '.join(tail)}")
    return done.stdout.decode("utf-8", "replace")


def dump_dom(page: str | os.PathLike[str], timeout: float = 120.0, fragment: str = "") -> str:
    """The page's DOM as Chromium serialises it once loaded (scripts run), opened at
    ``#fragment`` if given."""
    return _run(page, ["--dump-dom"], timeout, fragment)


def screenshot(
    page: str | os.PathLike[str],
    png: str | os.PathLike[str],
    size: tuple[int, int] = (1280, 2000),
    timeout: float = 120.0,
    fragment: str = "",
) -> None:
    """A PNG of ``size`` (width, height) pixels of the page once loaded (at ``#fragment``)."""
    _run(
        page, [f"--screenshot={Path(png).resolve()}", f"--window-size={size[0]},{size[1]}"], timeout, fragment
    )
    if not os.path.isfile(png) or os.path.getsize(png) == 0:
        raise BrowserError(f"Chromium wrote no screenshot of {page}")
