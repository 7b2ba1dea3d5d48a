"""The engine names a user can choose (kept import-light for the command line)."""

from enum import StrEnum


class EngineKind(StrEnum):
    """Where a fit or an update runs."""

    LOCAL = "local"
    RAY = "ray"
