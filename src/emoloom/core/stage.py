"""The boundary of a stage script: a user-fixable error ends it with one line and a non-zero exit, no traceback."""

from __future__ import annotations

import sys
from typing import Callable

from emoloom.core.errors import EmoloomError


def run_stage(name: str, main: Callable[..., None], *args: str) -> None:
    """Run a stage's main(*args); an EmoloomError prints `<name>: error: <message>` to stderr and exits with 1."""
    try:
        main(*args)
    except EmoloomError as err:
        sys.exit(f"{name}: error: {err}")
