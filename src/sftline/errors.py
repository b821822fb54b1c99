"""The exception tree. Library code raises these; the CLI catches `SftlineError` once."""

from __future__ import annotations

from collections.abc import Sequence


class SftlineError(Exception):
    """Root of every error sftline reports to a user as one line."""


class ConfigError(SftlineError):
    """sftline.yaml (or another config file) is missing or invalid."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]
        """Each problem on its own (`contract.task: ...`); the message when it is the only one."""


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


class VersionConflict(SftlineError):
    """Another process gave a dataset a new version between this one reading its newest version
    and committing the next (the compare-and-set on the newest version failed)."""

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"{name} changed meanwhile; run again")
        self.name = name


class FrozenDatasetError(SftlineError):
    """A change to a frozen gold set, or a training set that overlaps one."""


class TrainingError(SftlineError):
    """Training cannot start or continue (bad masks, no data, a resume that does not match)."""


class StationBusy(SftlineError):
    """The same station (or the whole line) is running in another process."""


class LineageError(SftlineError):
    """An artifact named for `sftline lineage` is not in the record."""


class UnknownMetric(ConfigError):
    """A metric name that sftline does not measure."""


class MixtureError(SftlineError):
    """A mixture's weights or sources are invalid."""


class SplitError(SftlineError):
    """A split's options or data do not allow the split asked for."""


class ComparisonError(SftlineError):
    """The two evaluations cannot be compared (no examples in common)."""


class ErasureError(SftlineError):
    """A purge request is malformed, or a dataset it names cannot be rewritten."""
