"""Errors a user can cause and fix.

Everything raised for bad input derives from :class:`RlgenError`; the CLI prints such errors as
one line and exits with status 2 (130 for the two interruptions), and never shows a traceback for them.
"""

from __future__ import annotations


class RlgenError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it.

    ``warnings``: one line each, met on the way to the error (lines skipped as unreadable...); the CLI
    prints them before the error's line.
    """

    warnings: tuple[str, ...] = ()


class ConfigError(RlgenError, ValueError):
    """A config file or override names an unknown key, has a wrong type, or a value out of range."""


class SplitError(RlgenError, ValueError):
    """A level split is malformed: overlapping sets, empty sets, unknown suite or environment."""


class DependencyError(RlgenError, ImportError):
    """An optional system or Python dependency is missing; the message says what to install."""


class DatasetError(RlgenError):
    """A dataset is missing, corrupt, or not what the caller expected."""


class TrainingInterrupted(RlgenError):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint (the CLI exits 130)."""


class StudyInterrupted(RlgenError):
    """Ctrl-C or SIGTERM stopped a study; running stages saved their checkpoints (the CLI exits 130)."""
