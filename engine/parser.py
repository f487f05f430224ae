"""An argparse parser whose errors are invalid input (exit 2, one line), not a usage dump."""

from __future__ import annotations

import argparse
from typing import NoReturn

from engine.errors import InvalidInput


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise InvalidInput(f"{self.prog}: {message}")
