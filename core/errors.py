"""Errors that reach a user as one clear line (the CLI prints them without a traceback, the GUI shows them)."""

from __future__ import annotations


class DreamExplorerError(Exception):
    """Base class of every error caused by bad input: a file, a config value, an empty dataset."""


class ConfigError(DreamExplorerError, ValueError):
    """A configuration field holds a value outside its documented range."""


class CheckpointError(DreamExplorerError):
    """A checkpoint is missing, truncated, foreign, of the wrong kind, or of an unknown format version."""


class EpisodeError(DreamExplorerError):
    """An episode file is missing, truncated or inconsistent, or a dataset directory holds no episodes."""


class StageCancelled(DreamExplorerError):
    """A stage was stopped by its stop flag; the last checkpoint written can be resumed."""


class NonFiniteError(DreamExplorerError):
    """Training produced a NaN or infinite loss or weights; the stage stopped and no such weights were written."""


class DreamExplorerWarning(UserWarning):
    """Base class of warnings that reach a user as one line (the CLI prints ``warning: ...``, the GUI a note)."""


class LineageWarning(DreamExplorerWarning):
    """Models that fit by size but were not trained together (e.g. an M trained on another V's latents)."""


class ResumeRepairedWarning(DreamExplorerWarning):
    """A checkpoint left behind by a run killed between its two final writes was put back in place to match its
    resume state."""


class OutputError(DreamExplorerError):
    """An output location cannot be written (a directory where a file goes, a file where a directory goes, no
    permission, a full disk); checked before a stage starts work, and reported if a write fails later."""
