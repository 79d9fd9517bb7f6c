"""The one exception family users can meet.

Library code raises these with a message that says what went wrong and what to do; the CLI prints
``error: <message>`` and exits 1. Anything else escaping to the CLI is a bug and keeps its traceback.
"""

from __future__ import annotations


class PixiPackError(Exception):
    """An error caused by the input, the network or the machine, not by a bug in pixi-pack."""


class LockfileError(PixiPackError):
    """The lockfile is missing, malformed, or does not have what was asked for."""


class EnvironmentNotFoundError(LockfileError):
    """The lockfile has no such environment (or not for the platform asked for)."""


class DownloadError(PixiPackError):
    """A package could not be fetched."""


class IntegrityError(PixiPackError):
    """A file's hash or size is not what the lockfile or the pack says; the message names the file."""


class ArchiveError(PixiPackError):
    """A pack or a package archive is malformed, truncated or hostile; the message names the file."""


class MissingMemberError(ArchiveError):
    """A package archive lacks a member every package has."""

    def __init__(self, message: str, *, member: str) -> None:
        super().__init__(message)
        self.member = member
        """The member, as a pattern where the name varies: ``info/index.json``, ``info-*.tar.zst``."""


class InstallError(PixiPackError):
    """A package could not be installed into the environment."""
