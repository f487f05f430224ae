"""Keep secret values out of output, run records, logs and artifacts.

Secrets are replaced by ``***`` wherever they appear in a string before it leaves the engine.
They are the values of secret params, of ``secret_env()`` lookups, and of the environment
variables whose names say they hold one (``*SECRET*``, ``*PASS*``, ``*TOKEN*``, ...) or
that the inventory names as a ``password_env``.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from engine.errors import InvalidInput

MASK = "***"
# A variable whose name says it holds a secret: everywhere in the engine (masking, and the
# settings a kept Ansible worker may hold). PASS covers PASSWORD, PASSWD and PASSPHRASE.
SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|PRIVATE_KEY|CREDENTIAL|API_KEY", re.IGNORECASE)
# Shorter values, and words like these, would mask ordinary text without hiding anything.
MIN_SECRET_LENGTH = 6
NOT_SECRETS = frozenset({"true", "false", "yes", "no", "none", "null"})


def is_secret_name(name: str) -> bool:
    """Whether the variable ``name`` holds a secret, by its name."""
    return SECRET_NAME.search(name) is not None


def environment_secrets(environ: Mapping[str, str], names: Iterable[str] = ()) -> list[str]:
    """The values of ``environ`` that are secrets by their variable's name (or listed)."""
    listed = set(names)
    return [value for name, value in environ.items()
            if (name in listed or is_secret_name(name))
            and len(value) >= MIN_SECRET_LENGTH and value.lower() not in NOT_SECRETS]


class Redactor:
    def __init__(self, secrets: Iterable[str] = (), secret_params: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._params = set(secret_params)

    def add(self, secret: str) -> None:
        if secret and secret not in self._secrets:
            self._secrets = sorted({*self._secrets, secret}, key=len, reverse=True)

    def add_value(self, value: str) -> None:
        """A secret value, also as it appears inside a URL: quoted whole, quoted as a path
        (``/`` kept, as the templates' ``urlencode`` does) and as a form value."""
        self.add(value)
        for quoted in (urllib.parse.quote(value, safe=""), urllib.parse.quote(value),
                       urllib.parse.quote_plus(value, safe="")):
            self.add(quoted)

    def secret_env(self, name: str) -> str:
        """Template function: a secret from the environment, masked wherever it shows up."""
        value = os.environ.get(str(name))
        if value is None:
            raise InvalidInput(f"the environment variable {name} is not set")
        self.add_value(value)
        return value

    def text(self, text: str) -> str:
        """``text`` with every part that any secret covers masked: secrets that overlap
        (``abc123`` and ``123xyz`` in ``abc123xyz``) leave nothing of either."""
        spans: list[tuple[int, int]] = []
        for secret in self._secrets:
            at = text.find(secret)
            while at >= 0:
                spans.append((at, at + len(secret)))
                at = text.find(secret, at + 1)
        if not spans:
            return text
        spans.sort()
        out, shown = [], 0
        start, end = spans[0]
        for begin, finish in [*spans[1:], (len(text) + 1, len(text) + 1)]:
            if begin <= end:
                end = max(end, finish)
                continue
            out += [text[shown:start], MASK]
            shown, (start, end) = end, (begin, finish)
        return "".join(out) + text[shown:]

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            # A secret param rendered whole keeps its type: a number is a secret too.
            return MASK if self.text(str(value)) != str(value) else value
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The params as they may be shown and stored: secret ones left out."""
        return {k: v for k, v in params.items() if k not in self._params}
