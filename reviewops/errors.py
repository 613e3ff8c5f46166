"""Errors a user can act on: each carries a one-line message naming the file, line or setting."""

from __future__ import annotations


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
