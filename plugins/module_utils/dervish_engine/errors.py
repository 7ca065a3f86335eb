"""Exception types of the dervish engine.

Every error carries a complete, user-facing message: ``str(error)`` is what the CLI prints.
"""

from __future__ import annotations

import errno

# process exit codes (``dervish --help``); here so that the CLI needs no image import to use them
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_POST_FAILED = 4


class DervishError(Exception):
    """Base class; ``str(e)`` is a complete user-facing message."""


class ConfigError(DervishError):
    """A configuration (or expire spec/rule) problem, optionally located at ``path:line``."""

    def __init__(self, message, path=None, line=None):
        self.message = str(message)
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(self.__str__())

    def __str__(self):
        if self.path and self.line:
            return f"{self.path}:{self.line}: {self.message}"
        if self.path:
            return f"{self.path}: {self.message}"
        return self.message


class LockedError(DervishError):
    """A vault is locked by another run."""


class ImageError(DervishError):
    """An image cannot be created, found or used."""


# errno -> what it says about a bank's filesystem
BANK_STATES = {
    errno.ENOSPC: "full",
    errno.EDQUOT: "over its disk quota",
    errno.EROFS: "read-only",
    errno.EIO: "failing (input/output error)",
    errno.ENOTCONN: "not connected",
    errno.ESTALE: "gone (stale file handle)",
    errno.ENODEV: "gone (no such device)",
    errno.ENXIO: "gone (no such device)",
}
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def os_error_text(exc: OSError) -> str:
    """``<file>: <reason>`` without Python's ``[Errno N]`` decoration."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


class BankError(DervishError):
    """The bank cannot take an image (read-only, full, failing): nothing was backed up into it."""

    def __init__(self, bank, exc: OSError, doing: str):
        self.bank = str(bank)
        self.errno = exc.errno
        self.full = exc.errno in FULL_ERRNOS
        state = BANK_STATES.get(exc.errno, "not usable")
        super().__init__(f"bank {bank} is {state}: cannot {doing} ({os_error_text(exc)}); nothing was backed up")
