"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a file, an id, an option): the message is the whole story, no traceback."""


class NotFound(UserError):
    """An id or path that names nothing in the lab or on disk."""
