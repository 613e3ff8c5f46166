"""Errors a user can act on: each carries a one-line message naming the file, line or setting, the CLI's
exit code and the API's HTTP status for it (each mapped once: `cli._cli` and the API's exception handler)."""

from __future__ import annotations

import errno
import os


class ReviewOpsError(Exception):
    """Base class: the CLI prints the message on one line and exits non-zero; the API answers with
    `http_status` and the message as `detail`."""

    exit_code = 1
    http_status = 503  # the service cannot do this now; the subclasses say why more precisely


class InputError(ReviewOpsError):
    """A file or record a user gave us is unusable (missing columns, bad encoding, bad JSON...)."""

    exit_code = 2
    # 400, not 422: the API's 422 bodies are FastAPI's list of {loc, msg, type} (its OpenAPI schema says
    # so), while a library error is one sentence that names no field of the request
    http_status = 400


class ConfigError(ReviewOpsError):
    """A setting is missing or points at something unreachable."""

    exit_code = 3
    http_status = 503


class StoreError(ReviewOpsError):
    """The review database or the object store failed."""

    exit_code = 4
    http_status = 503


class ModelArtifactError(ReviewOpsError):
    """A model artifact is missing, broken or was tampered with."""

    exit_code = 5
    http_status = 503


class RegistryError(ReviewOpsError):
    """The MLflow registry refused or lacks what was asked for."""

    exit_code = 6
    http_status = 503


class NotFoundError(RegistryError):
    """The registry has no such model version."""

    http_status = 404


class ConflictError(RegistryError):
    """The registry's state does not allow the action (there is no earlier champion to roll back to)."""

    http_status = 409


class SourceError(ReviewOpsError):
    """A cinema site failed, refused or answered something unreadable (the sources' fetch, parse and browser
    errors); as a command's outcome: no review source could be collected from."""

    exit_code = 7
    http_status = 502  # an upstream site failed, not this service


class StorageFullError(ReviewOpsError):
    """A disk or volume is full, over quota or read-only: the work stopped and left nothing half-written."""

    exit_code = 8
    http_status = 507

    # the errno values that mean "this storage takes no more writes", not "this file is wrong"
    ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})

    @classmethod
    def from_os_error(cls, exc: OSError, doing: str) -> StorageFullError | None:
        """The one-line error for an OSError that means full or read-only storage; None for any other."""
        if exc.errno not in cls.ERRNOS:
            return None
        where = exc.filename2 or exc.filename  # a copy names its destination second
        return cls(f"{doing}: {os.strerror(exc.errno)}{f' at {where}' if where else ''}")
