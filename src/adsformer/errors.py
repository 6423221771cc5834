"""The one error type for mistakes a user can fix: bad data, a bad config value, a bad path or run directory.

Every such error is a :class:`UserError` (a ``ValueError``, so library callers that catch ``ValueError`` keep
working). The message says what is wrong, where (file, column, config key) and what to do. The command line
prints it as one ``error:`` line and exits with code 1; ``adsformer --debug`` shows the traceback instead.
Anything else that escapes a command is a bug: it is printed as one line too, with a pointer to ``--debug``.
:func:`error_line` words any error as that line, with its exit code.
"""

from __future__ import annotations

from adsformer import __version__

#: Errors a user can fix besides :class:`UserError`: paths that are missing or of the wrong kind
PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


class UserError(ValueError):
    """A mistake the user can fix. ``str()`` names what, where and what to do."""

    def one_line(self) -> str:
        """The message as one line (what the command line prints)."""
        return "; ".join(line.strip() for line in str(self).splitlines() if line.strip())


class OutputError(UserError):
    """An output path adsformer will not write to as asked (a directory it did not write, a file in the way)."""


class ArtifactError(UserError):
    """A run directory (or a file in it) that cannot be loaded: missing, corrupt, or not tensors and plain data."""


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one line an error is printed as, and the exit code: 1 for what the user can fix, 2 for a bug."""
    if isinstance(exc, UserError):
        return exc.one_line(), 1
    if isinstance(exc, PATH_ERRORS):
        text = " ".join(str(exc).split())
        if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
            text = f"{exc.filename}: {exc.strerror}"
        return text, 1
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return (
        f"internal error ({detail}); this is a bug in adsformer {__version__}: rerun with --debug for the "
        f"traceback and report it",
        2,
    )
