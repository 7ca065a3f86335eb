"""Exception types of the dervish engine.

Every error carries a complete, user-facing message: ``str(error)`` is what the CLI prints.
"""

from __future__ import annotations

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
