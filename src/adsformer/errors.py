"""The one error type for mistakes a user can fix: bad data, a bad config value, a bad path or run directory.

Every such error is a :class:`UserError` (a ``ValueError``, so library callers that catch ``ValueError`` keep
working). The message says what is wrong, where (file, column, config key) and what to do. The command line
prints it as one ``error:`` line and exits with code 1; ``adsformer --debug`` shows the traceback instead.
Anything else that escapes a command is a bug: it is printed as one line too, with a pointer to ``--debug``.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake the user can fix. ``str()`` names what, where and what to do."""

    def one_line(self) -> str:
        """The message as one line (what the command line prints)."""
        return "; ".join(line.strip() for line in str(self).splitlines() if line.strip())


class OutputError(UserError):
    """An output path adsformer will not write to as asked (a directory it did not write, a file in the way)."""


class ArtifactError(UserError):
    """A run directory (or a file in it) that cannot be loaded: missing, corrupt, or not tensors and plain data."""
