"""ansible-runner's event stream (its ``awx_display`` callback), as a warm worker's child prints
it, decoded into the job events and artifacts folder ansible-runner writes.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

_EVENT_DATA = re.compile(r"\x1b\[K((?:[A-Za-z0-9+/=]+\x1b\[\d+D)+)\x1b\[K")


_MOVE = re.compile(r"\x1b\[\d+D")


class EventStream:
    """ansible-runner's reading of ``awx_display`` output: each encoded event is merged with
    the partial data the callback left in ``job_events/``, handed to ``handler`` and written
    to ``job_events/COUNTER-UUID.json``; the plain text goes to ``stdout``."""

    def __init__(self, artifact_dir: Path, ident: str,
                 handler: Callable[[dict[str, Any]], bool]) -> None:
        self.dir = artifact_dir
        self.ident = ident
        self.handler = handler
        (artifact_dir / "job_events").mkdir(parents=True, exist_ok=True)
        self._stdout: IO[str] = open(artifact_dir / "stdout", "w", encoding="utf-8")  # noqa: SIM115
        self._buffer = ""
        self._current: dict[str, Any] | None = None
        self._counter = 0
        self._line = 0

    def feed(self, text: str) -> None:
        self._buffer += text
        if "\x1b[K" in self._buffer:
            while match := _EVENT_DATA.search(self._buffer):
                try:
                    data = json.loads(base64.b64decode(_MOVE.sub("", match.group(1))))
                except ValueError:
                    data = {}
                self._emit(self._buffer[:match.start()], data)
                self._buffer = self._buffer[match.end():]
        if self._current is None and "\n" in self._buffer and "\x1b[K" not in self._buffer:
            complete, _, rest = self._buffer.rpartition("\n")
            self._emit(complete + "\n")
            self._buffer = rest

    def close(self) -> None:
        if self._buffer:
            self._emit(self._buffer)
            self._buffer = ""
        self._stdout.close()

    def _emit(self, text: str, following: dict[str, Any] | None = None) -> None:
        if self._current is not None:
            event, chunks = self._current, [text]
        elif text:
            event, chunks = {"event": "verbose"}, text.splitlines(True)
        else:
            event, chunks = {}, []
        for chunk in chunks:
            if event.get("event") == "verbose":
                event["uuid"] = str(uuid.uuid4())
            self._counter += 1
            lines = chunk.count("\n")
            event.update(counter=self._counter, stdout=chunk.rstrip("\n\r"),
                         start_line=self._line, end_line=self._line + lines)
            self._line += lines
            self._record(dict(event))
        self._current = following if following and following.get("uuid") else None

    def _record(self, event: dict[str, Any]) -> None:
        if event["stdout"]:
            self._stdout.write(event["stdout"] + "\n")
            self._stdout.flush()
        if "uuid" not in event:
            return
        event["runner_ident"] = self.ident
        partial = self.dir / "job_events" / f"{event['uuid']}-partial.json"
        with contextlib.suppress(OSError, ValueError):
            event.update(json.loads(partial.read_text(encoding="utf-8")))
            partial.unlink()
        event.setdefault("created", datetime.datetime.now(datetime.UTC).isoformat())
        if self.handler(event):
            path = self.dir / "job_events" / f"{event['counter']}-{event['uuid']}.json"
            tmp = path.with_name(path.name + ".tmp")
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w",
                      encoding="utf-8") as fh:
                json.dump(event, fh)
            tmp.rename(path)
