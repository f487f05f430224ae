"""A real headless browser for the HTML pages: Debian's ``chromium`` (installed by .ci/run),
reading the page from a file as a person opening it would. Its rendered DOM is parsed into
the text of each table row, so a test asserts what the page shows, not how it is written."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it: "
    "apt-get install -y chromium)")


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile.mkdir(parents=True, exist_ok=True)
    # Its own profile and $HOME (the tests' $HOME cannot be written); no sandbox: CI is root.
    env = {**os.environ, "HOME": str(profile)}
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           f"--user-data-dir={profile / 'data'}", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=True)


def rendered_dom(page: Path, profile: Path) -> str:
    """The DOM chromium builds from the page (after parsing, as it would show it)."""
    return _chromium(profile, "--dump-dom", page.resolve().as_uri()).stdout


def screenshot(page: Path, profile: Path, to: Path, size: str = "1400,900") -> None:
    _chromium(profile, f"--screenshot={to.resolve()}", f"--window-size={size}",
              "--hide-scrollbars", page.resolve().as_uri())


def print_to_pdf(page: Path, profile: Path, to: Path) -> None:
    _chromium(profile, f"--print-to-pdf={to.resolve()}", "--no-pdf-header-footer",
              page.resolve().as_uri())


class _Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.elements: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        self.text.append(data)



def parse(dom: str) -> tuple[list[list[str]], str, list[str]]:
    """The text of each table row's cells, the page's whole text, and its element names."""
    parser = _Rows()
    parser.feed(dom)
    return parser.rows, " ".join(" ".join(parser.text).split()), parser.elements
