"""The project's error types, on the bottom floor: every module may raise them, none is imported here.

``ConfigError`` and ``DataError`` end a run with one line on stderr and exit status 2
(``blocksft.runs.run.main``); ``NonFiniteLossError`` stops training and keeps the last good checkpoint.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is invalid; the message is a single line naming the key."""


class DataError(ValueError):
    """The data cannot give a run (e.g. no usable training row); the message names the file."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN/inf; the run stops and keeps its last good checkpoint."""
