"""The project's own errors: problems a user can fix (a bad file, a bad parameter, a missing input).

Stage scripts and the CLI catch `EmoloomError` at their boundary and print its one-line message (no traceback);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EmoloomError(Exception):
    """Base of the errors whose message alone tells the user what to fix."""


class DataError(EmoloomError, ValueError):
    """Input that must stop the stage; the message names file:line and what was expected."""


class ParamError(EmoloomError, ValueError):
    """A parameter outside its allowed type, range or values; the message names the key."""


class MissingInputError(EmoloomError, FileNotFoundError):
    """A file or directory a step needs is not there; the message names it and what makes it."""
