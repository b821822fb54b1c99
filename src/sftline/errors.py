"""The exception tree. Library code raises these; the CLI catches `SftlineError` once."""

from __future__ import annotations


class SftlineError(Exception):
    """Root of every error sftline reports to a user as one line."""


class ConfigError(SftlineError):
    """sftline.yaml (or another config file) is missing or invalid."""


class ProjectNotFound(SftlineError):
    """No sftline project at or above the working directory."""


class RecordError(SftlineError):
    """The project record (database) cannot be opened, migrated or queried."""


class ObjectStoreError(SftlineError):
    """An artifact is missing from, or corrupt in, the object store."""


class ImportInputError(SftlineError):
    """An input file cannot be read at all (missing, a directory, binary, unknown format)."""


class DatasetNotFound(SftlineError):
    """A dataset name or version reference does not resolve."""


class ModelError(SftlineError):
    """A base model cannot be found, materialised or registered."""


class OptionalDependencyMissing(SftlineError):
    """An optional package is needed; the message carries the exact `pip install` that fixes it."""

    def __init__(self, package: str, feature: str) -> None:
        super().__init__(f"{feature} needs the package {package!r}: pip install '{package}'")
        self.package = package


class FrozenDatasetError(SftlineError):
    """A change to a frozen gold set, or a training set that overlaps one."""


class TrainingError(SftlineError):
    """Training cannot start or continue (bad masks, no data, a resume that does not match)."""
