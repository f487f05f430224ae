"""``runbook board --serve``: the board's page on 127.0.0.1, for a screen in the team's room.

Read-only by construction: it answers GET of ``/`` with the board read again for that request
(the page reloads itself), 404 for any other path, and 405 for any other method; it changes
nothing, and listens on the loopback address only (put it behind a proxy to share it).
"""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engine.errors import InvalidInput, RunbookError
from engine.views.html_page import esc, page

HOST = "127.0.0.1"


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, inventory: str | None, refresh: int) -> None:
        self.inventory = inventory
        self.refresh = refresh
        super().__init__((HOST, port), _Handler)

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def page(self) -> tuple[int, str]:
        """The status and the page for a GET of ``/``: the board as it is now."""
        from engine import api
        from engine.views import present_board

        try:
            board = api.board(inventory=self.inventory)
        except RunbookError as exc:  # shown on the page; the next reload tries again
            return 500, page("Board unavailable", [
                "<h1>The board could not be read</h1>", f"<pre>{esc(exc)}</pre>"],
                refresh=self.refresh)
        return 200, present_board.board_html(board, refresh=self.refresh)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Server
    server_version = "runbook-board"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] not in ("/", "/index.html"):
            self._send(404, page("Not found", ["<h1>Not found</h1>",
                                               '<p><a href="/">The board</a></p>']))
            return
        self._send(*self.server.page())

    def _refuse(self) -> None:
        self._send(405, page("Method not allowed", ["<h1>This board is read-only</h1>"]),
                   allow=True)

    def __getattr__(self, name: str) -> Any:
        # http.server looks up do_<METHOD>: every method but GET is refused the same way.
        if name.startswith("do_"):
            return self._refuse
        raise AttributeError(name)

    def _send(self, status: int, body: str, *, allow: bool = False) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        # The page needs nothing from anywhere: forbid it all (an injected value included).
        self.send_header("Content-Security-Policy",
                         "default-src 'none'; style-src 'unsafe-inline'")
        if allow:
            self.send_header("Allow", "GET")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: library code writes nothing to the terminal."""


@contextmanager
def server(*, port: int, inventory: str | None, refresh: int) -> Iterator[Server]:
    """The board's server, bound and listening; closed when the block ends."""
    if not 0 <= port <= 65535:
        raise InvalidInput(f"--port {port}: not a TCP port (0 to 65535)")
    if refresh < 1:
        raise InvalidInput(f"--refresh {refresh}: give at least 1 second")
    from engine import api

    if api.load_inventory(inventory).path is None:  # refused now, not on every request
        raise InvalidInput("no inventory: give --inventory NAME or set RUNBOOK_INVENTORY")
    try:
        served = Server(port, inventory, refresh)
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}") from None
    try:
        yield served
    finally:
        served.server_close()
