"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a file, an id, an option): the message is the whole story, no traceback."""


class NotFound(UserError):
    """An id or path that names nothing in the lab or on disk."""


class DamagedFile(UserError, OSError):
    """A lab file that is not readable HDF5 (truncated, overwritten, not HDF5 at all).

    Also an OSError, so code that handled h5py's own OSError for such files still does."""
