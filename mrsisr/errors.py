"""Exceptions raised by mrsisr.

Every error a user can cause with bad input derives from [`MrsisrError`][mrsisr.errors.MrsisrError].
The CLI catches these, prints their message as one line and exits with code 2; Python callers get
an ordinary exception they can catch.
"""

from __future__ import annotations


class MrsisrError(Exception):
    """Base class for errors caused by user input (a bad recipe, a missing file, bad data).

    The message is meant to be shown to the user as it is: one line that names the file or field
    and says what to do.
    """


class UnknownNameError(MrsisrError, KeyError):
    """A registry lookup named an entry that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(MrsisrError, ValueError):
    """Two entries were registered under the same name in one registry."""


class PluginError(MrsisrError):
    """A plugin could not be loaded, or tried to replace a built-in entry."""


class RecipeError(MrsisrError, ValueError):
    """A recipe file is malformed: unknown table, unknown `type`, unknown key or bad value."""


class DataError(MrsisrError, ValueError):
    """Input data is unusable: wrong shape, non-finite values, mismatched affines, missing files."""


class CheckpointError(MrsisrError):
    """A checkpoint or weight file is missing, truncated, corrupted or for another recipe."""
