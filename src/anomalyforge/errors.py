"""Errors a user can act on: each carries a one-line message naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class AnomalyForgeError(Exception):
    """Base class for every error the CLI reports as a one-line message with a non-zero exit."""


class DataError(AnomalyForgeError):
    """Bad input data: missing/empty folder, unknown layout, unreadable or mismatched image/mask."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class ConfigError(AnomalyForgeError):
    """Bad options: unknown method, profile or defect type, invalid count, conflicting run folder."""
