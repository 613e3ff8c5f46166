"""Errors a user can act on: each carries a one-line message naming the file, line or setting."""

from __future__ import annotations

import errno
import os


class ReviewOpsError(Exception):
    """Base class: the CLI prints the message on one line and exits non-zero."""

    exit_code = 1


class InputError(ReviewOpsError):
    """A file or record a user gave us is unusable (missing columns, bad encoding, bad JSON...)."""

    exit_code = 2


class ConfigError(ReviewOpsError):
    """A setting is missing or points at something unreachable."""

    exit_code = 3


class StoreError(ReviewOpsError):
    """The review database or the object store failed."""

    exit_code = 4


class ModelArtifactError(ReviewOpsError):
    """A model artifact is missing, broken or was tampered with."""

    exit_code = 5


class RegistryError(ReviewOpsError):
    """The MLflow registry refused or lacks what was asked for."""

    exit_code = 6


class StorageFullError(ReviewOpsError):
    """A disk or volume is full, over quota or read-only: the work stopped and left nothing half-written."""

    exit_code = 8

    # the errno values that mean "this storage takes no more writes", not "this file is wrong"
    ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})

    @classmethod
    def from_os_error(cls, exc: OSError, doing: str) -> StorageFullError | None:
        """The one-line error for an OSError that means full or read-only storage; None for any other."""
        if exc.errno not in cls.ERRNOS:
            return None
        where = exc.filename2 or exc.filename  # a copy names its destination second
        return cls(f"{doing}: {os.strerror(exc.errno)}{f' at {where}' if where else ''}")
