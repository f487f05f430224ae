"""One self-contained HTML page: the board and the change record are opened from a file, a CI
artifact or a ticket attachment, where nothing else can be fetched, so the style is inline and
there are no scripts, fonts or images. Every value is escaped: images, names, notes and
messages come from a cluster or a person and are data, never markup."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from engine.system.identity import shown

STYLE = """
:root { color-scheme: light; --ok: #1a7f37; --bad: #b42318; --wait: #9a6700; --mute: #57606a;
        --line: #d0d7de; --head: #f6f8fa; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem;
       color: #1f2328; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; } h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
.meta { color: var(--mute); margin: 0 0 1rem; }
table { border-collapse: collapse; width: 100%; margin: .25rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .35rem .5rem; text-align: left;
         vertical-align: top; }
th { background: var(--head); font-weight: 600; }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { overflow-wrap: anywhere; } code.image { overflow-wrap: normal; word-break: normal; }
pre { background: var(--head); border: 1px solid var(--line); padding: .6rem; overflow-x: auto;
      white-space: pre-wrap; overflow-wrap: anywhere; }
.ok { color: var(--ok); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
.wait { color: var(--wait); font-weight: 600; } .mute { color: var(--mute); }
.mark { display: inline-block; padding: 0 .4rem; border-radius: .6rem; font-size: 12px;
        border: 1px solid currentColor; }
ul { margin: .25rem 0; padding-left: 1.2rem; }
.cmd { display: block; margin: .2rem 0; padding: .3rem .5rem; background: #fff8c5;
       border: 1px solid #d4a72c; border-radius: 4px; }
@media print {
  body { margin: 0; font-size: 11px; }
  a { color: inherit; text-decoration: none; }
  pre, table, tr, .cmd { page-break-inside: avoid; break-inside: avoid; }
  h2 { page-break-after: avoid; break-after: avoid; }
  .cmd { background: none; }
  .noprint { display: none; }
}
"""


def esc(value: Any) -> str:
    """Text for HTML: control characters shown as escapes, markup characters escaped."""
    return html.escape(shown("" if value is None else value, keep_newlines=True), quote=True)


def page(title: str, body: Iterable[str], *, refresh: int | None = None) -> str:
    """The whole document; ``refresh`` (seconds) makes a browser load it again by itself."""
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">\n' if refresh else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"{meta}<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def table(head: Iterable[str], rows: Iterable[Iterable[str]], *, cls: str = "") -> str:
    """A table of cells already escaped (or built from escaped parts)."""
    out = [f'<table{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}><thead><tr>',
           *(f"<th>{h}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def code(value: Any) -> str:
    return f"<code>{esc(value)}</code>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"
